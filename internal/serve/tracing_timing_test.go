package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/tracing"
)

// BenchmarkReadTracing serves RW1's Q1 (one user) and Q2 (one user and 500
// posts) through POST /v1/features in-process, as BenchmarkFeastVsFeatures
// does, with tracing off and on: every trace recorded, or one in a hundred.
// Spans go through the SDK's batching to an exporter that drops them, so
// what is measured is Kiln's and the SDK's work, not a collector's.
func BenchmarkReadTracing(b *testing.B) {
	var postKeys []string
	for i := 1; i <= 500; i++ {
		postKeys = append(postKeys, fmt.Sprintf(`{"post_id": %d}`, i))
	}
	shapes := []struct{ name, body string }{
		{"Q1", `{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`},
		{"Q2", `{"service": "ranking", "entities": {"user": [{"user_id": 1}], "post": [` + strings.Join(postKeys, ",") + `]}}`},
	}
	for _, mode := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: off
	}{{"off", nil}, {"ratio=1", tracing.Ratio(1)}, {"ratio=0.01", tracing.Ratio(0.01)}} {
		var tp trace.TracerProvider
		if mode.sampler != nil {
			sdk, err := tracing.Setup(context.Background(), tracing.Options{Exporter: dropSpans{}, Sampler: mode.sampler})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { sdk.Shutdown(context.Background()) })
			tp = sdk
		}
		s := tracedRankedServer(b, 500, tp)
		for _, shape := range shapes {
			b.Run(mode.name+"/"+shape.name, func(b *testing.B) { benchRead(b, s, []byte(shape.body)) })
		}
	}
}

// benchRead serves body to POST /v1/features b.N times, and reports the
// process's CPU time per request (cpu-ns/op, every goroutine's: the span
// exporter's too) beside the wall time: on a machine shared with other
// work it moves less than ns/op does.
func benchRead(b *testing.B, s *Server, body []byte) {
	b.ReportAllocs()
	start := CPUSeconds()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/features", bytes.NewReader(body)))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric((CPUSeconds()-start)*1e9/float64(b.N), "cpu-ns/op")
}

// dropSpans is an exporter that drops what it is given.
type dropSpans struct{}

func (dropSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (dropSpans) Shutdown(context.Context) error                             { return nil }
