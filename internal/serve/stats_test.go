package serve_test

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
)

// /debug/stats says how the write path's commits reach the store, so that
// write-behind on the embedded store is never silent.
func TestStatsNameTheWriteMode(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()
	resp, err := http.Get(n.URL() + "/debug/stats")
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
