package archive

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Scanner yields what Scan does; canceled, it stops with the context's
// error rather than a short scan that looks complete; closed early, its
// reading goroutine ends.
func TestScanner(t *testing.T) {
	ctx := context.Background()
	b, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, src := New(b), testSource()
	for d := range 4 {
		day := day0.Add(time.Duration(d) * 24 * time.Hour)
		if err := a.Append(ctx, src, "b-1", []Archived{ev(day.Add(time.Hour), "s", int64(2*d), 1), ev(day, "s", int64(2*d+1), 2)}); err != nil {
			t.Fatal(err)
		}
	}
	want := scanAll(t, a, src)
	sc := a.Scanner(ctx, src, time.UnixMilli(0), time.UnixMilli(maxTime+1))
	var got []Archived
	for sc.Next() {
		got = append(got, *sc.Event())
	}
	sc.Close()
	if sc.Err() != nil || len(want) != 8 || !equalEvents(got, want) {
		t.Fatalf("scanner: %v, %d events; Scan %d", sc.Err(), len(got), len(want))
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc = a.Scanner(cctx, src, time.UnixMilli(0), time.UnixMilli(maxTime+1))
	n := 0
	for sc.Next() {
		if n++; n == 3 {
			cancel() // mid-date: dates read ahead may still come, but the end is an error
		}
	}
	sc.Close()
	if !errors.Is(sc.Err(), context.Canceled) {
		t.Errorf("canceled after 3 events: %d events, error %v", n, sc.Err())
	}

	sc = a.Scanner(ctx, src, time.UnixMilli(0), time.UnixMilli(maxTime+1))
	if !sc.Next() {
		t.Fatal(sc.Err())
	}
	sc.Close() // returns once the reader has stopped; -race and the leak of a blocked goroutine would show otherwise
}
