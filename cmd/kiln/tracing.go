package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// tracingFlags are kiln serve's flags of OpenTelemetry tracing.
type tracingFlags struct {
	endpoint *string
	ratio    sampleRatio
}

func addTracingFlags(fs *flag.FlagSet) *tracingFlags {
	t := new(tracingFlags)
	t.endpoint = fs.String("otlp-endpoint", "", "send traces of requests to this OpenTelemetry collector, over OTLP/gRPC: HOST:PORT (plaintext) or https://HOST:PORT (TLS) (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; neither: no tracing)")
	fs.Var(&t.ratio, "trace-sample-ratio", "share of requests traced, a `ratio` from 0 to 1, unless the caller's traceparent says whether to (default: OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, else 1)")
	return t
}

// setup returns the tracer provider the flags and the environment ask
// for, or nil: no tracing.
func (t *tracingFlags) setup(ctx context.Context, role node.Role, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	o := tracing.Options{Endpoint: *t.endpoint, Role: role.String(), Logger: logger}
	if t.ratio.set {
		o.Sampler = tracing.Ratio(t.ratio.ratio)
	}
	tp, err := tracing.Setup(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if tp != nil {
		logger.Info("tracing requests", "collector", *t.endpoint, "sample_ratio", t.ratio.String(), "note", "empty: from the OTEL_ environment variables")
	}
	return tp, nil
}

// shutdown exports the spans still queued, for up to five seconds.
func (t *tracingFlags) shutdown(tp *sdktrace.TracerProvider, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tracing.Shutdown(ctx, tp); err != nil {
		logger.Warn("the last spans were not exported", "err", err)
	}
}

// sampleRatio is --trace-sample-ratio.
type sampleRatio struct {
	ratio float64
	set   bool
}

func (r *sampleRatio) String() string {
	if r == nil || !r.set {
		return ""
	}
	return strconv.FormatFloat(r.ratio, 'g', -1, 64)
}

func (r *sampleRatio) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v <= 1) {
		return fmt.Errorf("%q is not a share from 0 to 1: give 0.01 to trace one request in a hundred", s)
	}
	*r = sampleRatio{ratio: v, set: true}
	return nil
}
