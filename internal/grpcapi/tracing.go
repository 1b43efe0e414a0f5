package grpcapi

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// Tracing (Options.Tracing): every call but the health service's and
// reflection's is served in a server span named by its method
// ("kiln.v1.FeatureService/GetFeatures"), a child of the caller's span when
// its metadata carries a W3C traceparent. OpenTelemetry's gRPC stats
// handler makes the span and records the status; the handlers add what the
// call was about (package tracing's attributes) and the message of a
// refused call; the read path below adds the row cache's and the store's
// spans.

// ServerOptions are the options of the grpc.Server the API is registered
// on: its stats handler when the server traces, none otherwise. Pass them
// to grpc.NewServer.
func (s *Server) ServerOptions() []grpc.ServerOption {
	if s.opts.Tracing == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(s.opts.Tracing),
		otelgrpc.WithPropagators(tracing.Propagator),
		// Its metrics are not Kiln's: measured nowhere.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return !strings.HasPrefix(info.FullMethodName, "/grpc.health.") && !strings.HasPrefix(info.FullMethodName, "/grpc.reflection.")
		}),
	))}
}

// traceRead puts what a read asks for on its call's span.
func (s *Server) traceRead(ctx context.Context, req *query.Request) {
	if s.opts.Tracing != nil {
		tracing.Read(trace.SpanFromContext(ctx), req)
	}
}

// traceFailure puts the message of the status *err on the call's span, if
// the call failed. Deferred first, it sees the error a panic became.
func (s *Server) traceFailure(ctx context.Context, err *error) {
	if s.opts.Tracing == nil || *err == nil {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("exception", trace.WithAttributes(semconv.ExceptionMessage(status.Convert(*err).Message())))
	}
}
