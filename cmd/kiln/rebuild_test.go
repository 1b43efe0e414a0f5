package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

const rebuildProject = `
project: t
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string}
views:
  by_user:
    entity: user
    source: clicks
    features:
      views: {agg: count, where: {kind: view}, windows: [1h]}
`

// kiln serve refuses a changed view and says what to do; kiln rebuild
// rebuilds it from the archive under --data and sums up; kiln serve then
// starts.
func TestRebuildCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	fileA, fileB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	os.WriteFile(fileA, []byte(rebuildProject), 0o644)
	os.WriteFile(fileB, []byte(strings.Replace(rebuildProject, "windows: [1h]", "windows: [1h, 2h]", 1)), 0o644)

	// Some history under A, archived where kiln puts it by default.
	p, err := projectfile.Load(fileA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive.NewDir(filepath.Join(data, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	a := archive.New(b)
	now := time.Now().Add(-time.Minute)
	n, err := node.Start(node.Config{Project: p, DataDir: data, Addr: "127.0.0.1:0", Archive: a,
		Ingest: ingest.Options{Now: func() time.Time { return now }}})
	if err != nil {
		t.Fatal(err)
	}
	src := p.Source("clicks")
	var evs []event.Event
	for i := range 10 {
		evs = append(evs, event.Event{TS: now.UnixMilli() - int64(i)*1000, Fields: []event.Value{event.IntValue(int64(i % 3)), event.StringValue("view")}})
	}
	// The node journals the push; the journal reaches the archive at the
	// latest when kiln rebuild opens the data directory.
	if _, err := n.Writer.Push(context.Background(), src, evs); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // kiln serve stops as soon as it has started
	serve := func(file string) error {
		return run(ctx, []string{"serve", "-c", file, "--data", data, "--addr", "127.0.0.1:0", "--grpc-addr", "", "--admin-addr", ""}, &bytes.Buffer{}, &bytes.Buffer{})
	}
	err = serve(fileB)
	if err == nil || !strings.Contains(err.Error(), "window 2h added to feature views") || !strings.Contains(err.Error(), "kiln rebuild -c "+fileB+" --view by_user") {
		t.Fatalf("kiln serve on a changed view: %v", err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"rebuild", "-c", fileB, "--data", data, "--view", "by_user"}, &stdout, &stderr); err != nil {
		t.Fatalf("kiln rebuild: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "view by_user rebuilt: 10 events replayed") || !strings.Contains(stdout.String(), "into 3 rows") {
		t.Fatalf("kiln rebuild said:\n%s", stdout.String())
	}
	if err := serve(fileB); err != nil {
		t.Fatalf("kiln serve after kiln rebuild: %v", err)
	}
}
