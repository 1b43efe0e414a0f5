package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tracing"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

const tracedProject = `
project: clicks
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, ms: float64}
views:
  user_clicks:
    entity: user
    source: clicks
    features:
      clicks: {agg: count, windows: [1h]}
      ms_sum: {agg: sum, field: ms, windows: [1h]}
services:
  profile: {views: [user_clicks]}
`

// tracedNode starts a node of tracedProject, HTTP and gRPC on loopback,
// tracing into tp (nil: off), with three users' clicks pushed.
func tracedNode(t *testing.T, tp trace.TracerProvider) *node.Node {
	t.Helper()
	p, err := projectfile.Parse("kiln.yaml", []byte(tracedProject))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arch, err := archive.NewDir(filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{
		Project: p, DataDir: dir, Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Archive: archive.New(arch),
		Ingest: ingest.Options{Now: func() time.Time { return now }}, Tracing: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ts := now.Add(-time.Minute).UnixMilli()
	tracedPost(t, n, "/v1/push", "", fmt.Sprintf(`{"source": "clicks", "events": [
		{"user_id": 1, "ts": %d, "ms": 10}, {"user_id": 2, "ts": %d, "ms": 20}, {"user_id": 3, "ts": %d, "ms": 30}]}`, ts, ts, ts), http.StatusOK)
	return n
}

// tracedPost sends body to path with the traceparent header if not empty, and
// checks the answer's status.
func tracedPost(t *testing.T, n *node.Node, path, traceparent, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, b, want)
	}
	return string(b)
}

// A caller's span: its trace and its span id, as a traceparent says them.
type caller struct {
	trace trace.TraceID
	span  trace.SpanID
}

func newCaller(i byte) caller {
	return caller{trace: trace.TraceID{0x4b, 0x1, i, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, span: trace.SpanID{0xca, 0x11, i, 1, 2, 3, 4, 5}}
}

// traceparent is the W3C header of the caller's span, sampled or not.
func (c caller) traceparent(sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + c.trace.String() + "-" + c.span.String() + "-" + flags
}

// spansOf returns the ended spans of the caller's trace, by name, once the
// span named last has ended (a gRPC server span ends after the client has
// its answer): it waits for it up to a deadline. A name that ended twice
// fails the test.
func spansOf(t *testing.T, rec *tracetest.SpanRecorder, c caller, last string) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() != c.trace {
				continue
			}
			if _, dup := out[s.Name()]; dup {
				t.Errorf("span %s ended twice in trace %s", s.Name(), c.trace)
			}
			out[s.Name()] = s
		}
		if _, ok := out[last]; ok || last == "" || time.Now().After(deadline) {
			return out
		}
		time.Sleep(time.Millisecond)
	}
}

// childOf checks that span is a child of parent, named by what it is.
func childOf(t *testing.T, spans map[string]sdktrace.ReadOnlySpan, name, parent string) sdktrace.ReadOnlySpan {
	t.Helper()
	s, ok := spans[name]
	if !ok {
		t.Fatalf("no span %s; spans: %v", name, names(spans))
	}
	if p := spans[parent]; p == nil || s.Parent().SpanID() != p.SpanContext().SpanID() {
		t.Errorf("span %s has parent %s, want span %s", name, s.Parent().SpanID(), parent)
	}
	return s
}

func names(spans map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for n := range spans {
		out = append(out, n)
	}
	return out
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// wantAttrs checks some attributes of a span, each given as key, value.
func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want ...attribute.KeyValue) {
	t.Helper()
	got := attrs(s)
	for _, kv := range want {
		if g, ok := got[kv.Key]; !ok || g != kv.Value {
			t.Errorf("span %s: %s = %v, want %v", s.Name(), kv.Key, g.Emit(), kv.Value.Emit())
		}
	}
}

