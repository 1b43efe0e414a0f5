package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// testSource has one field of every type.
func testSource() *definition.Source {
	return &definition.Source{Name: "clicks", Fields: []definition.Field{
		{Name: "user", Type: event.Int64},
		{Name: "score", Type: event.Float64},
		{Name: "kind", Type: event.String},
		{Name: "ok", Type: event.Bool},
	}}
}

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func ms(t time.Time) int64 { return t.UnixMilli() }

func ev(ts time.Time, stream string, off int64, user int64) Archived {
	return Archived{
		Time:    ms(ts),
		Arrival: ms(ts) + 5,
		Fields:  []event.Value{event.IntValue(user), event.FloatValue(float64(user) / 2), event.StringValue("k"), {}},
		Origin:  Origin{Stream: stream, Offset: off},
	}
}

func scanAll(t *testing.T, a *Archive, src *definition.Source) []Archived {
	t.Helper()
	var out []Archived
	err := a.Scan(context.Background(), src, time.UnixMilli(0), time.UnixMilli(maxTime+1), func(e Archived) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalEvents(a, b []Archived) bool {
	return slices.EqualFunc(a, b, func(x, y Archived) bool {
		return compareOrder(x, y) == 0 && compareContent(&x, &y) == 0
	})
}

func TestAppendScanLayout(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	a, src := New(dir), testSource()
	batch := []Archived{
		ev(day0.Add(25*time.Hour), "t/0", 7, 3),
		ev(day0.Add(time.Hour), "t/0", 5, 1),
		ev(day0.Add(time.Hour), "", 2, 2),
		ev(day0.Add(time.Hour), "t/0", 5, 1), // a duplicate within the batch
	}
	if err := a.Append(ctx, src, "p03-000000000123", batch); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"source=clicks/date=2026-03-01/b-p03-000000000123.parquet", "source=clicks/date=2026-03-02/b-p03-000000000123.parquet"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Error(err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(root, "source=clicks/date=2026-03-01/b-p03-000000000123.parquet"))
	// The same batch again writes the same bytes.
	if err := a.Append(ctx, src, "p03-000000000123", slices.Clone(batch)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(root, "source=clicks/date=2026-03-01/b-p03-000000000123.parquet"))
	if string(before) != string(after) {
		t.Error("replaying a batch changed its file")
	}
	want := []Archived{batch[2], batch[1], batch[0]}
	if got := scanAll(t, a, src); !equalEvents(got, want) {
		t.Errorf("scan = %v, want %v", got, want)
	}
	// The range is [from, to).
	var n int
	a.Scan(ctx, src, day0.Add(time.Hour), day0.Add(25*time.Hour), func(Archived) error { n++; return nil })
	if n != 2 {
		t.Errorf("scan of [1h, 25h) = %d events, want 2", n)
	}
}

func TestCompactAndRetain(t *testing.T) {
	ctx := context.Background()
	dir, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, src := New(dir), testSource()
	for i := range 5 {
		b := []Archived{ev(day0.Add(time.Duration(i)*time.Minute), "s", int64(i), int64(i)), ev(day0.Add(-time.Hour), "s", 100+int64(i), 1)}
		if err := a.Append(ctx, src, "b"+string(rune('0'+i)), b); err != nil {
			t.Fatal(err)
		}
	}
	// A replay under another ID repeats an origin.
	if err := a.Append(ctx, src, "replay", []Archived{ev(day0, "s", 0, 0)}); err != nil {
		t.Fatal(err)
	}
	want := scanAll(t, a, src)
	if len(want) != 10 {
		t.Fatalf("got %d events, want 10", len(want))
	}
	if err := a.Compact(ctx, src, day0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	files, _ := dir.List(ctx, "source=clicks/date=2026-03-01/")
	if len(files) != 1 || !strings.Contains(files[0].Name, "/c-") {
		t.Errorf("after compact: %v", files)
	}
	if got := scanAll(t, a, src); !equalEvents(got, want) {
		t.Errorf("compact changed the scan")
	}
	// Keep 24h at day0+24h: the day before day0 ended at day0, so it goes.
	if err := a.Retain(ctx, src, 24*time.Hour, day0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, a, src); !equalEvents(got, want[5:]) {
		t.Errorf("retain: got %d events, want %d", len(got), 5)
	}
	if names, _ := dir.List(ctx, ""); len(names) != 1 {
		t.Errorf("files left: %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir.root, "source=clicks", "date=2026-02-28")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired date's directory left: %v", err)
	}
}

func TestSchemaChange(t *testing.T) {
	ctx := context.Background()
	m := NewMem()
	a, src := New(m), testSource()
	if err := a.Append(ctx, src, "b1", []Archived{ev(day0, "s", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	// A field added since reads as null, a removed one is ignored.
	changed := &definition.Source{Name: "clicks", Fields: []definition.Field{
		{Name: "new", Type: event.String}, {Name: "user", Type: event.Int64},
	}}
	got := scanAll(t, a, changed)
	if len(got) != 1 || got[0].Fields[0].Kind != event.Null || !got[0].Fields[1].Equal(event.IntValue(1)) {
		t.Errorf("got %v", got)
	}
	// A type change is an error naming the file and the field.
	retyped := &definition.Source{Name: "clicks", Fields: []definition.Field{{Name: "user", Type: event.String}}}
	err := a.Scan(ctx, retyped, day0, day0.Add(day), func(Archived) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "b-b1.parquet") || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("retyped field: err = %v", err)
	}
	t.Log(err)
}

func TestAppendRefuses(t *testing.T) {
	ctx := context.Background()
	a, src := New(NewMem()), testSource()
	bad := map[string]func() error{
		"batch id":       func() error { return a.Append(ctx, src, "../x", nil) },
		"empty batch id": func() error { return a.Append(ctx, src, "", nil) },
		"field count": func() error {
			return a.Append(ctx, src, "b", []Archived{{Time: 1, Fields: []event.Value{{}}}})
		},
		"field type": func() error {
			e := ev(day0, "", 1, 1)
			e.Fields[0] = event.StringValue("x")
			return a.Append(ctx, src, "b", []Archived{e})
		},
		"time": func() error {
			e := ev(day0, "", 1, 1)
			e.Time = -1
			return a.Append(ctx, src, "b", []Archived{e})
		},
		"reserved field": func() error {
			s := &definition.Source{Name: "x", Fields: []definition.Field{{Name: "arrival", Type: event.Int64}}}
			return a.Append(ctx, s, "b", nil)
		},
		"source name": func() error {
			return a.Append(ctx, &definition.Source{Name: "a/b"}, "b", nil)
		},
	}
	for name, f := range bad {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
