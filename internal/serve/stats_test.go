package serve_test

import (
	"runtime"

	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/kiln-dev/kiln/internal/serve"
)

// /debug/stats says how the write path's commits reach the store, so that
// write-behind on the embedded store is never silent.
func TestStatsNameTheWriteMode(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()
	resp, err := http.Get(n.AdminURL() + "/debug/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Ingest struct{ WriteMode string } `json:"ingest"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Ingest.WriteMode != "write-behind" {
		t.Fatalf("ingest.WriteMode %q, want write-behind (the embedded store)", out.Ingest.WriteMode)
	}
}

// The recent pauses /debug/stats reports are the runtime's, oldest first:
// the last is the pause of the cycle that just ran.
func TestRecentPausesOldestFirst(t *testing.T) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	got := serve.RecentPauses(&ms)
	if want := min(int(ms.NumGC), 256); len(got) != want {
		t.Fatalf("%d pauses, want %d", len(got), want)
	}
	if last := got[len(got)-1]; last != ms.PauseNs[(ms.NumGC+255)%256] || last == 0 {
		t.Fatalf("last pause %d, want %d, the latest cycle's", last, ms.PauseNs[(ms.NumGC+255)%256])
	}
}
