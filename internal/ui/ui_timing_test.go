package ui_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/node/nodetest"
)

// BenchmarkDashboardPoll is what an open dashboard costs the server each
// second: one scrape of the admin listener's /metrics (the page draws
// everything else itself), on a node with one source and view.
func BenchmarkDashboardPoll(b *testing.B) {
	n, _ := nodetest.Start(b, "kiln.yaml", project, time.Now())
	admin := n.Server.Admin()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("/metrics: %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
