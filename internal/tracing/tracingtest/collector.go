// Package tracingtest is an OpenTelemetry collector for tests: an OTLP/gRPC
// trace receiver on a loopback port that keeps the spans it is sent.
package tracingtest

import (
	"context"
	"net"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Collector receives OTLP traces on Addr until the test ends.
type Collector struct {
	collectorpb.UnimplementedTraceServiceServer
	// Addr is where it listens, HOST:PORT (plaintext gRPC).
	Addr string

	mu      sync.Mutex // guards what follows
	spans   []Span
	failing bool
}

// Span is a span as the collector received it, with its resource's
// attributes (string values only).
type Span struct {
	*tracepb.Span
	Resource map[string]string
}

// Start starts a collector on a free loopback port, stopped when tb ends.
func Start(tb testing.TB) *Collector {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &Collector{Addr: ln.Addr().String()}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, c)
	done := make(chan struct{})
	go func() { gs.Serve(ln); close(done) }()
	tb.Cleanup(func() { gs.Stop(); <-done })
	return c
}

// Export receives spans, or refuses them while the collector fails.
func (c *Collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failing {
		return nil, status.Error(codes.InvalidArgument, "refused by the test collector")
	}
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Span: s, Resource: res})
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// SetFailing makes the collector refuse what it is sent (InvalidArgument,
// which an exporter does not retry), or take it again.
func (c *Collector) SetFailing(f bool) {
	c.mu.Lock()
	c.failing = f
	c.mu.Unlock()
}

// Spans returns the spans received so far, in the order received.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}
