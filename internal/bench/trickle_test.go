package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// The trickling clients are cut off by a server's read timeout and come
// back, and the server's RSS is sampled meanwhile.
func TestTrickle(t *testing.T) {
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: project, DataDir: t.TempDir(), Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		HTTPTimeouts: node.HTTPTimeouts{Read: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := &server{url: n.URL(), adminURL: n.AdminURL()}
	ctl := &http.Client{}
	tr, err := startTrickle(context.Background(), n.URL(), 5, 20*time.Millisecond, func(ctx context.Context) (serverStats, error) { return srv.stats(ctx, ctl) })
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for tr.cutOff.Load() < 10 || tr.peak.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %d connections cut off, peak RSS %d", tr.cutOff.Load(), tr.peak.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling, with the deadline above
	}
	res := tr.stop()
	if res.Connections != 5 || res.BytesSent == 0 || res.PeakRSSBytes == 0 {
		t.Errorf("result %+v", res)
	}
	if st := n.Writer.Stats(); st.Accepted != 0 {
		t.Errorf("%d events accepted from trickled pushes", st.Accepted)
	}
}
