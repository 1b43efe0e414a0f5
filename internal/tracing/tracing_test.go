package tracing_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/tracing"
	"github.com/kiln-dev/kiln/internal/tracing/tracingtest"
)

// noOTELEnv clears the environment variables that would turn tracing on
// or change its sampler.
func noOTELEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestSetupOffByDefault(t *testing.T) {
	noOTELEnv(t)
	tp, err := tracing.Setup(context.Background(), tracing.Options{Role: "all"})
	if tp != nil || err != nil {
		t.Fatalf("Setup without an endpoint: %v, %v; want no provider", tp, err)
	}
	if err := tracing.Shutdown(context.Background(), nil); err != nil {
		t.Errorf("Shutdown of no provider: %v", err)
	}
}

func TestSetupFromEnvironment(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		noOTELEnv(t)
		t.Setenv(k, "http://127.0.0.1:4317")
		tp, err := tracing.Setup(context.Background(), tracing.Options{Role: "all"})
		if tp == nil || err != nil {
			t.Fatalf("Setup with %s set: %v, %v; want a provider", k, tp, err)
		}
		if err := tracing.Shutdown(context.Background(), tp); err != nil {
			t.Errorf("Shutdown with no span: %v", err)
		}
	}
}

func TestSetupRefusesBadOptions(t *testing.T) {
	noOTELEnv(t)
	for _, tc := range []struct {
		o    tracing.Options
		want string
	}{
		{tracing.Options{Endpoint: "collector"}, `OTLP endpoint "collector": give HOST:PORT`},
		{tracing.Options{Endpoint: ":4317"}, `OTLP endpoint ":4317": give HOST:PORT`},
		{tracing.Options{Endpoint: "grpc://collector:4317"}, `give HOST:PORT, http://HOST:PORT or https://HOST:PORT`},
	} {
		tp, err := tracing.Setup(context.Background(), tc.o)
		if tp != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Setup(%+v): %v, %v; want an error saying %s", tc.o, tp, err, tc.want)
		}
	}
}

// The ratio decides for traces that start at Kiln; a caller's decision is
// followed.
func TestSampleRatio(t *testing.T) {
	noOTELEnv(t)
	remote := func(sampled bool) context.Context {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true})
		if sampled {
			sc = sc.WithTraceFlags(trace.FlagsSampled)
		}
		return trace.ContextWithRemoteSpanContext(context.Background(), sc)
	}
	for _, tc := range []struct {
		sampler                  sdktrace.Sampler
		name                     string
		root, sampled, unsampled bool // recorded?
	}{
		{tracing.Ratio(0), "ratio 0", false, true, false},
		{tracing.Ratio(1), "ratio 1", true, true, false},
		{nil, "the SDK's default", true, true, false},
	} {
		exp := tracetest.NewInMemoryExporter()
		tp, err := tracing.Setup(context.Background(), tracing.Options{Exporter: exp, Sampler: tc.sampler})
		if err != nil {
			t.Fatal(err)
		}
		tr := tp.Tracer("test")
		for _, c := range []struct {
			ctx  context.Context
			want bool
		}{{context.Background(), tc.root}, {remote(true), tc.sampled}, {remote(false), tc.unsampled}} {
			_, span := tr.Start(c.ctx, "request")
			if span.IsRecording() != c.want {
				t.Errorf("%s, parent %v: recorded %v, want %v", tc.name, trace.SpanContextFromContext(c.ctx), span.IsRecording(), c.want)
			}
			span.End()
		}
		tp.Shutdown(context.Background())
	}
}

// The OTLP exporter sends the spans to a collector, with Kiln's resource.
func TestExportsToCollector(t *testing.T) {
	noOTELEnv(t)
	c := tracingtest.Start(t)
	var log bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &log, mu: &logMu}, nil))
	tp, err := tracing.Setup(context.Background(), tracing.Options{Endpoint: c.Addr, Role: "serve", Version: "v1.2.3", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	tr := tp.Tracer("test")
	for _, name := range []string{"a", "b", "c"} {
		_, span := tr.Start(context.Background(), name)
		span.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := c.Spans()
	var names []string
	for _, s := range spans {
		names = append(names, s.GetName())
		for k, want := range map[string]string{"service.name": "kiln", "service.version": "v1.2.3", "kiln.role": "serve"} {
			if s.Resource[k] != want {
				t.Errorf("span %s: resource %s = %q, want %q (resource %v)", s.GetName(), k, s.Resource[k], want, s.Resource)
			}
		}
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("the collector received spans %q, want a, b, c", names)
	}

	// A collector that refuses: one warning, however many batches fail,
	// then a line when spans go through again.
	c.SetFailing(true)
	for range 3 {
		_, span := tr.Start(context.Background(), "refused")
		span.End()
		if err := tp.ForceFlush(ctx); err == nil {
			t.Error("a refused export flushed without an error")
		}
	}
	c.SetFailing(false)
	_, span := tr.Start(context.Background(), "d")
	span.End()
	if err := tracing.Shutdown(ctx, tp); err != nil {
		t.Fatal(err)
	}
	if spans := c.Spans(); len(spans) != 4 || spans[3].GetName() != "d" {
		t.Errorf("after the collector recovered, it had received %d spans, the last not d", len(spans))
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(log.String(), "spans not exported"); n != 1 || !strings.Contains(log.String(), "refused by the test collector") {
		t.Errorf("%d warnings of failed exports, want 1 with the collector's message; log:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "spans exported again") {
		t.Errorf("no line when exports recovered; log:\n%s", log.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestBuildVersion(t *testing.T) {
	if v := tracing.BuildVersion(); v == "" || strings.ContainsAny(v, " \n") {
		t.Errorf("BuildVersion() = %q", v)
	}
}
