package serve_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/metadata"
)

func TestMetadata(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()

	resp, err := http.Get(n.URL() + "/v1/metadata")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/metadata: %d %s", resp.StatusCode, raw)
	}
	// The answer is the description kiln validate prints from.
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	want, _ := json.Marshal(metadata.Describe(p, plans))
	if string(raw) != string(want)+"\n" {
		t.Errorf("GET /v1/metadata:\n%s\nwant\n%s", raw, want)
	}

	code, out := post(t, n.URL()+"/v1/metadata", `{}`)
	if code != http.StatusMethodNotAllowed || out["error"] != "/v1/metadata takes GET, not POST" {
		t.Errorf("POST /v1/metadata: %d %v", code, out)
	}
}
