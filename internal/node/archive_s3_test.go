package node_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// An ingest process archives into an S3-compatible store (an S3 server in
// this process, on loopback) named by its location URL, and another
// process reads the archive from there.
func TestArchiveInS3(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	host := srv.Listener.Addr().String()
	c, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4("key", "secret", ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), "features", minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	p, err := projectfile.Parse("kiln.yaml", []byte(`project: s3
entities: {user: {keys: [user_id]}}
sources:
  clicks: {type: push, event_time: ts, fields: {user_id: int64, kind: string}}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n: {agg: count, windows: [1h]}
`))
	if err != nil {
		t.Fatal(err)
	}
	location := "s3://features/kiln/archive?endpoint=" + host + "&insecure=true"
	ctx := context.Background()
	arch, where, err := node.OpenArchive(ctx, location, p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if where != location {
		t.Errorf("the archive says it is at %q", where)
	}
	now := time.Now()
	n, err := node.Start(node.Config{Project: p, DataDir: t.TempDir(), Addr: "127.0.0.1:0", Archive: arch,
		Ingest: ingest.Options{Now: func() time.Time { return now }}})
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i := range 100 {
		evs = append(evs, event.Event{TS: now.UnixMilli() - int64(i), Fields: []event.Value{event.IntValue(int64(i % 10)), event.StringValue("view")}})
	}
	if _, err := n.Writer.Push(ctx, p.Source("clicks"), evs); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil { // archives what the journal holds
		t.Fatal(err)
	}
	// Another process reads it.
	other, _, err := node.OpenArchive(ctx, location, p, "")
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	err = other.Scan(ctx, p.Source("clicks"), now.Add(-time.Hour), now.Add(time.Hour), func(ev archive.Archived) error {
		if !strings.HasPrefix(ev.Origin.Stream, "push/") || ev.Arrival != now.UnixMilli() {
			t.Errorf("archived %+v", ev)
		}
		got++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != 100 {
		t.Errorf("read %d events back from S3, want 100", got)
	}
	objs := 0
	for o := range c.ListObjects(ctx, "features", minio.ListObjectsOptions{Prefix: "kiln/archive/source=clicks/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		objs++
	}
	if objs == 0 {
		t.Error("no object under the location's prefix")
	}
}
