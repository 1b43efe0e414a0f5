package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/tracing/tracingtest"
)

// kiln serve --otlp-endpoint sends the spans of its requests to the
// collector, the last of them as it stops.
func TestServeExportsTraces(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	c := tracingtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"serve", "-c", "../../examples/feed/kiln.yaml", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--grpc-addr", "",
			"--log-level", "warn", "--otlp-endpoint", c.Addr, "--trace-sample-ratio", "0"}, w, io.Discard)
		w.CloseWithError(err)
		done <- err
	}()
	lines := bufio.NewScanner(out)
	var url string
	for url == "" && lines.Scan() {
		if m := regexp.MustCompile(`serving project feed from .* on (http://\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("kiln serve did not start: %v", <-done)
	}
	go io.Copy(io.Discard, out)

	// At ratio 0, only the requests of callers who sample are traced.
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, flags := range []string{"01", "00"} {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/features", strings.NewReader(`{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`))
		req.Header.Set("traceparent", "00-"+traceID+"-"+spanID+"-"+flags)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("read: %s", resp.Status)
		}
	}
	resp, err := http.Post(url+"/v1/features", "application/json", strings.NewReader(`{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var names []string
	for _, s := range c.Spans() {
		names = append(names, s.GetName())
		if hex.EncodeToString(s.GetTraceId()) != traceID {
			t.Errorf("span %s of trace %x: only the sampled caller's trace is recorded", s.GetName(), s.GetTraceId())
		}
		if s.Resource["service.name"] != "kiln" || s.Resource["kiln.role"] != "all" || s.Resource["service.version"] == "" {
			t.Errorf("span %s: resource %v", s.GetName(), s.Resource)
		}
		if s.GetName() == "POST /v1/features" && hex.EncodeToString(s.GetParentSpanId()) != spanID {
			t.Errorf("the request's span has parent %x, want the caller's %s", s.GetParentSpanId(), spanID)
		}
	}
	if got := strings.Join(names, ","); got != "store.read,rowcache.lookup,POST /v1/features" {
		t.Errorf("the collector received %s; want the sampled read's spans", got)
	}
}

func TestServeTracingFlags(t *testing.T) {
	for _, tc := range []struct{ args, want []string }{
		{[]string{"--trace-sample-ratio", "2"}, []string{`"2" is not a share from 0 to 1`}},
		{[]string{"--trace-sample-ratio", "NaN"}, []string{`"NaN" is not a share from 0 to 1`}},
		{[]string{"--otlp-endpoint", "collector"}, []string{`OTLP endpoint "collector": give HOST:PORT`}},
	} {
		var stderr bytes.Buffer
		args := append([]string{"serve", "-c", "../../examples/feed/kiln.yaml", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--grpc-addr", ""}, tc.args...)
		err := run(context.Background(), args, io.Discard, &stderr)
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("kiln serve %s: %v, want a usage error", strings.Join(tc.args, " "), err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error()+stderr.String(), w) {
				t.Errorf("kiln serve %s: %v, want it to say %s", strings.Join(tc.args, " "), err, w)
			}
		}
	}
}
