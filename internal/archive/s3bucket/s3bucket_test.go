package s3bucket

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// newBucket starts a fake S3 server in-process on loopback and returns a
// Bucket in a fresh S3 bucket of it.
func newBucket(t *testing.T, prefix string) *Bucket {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	c, err := minio.New(srv.Listener.Addr().String(), &minio.Options{
		Creds:        credentials.NewStaticV4("key", "secret", ""),
		BucketLookup: minio.BucketLookupPath,
		Region:       "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), "archive", minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	b, err := New(c, "archive", prefix)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBucket(t *testing.T) {
	ctx := context.Background()
	for _, prefix := range []string{"", "kiln/"} {
		b := newBucket(t, prefix)
		if _, err := b.Get(ctx, "a/x.parquet"); !errors.Is(err, archive.ErrNotExist) {
			t.Fatalf("get of a missing object: %v", err)
		}
		for _, n := range []string{"a/y.parquet", "a/x.parquet", "ab/z.parquet", "b/w.parquet"} {
			if err := b.Put(ctx, n, []byte(n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Put(ctx, "a/x.parquet", []byte("again")); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Get(ctx, "a/x.parquet"); err != nil || string(got) != "again" {
			t.Fatalf("get = %q, %v", got, err)
		}
		if got, err := b.List(ctx, "a/"); err != nil || !slices.Equal(got, []archive.Object{{Name: "a/x.parquet", Size: 5}, {Name: "a/y.parquet", Size: 11}}) {
			t.Fatalf("list a/ = %v, %v", got, err)
		}
		if got, err := b.List(ctx, "a"); err != nil || len(got) != 3 {
			t.Fatalf("list a = %v, %v", got, err)
		}
		if err := b.Delete(ctx, "a/x.parquet"); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, "a/x.parquet"); err != nil {
			t.Fatalf("delete of a missing object: %v", err)
		}
		if got, err := b.List(ctx, ""); err != nil || !slices.Equal(names(got), []string{"a/y.parquet", "ab/z.parquet", "b/w.parquet"}) {
			t.Fatalf("list = %v, %v", got, err)
		}
	}
}

// TestArchive runs the archive's operations over S3.
func TestArchive(t *testing.T) {
	ctx := context.Background()
	a := archive.New(newBucket(t, "kiln/"))
	src := &definition.Source{Name: "clicks", Fields: []definition.Field{{Name: "user", Type: event.Int64}}}
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	ev := func(at time.Duration, off int64) archive.Archived {
		return archive.Archived{Time: day0.Add(at).UnixMilli(), Arrival: day0.Add(at).UnixMilli(),
			Fields: []event.Value{event.IntValue(off)}, Origin: archive.Origin{Stream: "t/0", Offset: off}}
	}
	for i := range int64(4) {
		// Each batch repeats the previous batch's last event (a replay).
		batch := []archive.Archived{ev(time.Duration(i)*time.Hour, 2*i), ev(time.Duration(i)*time.Hour+day, 2*i+1)}
		if i > 0 {
			batch = append(batch, ev(time.Duration(i-1)*time.Hour+day, 2*i-1))
		}
		if err := a.Append(ctx, src, "b"+string(rune('0'+i)), batch); err != nil {
			t.Fatal(err)
		}
	}
	scan := func() []int64 {
		var offs []int64
		if err := a.Scan(ctx, src, day0, day0.Add(2*day), func(e archive.Archived) error {
			offs = append(offs, e.Origin.Offset)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return offs
	}
	want := []int64{0, 2, 4, 6, 1, 3, 5, 7}
	if got := scan(); !slices.Equal(got, want) {
		t.Fatalf("scan = %v, want %v", got, want)
	}
	for _, d := range []time.Time{day0, day0.Add(day)} {
		if err := a.Compact(ctx, src, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := scan(); !slices.Equal(got, want) {
		t.Fatalf("after compaction, scan = %v, want %v", got, want)
	}
	if err := a.Retain(ctx, src, day, day0.Add(2*day)); err != nil {
		t.Fatal(err)
	}
	if got := scan(); !slices.Equal(got, want[4:]) {
		t.Fatalf("after retention, scan = %v, want %v", got, want[4:])
	}
}

func TestOpenURL(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_ENDPOINT_URL", "")
	ctx := context.Background()
	host := srv.Listener.Addr().String()
	if _, err := Open(ctx, "s3://archive/kiln?endpoint="+host+"&insecure=true"); err == nil || !strings.Contains(err.Error(), `bucket "archive" does not exist`) {
		t.Fatalf("missing bucket: got %v", err)
	}
	c, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4("key", "secret", ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, "archive", minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://"+host)
	b, err := Open(ctx, "s3://archive/kiln")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "x/y.parquet", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatObject(ctx, "archive", "kiln/x/y.parquet", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the object is not under the URL's prefix: %v", err)
	}
	for url, want := range map[string]string{
		"/tmp/x":                    "write s3://BUCKET/PREFIX",
		"s3://key:secret@archive/p": "credentials do not go in the URL",
		"s3://archive/p?regoin=x":   `unknown parameter "regoin"`,
	} {
		if _, err := Open(ctx, url); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", url, err, want)
		}
	}
}

func names(objs []archive.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}
