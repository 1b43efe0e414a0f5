package archive

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestScanDuringCompact scans while another goroutine appends and compacts
// the same date: every scan must read each event appended before it began
// exactly once, though files vanish under it.
func TestScanDuringCompact(t *testing.T) {
	ctx := context.Background()
	src := testSource()
	dir, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := New(dir)
	const batches = 30
	var mu sync.Mutex
	acked := 0 // batches 0..acked-1 are archived
	done := make(chan error, 1)
	go func() {
		for i := range batches {
			e := ev(day0.Add(time.Duration(i)*time.Minute), "s", int64(i), int64(i))
			if err := a.Append(ctx, src, fmt.Sprintf("b%03d", i), []Archived{e}); err != nil {
				done <- err
				return
			}
			mu.Lock()
			acked = i + 1
			mu.Unlock()
			if i%3 == 2 {
				if err := a.Compact(ctx, src, day0); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		mu.Lock()
		before := acked
		mu.Unlock()
		got := scanAll(t, a, src)
		seen := map[int64]bool{}
		for _, e := range got {
			if seen[e.Origin.Offset] {
				t.Fatalf("offset %d read twice", e.Origin.Offset)
			}
			seen[e.Origin.Offset] = true
		}
		for i := range before {
			if !seen[int64(i)] {
				t.Fatalf("offset %d, archived before the scan, not read (%d archived)", i, before)
			}
		}
	}
	if got := scanAll(t, a, src); len(got) != batches {
		t.Fatalf("read %d events, want %d", len(got), batches)
	}
}
