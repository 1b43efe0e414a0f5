package serve

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// Tracing (Config.Tracing): every route but the probes answers in a server
// span named by the route ("POST /v1/features"), a child of the caller's
// span when the request carries a W3C traceparent header. The handlers add
// what the request was about (package tracing's attributes), a push a
// child span for its commit; the read path below adds the row cache's and
// the store's. Without Config.Tracing the routes are the handlers
// themselves and each handler's tracing is one test of a nil field.

// untraced are the routes answered without a span: probes, which a load
// balancer sends every few seconds.
var untraced = map[string]bool{"/healthz": true, "/readyz": true}

// traced returns h in a server span, or h itself when the server does not
// trace.
func (s *Server) traced(method, path string, h http.HandlerFunc) http.HandlerFunc {
	if s.tracer == nil || untraced[path] {
		return h
	}
	name := method + " " + path
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)
		if !span.IsRecording() {
			h(w, r) // the trace context still reaches the handler
			return
		}
		tw := &tracedWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				span.SetStatus(codes.Error, fmt.Sprintf("panic: %v", p))
				panic(p) // ServeHTTP answers it
			}
		}()
		span.SetAttributes(semconv.HTTPRequestMethodKey.String(method), semconv.HTTPRoute(path))
		h(tw, r)
		span.SetAttributes(semconv.HTTPResponseStatusCode(tw.status))
		if tw.status >= 400 {
			// The client's mistakes (4xx) are events on the span; the
			// server's failures (5xx) also make its status Error, as
			// OpenTelemetry's HTTP conventions say.
			span.AddEvent("exception", trace.WithAttributes(semconv.ExceptionMessage(tw.message)))
			if tw.status >= 500 {
				span.SetStatus(codes.Error, tw.message)
			}
		}
	}
}

// tracedWriter keeps the status and the error message of an answer for
// its span.
type tracedWriter struct {
	http.ResponseWriter
	status  int
	message string
}

func (w *tracedWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *tracedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// traceError keeps the message of an error answer for the request's span.
func traceError(w http.ResponseWriter, msg string) {
	if tw, ok := w.(*tracedWriter); ok {
		tw.message = msg
	}
}

// traceRead puts what a read asks for on its request's span.
func (s *Server) traceRead(ctx context.Context, req *query.Request) {
	if s.tracer != nil {
		tracing.Read(trace.SpanFromContext(ctx), req)
	}
}

// push hands events to the write path, in a CommitSpan when the request
// is traced.
func (s *Server) push(ctx context.Context, src *definition.Source, events []event.Event) (ingest.Result, error) {
	if s.tracer == nil {
		return s.cfg.Writer.Push(ctx, src, events)
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return s.cfg.Writer.Push(ctx, src, events)
	}
	parent.SetAttributes(tracing.SourceKey.String(src.Name), tracing.EventsKey.Int(len(events)))
	ctx, span := s.tracer.Start(ctx, tracing.CommitSpan, trace.WithAttributes(tracing.EventsKey.Int(len(events))))
	res, err := s.cfg.Writer.Push(ctx, src, events)
	tracing.Fail(span, err)
	span.End()
	if err == nil {
		parent.SetAttributes(tracing.AcceptedKey.Int(res.Accepted), tracing.DroppedLateKey.Int(res.DroppedLate))
	}
	return res, err
}