func TestTracingHTTP(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	n := tracedNode(t, tp)

	// A read from a traced caller: its server span is the caller's child,
	// the cache lookup the server span's, and the store read (user 2's row
	// is not in the cache yet) the lookup's.
	c := newCaller(1)
	body := tracedPost(t, n, "/v1/features", c.traceparent(true), `{"service": "profile", "entities": {"user": [{"user_id": 2}, {"user_id": 9}]}}`, http.StatusOK)
	if !strings.Contains(body, `"user_clicks:clicks_1h":1`) {
		t.Fatalf("read answered %s", body)
	}
	spans := spansOf(t, rec, c, "POST /v1/features")
	server := spans["POST /v1/features"]
	if server == nil {
		t.Fatalf("no span POST /v1/features; spans: %v", names(spans))
	}
	if server.Parent().SpanID() != c.span || !server.Parent().IsRemote() || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span: parent %s (remote %v), kind %v; want the caller's span %s, server", server.Parent().SpanID(), server.Parent().IsRemote(), server.SpanKind(), c.span)
	}
	wantAttrs(t, server, tracing.ServiceKey.String("profile"), tracing.EntitiesKey.Int(2), tracing.FeaturesKey.Int(2), tracing.ValuesKey.Int(4),
		attribute.Int("http.response.status_code", 200), attribute.String("http.route", "/v1/features"))
	childOf(t, spans, tracing.CacheLookupSpan, "POST /v1/features")
	read := childOf(t, spans, tracing.StoreReadSpan, tracing.CacheLookupSpan)
	wantAttrs(t, read, tracing.RowsKey.Int(2), tracing.RowsFoundKey.Int(1))
	if server.Status().Code != codes.Unset {
		t.Errorf("server span status %v", server.Status())
	}

	// The same rows again: answered from the cache, no store read.
	c = newCaller(2)
	tracedPost(t, n, "/v1/features", c.traceparent(true), `{"service": "profile", "entities": {"user": [{"user_id": 2}, {"user_id": 9}]}}`, http.StatusOK)
	spans = spansOf(t, rec, c, "POST /v1/features")
	childOf(t, spans, tracing.CacheLookupSpan, "POST /v1/features")
	if _, ok := spans[tracing.StoreReadSpan]; ok {
		t.Errorf("rows the cache holds were read from the store")
	}

	// Feast's read, and a push with its commit.
	c = newCaller(3)
	tracedPost(t, n, "/get-online-features", c.traceparent(true), `{"feature_service": "profile", "entities": {"user_id": [1, 3, 3]}}`, http.StatusOK)
	spans = spansOf(t, rec, c, "POST /get-online-features")
	wantAttrs(t, spans["POST /get-online-features"], tracing.EntitiesKey.Int(2), tracing.ValuesKey.Int(4))
	childOf(t, spans, tracing.StoreReadSpan, tracing.CacheLookupSpan)
	c = newCaller(4)
	tracedPost(t, n, "/v1/push", c.traceparent(true), fmt.Sprintf(`{"source": "clicks", "events": [{"user_id": 1, "ts": %d, "ms": 1}]}`, now.UnixMilli()), http.StatusOK)
	spans = spansOf(t, rec, c, "POST /v1/push")
	wantAttrs(t, spans["POST /v1/push"], tracing.SourceKey.String("clicks"), tracing.EventsKey.Int(1), tracing.AcceptedKey.Int(1))
	childOf(t, spans, tracing.CommitSpan, "POST /v1/push")

	// A bad request: the message is on the span as an exception event;
	// the status stays unset (the client's mistake, not the server's).
	c = newCaller(5)
	tracedPost(t, n, "/v1/features", c.traceparent(true), `{"service": "nope", "entities": {"user": [{"user_id": 1}]}}`, http.StatusBadRequest)
	server = spansOf(t, rec, c, "POST /v1/features")["POST /v1/features"]
	wantAttrs(t, server, attribute.Int("http.response.status_code", 400))
	if ev := server.Events(); len(ev) != 1 || ev[0].Name != "exception" || !strings.Contains(fmt.Sprint(ev[0].Attributes), `service \"nope\" is not defined`) {
		t.Errorf("events of a refused read: %v", ev)
	}

	// A caller that did not sample its trace: Kiln records nothing of it.
	c = newCaller(6)
	tracedPost(t, n, "/v1/features", c.traceparent(false), `{"service": "profile", "entities": {"user": [{"user_id": 3}]}}`, http.StatusOK)
	if spans := spansOf(t, rec, c, ""); len(spans) != 0 {
		t.Errorf("an unsampled trace recorded %v", names(spans))
	}

	// Probes are not traced; a request without a traceparent starts a
	// trace of its own.
	before := len(rec.Ended())
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(n.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if after := rec.Ended(); len(after) != before {
		t.Errorf("probes made spans %v", after[before:])
	}
	tracedPost(t, n, "/v1/features", "", `{"features": ["user_clicks:clicks_1h"], "entities": {"user": [{"user_id": 1}]}}`, http.StatusOK)
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Name() != "POST /v1/features" || last.Parent().IsValid() {
		t.Errorf("a request without a traceparent: span %s with parent %v, want a root POST /v1/features", last.Name(), last.Parent())
	}
	wantAttrs(t, last, tracing.ServiceKey.String(""), tracing.EntitiesKey.Int(1), tracing.FeaturesKey.Int(1), tracing.ValuesKey.Int(1))
}

