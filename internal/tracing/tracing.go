// Package tracing owns Kiln's OpenTelemetry tracing: the SDK's tracer
// provider with its OTLP exporter, made from configuration (Setup), the
// spans of the read path below the APIs (a lookup of the row cache, a read
// of the store: CachedRows, StoreRows) and the attributes the APIs put on
// their request spans (Read, Push).
//
// Tracing is off unless configured: Setup then returns a nil provider, and
// a caller given none installs nothing, so the request path runs as if this
// package did not exist. The HTTP API (package serve) and the gRPC API
// (package grpcapi) start the request spans themselves, each given the
// provider in its configuration; nothing here sets OpenTelemetry's global
// provider or propagator.
//
// The caller owns the provider Setup returns: it passes it to what traces
// and, once they have stopped, calls Shutdown, which exports the spans
// still queued.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is the service.name of every span Kiln exports.
const ServiceName = "kiln"

// Scope is the instrumentation scope of Kiln's own spans.
const Scope = "github.com/kiln-dev/kiln"

// Propagator is how trace context crosses into Kiln: W3C Trace Context
// (the traceparent and tracestate headers, or gRPC metadata of those
// names).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Options configures Setup. The zero value is off unless the environment
// names a collector.
type Options struct {
	// Endpoint is the OTLP collector spans are sent to over gRPC:
	// HOST:PORT (plaintext), or an http:// (plaintext) or https:// (TLS)
	// URL. Empty: the OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT environment variable if either is set
	// (the exporter then reads its other OTEL_EXPORTER_OTLP_* settings
	// too); otherwise tracing is off.
	Endpoint string
	// Sampler decides which traces are recorded, normally Ratio(r). nil:
	// the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, by
	// default every trace that does not come from a caller who did not
	// record it (parentbased_always_on).
	Sampler sdktrace.Sampler
	// Role and Version are the process's kiln.role and service.version.
	// Version "" is BuildVersion().
	Role, Version string
	// Logger receives failures to export spans: the first after a success
	// and the first success after failures. Default: discard.
	Logger *slog.Logger
	// Exporter, if set, receives the spans instead of an OTLP exporter,
	// and tracing is on whatever Endpoint says (tests).
	Exporter sdktrace.SpanExporter
}

// Setup returns the tracer provider o describes, or nil when tracing is
// off. The provider batches spans in memory and exports them in the
// background: a request never waits for the collector, and when the queue
// is full (the collector is down or slow) new spans are dropped.
func Setup(ctx context.Context, o Options) (*sdktrace.TracerProvider, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	exp := o.Exporter
	where := "the test exporter"
	if exp == nil {
		var opts []otlptracegrpc.Option
		switch {
		case o.Endpoint != "":
			where = o.Endpoint
			var err error
			if opts, err = endpointOptions(o.Endpoint); err != nil {
				return nil, err
			}
		case os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
			where = os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
		case os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
			where = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		default:
			return nil, nil
		}
		// The client connects when the first batch is sent: a collector
		// that is down does not stop Kiln from starting.
		otlp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("the OTLP exporter to %s: %w", where, err)
		}
		exp = otlp
	}
	version := o.Version
	if version == "" {
		version = BuildVersion()
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(version), RoleKey.String(o.Role)),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		// Last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
		// override what is above.
		resource.WithFromEnv(),
	)
	switch {
	case err != nil && res == nil:
		return nil, fmt.Errorf("the tracing resource: %w (check OTEL_RESOURCE_ATTRIBUTES)", err)
	case err != nil:
		o.Logger.Warn("some resource attributes of the spans were left out: check OTEL_RESOURCE_ATTRIBUTES", "err", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, where: where, log: o.Logger}),
	}
	if o.Sampler != nil {
		opts = append(opts, sdktrace.WithSampler(o.Sampler))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// Ratio is the sampler that records a share r (0 to 1) of the traces that
// start at Kiln, and a trace whose caller's context says sampled or not as
// it says (the W3C traceparent's flag): a trace is kept or dropped whole.
func Ratio(r float64) sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r))
}

// endpointOptions reads an Options.Endpoint.
func endpointOptions(endpoint string) ([]otlptracegrpc.Option, error) {
	if strings.Contains(endpoint, "://") {
		if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
			return nil, fmt.Errorf("OTLP endpoint %q: give HOST:PORT, http://HOST:PORT or https://HOST:PORT (OTLP over gRPC, usually port 4317)", endpoint)
		}
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(endpoint)}, nil
	}
	if host, port, err := net.SplitHostPort(endpoint); err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("OTLP endpoint %q: give HOST:PORT, like localhost:4317, or an https:// URL for TLS", endpoint)
	}
	return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure()}, nil
}

// loggingExporter logs the changes between exporting and failing to, not
// every failed batch: a collector that is down would otherwise log a line
// per batch.
type loggingExporter struct {
	sdktrace.SpanExporter
	where  string
	log    *slog.Logger
	failed atomic.Bool
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	switch {
	case err != nil && !e.failed.Swap(true):
		e.log.Warn("spans not exported; further failures are logged once spans are exported again",
			"collector", e.where, "spans", len(spans), "err", err)
	case err == nil && e.failed.Swap(false):
		e.log.Info("spans exported again", "collector", e.where)
	}
	return err
}

// BuildVersion is the version of the running binary: its module version,
// or the commit it was built from (with "-dirty" if the tree had changes),
// or "devel".
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Shutdown exports the spans still queued and stops tp, within ctx; a nil
// tp is off and has nothing to do.
func Shutdown(ctx context.Context, tp *sdktrace.TracerProvider) error {
	if tp == nil {
		return nil
	}
	if err := tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("exporting the last spans: %w", err)
	}
	return nil
}

// Attributes of Kiln's spans, beside OpenTelemetry's semantic conventions.
const (
	// RoleKey is the resource attribute of the process's role: all,
	// ingest or serve.
	RoleKey = attribute.Key("kiln.role")
	// ServiceKey is the feature service a read asked for ("" for a list
	// of features).
	ServiceKey = attribute.Key("kiln.service")
	// EntitiesKey is the number of entity keys a read asked for.
	EntitiesKey = attribute.Key("kiln.entities")
	// FeaturesKey is the number of features a read asked for per key,
	// summed over entity types.
	FeaturesKey = attribute.Key("kiln.features")
	// ValuesKey is the number of feature values a read answered.
	ValuesKey = attribute.Key("kiln.values")
	// SourceKey is the source a push was for.
	SourceKey = attribute.Key("kiln.source")
	// EventsKey is the number of events of a push; AcceptedKey and
	// DroppedLateKey how many the write path took and how many it dropped
	// for being older than every window.
	EventsKey      = attribute.Key("kiln.events")
	AcceptedKey    = attribute.Key("kiln.events.accepted")
	DroppedLateKey = attribute.Key("kiln.events.dropped_late")
	// RowsKey is the number of rows a cache lookup or a store read asked
	// for, RowsFoundKey how many of them the store had.
	RowsKey      = attribute.Key("kiln.rows")
	RowsFoundKey = attribute.Key("kiln.rows.found")
)
