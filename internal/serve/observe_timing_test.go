package serve

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, reused across
// requests, so that a benchmark measures the server, not the recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkRouteHealthz serves GET /healthz, the cheapest route: what a
// request costs in routing, and in counting, timing and logging it.
func BenchmarkRouteHealthz(b *testing.B) {
	s := feedServer(b)
	r := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		s.ServeHTTP(w, r)
		clear(w.h)
	}
}