func TestTracingGRPC(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	n := tracedNode(t, tp)
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := kilnv1.NewFeatureServiceClient(conn)

	c := newCaller(7)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", c.traceparent(true))
	resp, err := client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Service{Service: "profile"},
		Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1, 2, 3}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(resp.GetEntities()[0].GetStatuses()); got != 3 {
		t.Fatalf("%d statuses, want 3", got)
	}
	const method = "kiln.v1.FeatureService/GetFeatures"
	spans := spansOf(t, rec, c, method)
	server := spans[method]
	if server == nil {
		t.Fatalf("no span %s; spans: %v", method, names(spans))
	}
	if server.Parent().SpanID() != c.span || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span: parent %s, kind %v; want the caller's span %s, server", server.Parent().SpanID(), server.SpanKind(), c.span)
	}
	wantAttrs(t, server, tracing.ServiceKey.String("profile"), tracing.EntitiesKey.Int(3), tracing.ValuesKey.Int(6))
	childOf(t, spans, tracing.CacheLookupSpan, method)
	wantAttrs(t, childOf(t, spans, tracing.StoreReadSpan, tracing.CacheLookupSpan), tracing.RowsKey.Int(3), tracing.RowsFoundKey.Int(3))

	// A refused call: its message is on the span.
	c = newCaller(8)
	ctx = metadata.AppendToOutgoingContext(context.Background(), "traceparent", c.traceparent(true))
	if _, err := client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_Service{Service: "nope"}}); err == nil {
		t.Fatal("a read of an unknown service succeeded")
	}
	server = spansOf(t, rec, c, method)[method]
	if server == nil || len(server.Events()) == 0 || !strings.Contains(fmt.Sprint(server.Events()[len(server.Events())-1].Attributes), `service \"nope\" is not defined`) {
		t.Errorf("refused call's span: %v", server)
	}

	// Health checks are not traced.
	before := len(rec.Ended())
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if after := rec.Ended(); len(after) != before {
		t.Errorf("a health check made spans %v", after[before:])
	}
}

// Off, Kiln makes no span and installs nothing: not even a tracer
// provider set globally by someone else is used.
func TestTracingOff(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	global := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(global)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	n := tracedNode(t, nil)
	c := newCaller(9)
	tracedPost(t, n, "/v1/features", c.traceparent(true), `{"service": "profile", "entities": {"user": [{"user_id": 2}]}}`, http.StatusOK)
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", c.traceparent(true))
	if _, err := kilnv1.NewFeatureServiceClient(conn).GetFeatures(ctx, &kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Service{Service: "profile"},
		Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if spans := rec.Ended(); len(spans) != 0 {
		t.Errorf("tracing off recorded %d spans, the first %s", len(spans), spans[0].Name())
	}
	if otel.GetTracerProvider() != global {
		t.Errorf("the node replaced the global tracer provider")
	}
}
