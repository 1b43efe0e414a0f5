package archive

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var errCrash = errors.New("crashed")

// crashBucket passes operations to b until the k-th (counting every call),
// which crashes the process: with after set the operation takes effect and
// then fails (the crash hit before the caller learned of it), otherwise it
// fails without effect. Every later operation fails without effect.
type crashBucket struct {
	b     Bucket
	k     int
	after bool

	mu      sync.Mutex
	n       int
	crashed bool
}

// op says whether to perform the operation and what to return if so.
func (c *crashBucket) op() (do bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return false, errCrash
	}
	c.n++
	if c.n < c.k {
		return true, nil
	}
	c.crashed = true
	return c.after, errCrash
}

func (c *crashBucket) Put(ctx context.Context, name string, data []byte) error {
	do, err := c.op()
	if do {
		if perr := c.b.Put(ctx, name, data); perr != nil {
			return perr
		}
	}
	return err
}

func (c *crashBucket) Get(ctx context.Context, name string) ([]byte, error) {
	do, err := c.op()
	if !do {
		return nil, err
	}
	data, gerr := c.b.Get(ctx, name)
	if gerr != nil {
		return nil, gerr
	}
	return data, err
}

func (c *crashBucket) List(ctx context.Context, prefix string) ([]Object, error) {
	do, err := c.op()
	if !do {
		return nil, err
	}
	names, lerr := c.b.List(ctx, prefix)
	if lerr != nil {
		return nil, lerr
	}
	return names, err
}

func (c *crashBucket) Delete(ctx context.Context, name string) error {
	do, err := c.op()
	if do {
		if derr := c.b.Delete(ctx, name); derr != nil {
			return derr
		}
	}
	return err
}

// crashScript is a history of appends (two replays among them) and
// compactions over three dates.
type crashStep struct {
	batch   string // an Append of batches[batch], or
	compact time.Time
}

func crashBatches() map[string][]Archived {
	h := time.Hour
	return map[string][]Archived{
		"p0-1": {ev(day0.Add(h), "t/0", 1, 1), ev(day0.Add(25*h), "t/0", 2, 2), ev(day0.Add(-h), "t/0", 3, 3)},
		"p0-4": {ev(day0.Add(2*h), "t/0", 4, 4), ev(day0.Add(26*h), "t/0", 5, 5)},
		// A stream replay archives t/0 offsets 4 and 5 again under another ID.
		"p0-4b":  {ev(day0.Add(2*h), "t/0", 4, 4), ev(day0.Add(26*h), "t/0", 5, 5), ev(day0.Add(3*h), "t/0", 6, 6)},
		"push-1": {ev(day0.Add(4*h), "", 1, 7), ev(day0.Add(-2*h), "", 2, 8)},
	}
}

var crashScript = []crashStep{
	{batch: "p0-1"},
	{batch: "p0-4"},
	{compact: day0},
	{batch: "p0-4b"},
	{batch: "p0-1"}, // a replay under the same ID, after its file was compacted away
	{compact: day0.Add(24 * time.Hour)},
	{batch: "push-1"},
	{compact: day0},
	{compact: day0.Add(-time.Hour)},
}

// runScript runs the script on a until an operation fails, and returns the
// batches whose Append returned nil and the batch interrupted (if any).
func runScript(ctx context.Context, a *Archive, batches map[string][]Archived) (acked map[string]bool, interrupted string, err error) {
	src := testSource()
	acked = map[string]bool{}
	for _, s := range crashScript {
		if s.batch != "" {
			if err := a.Append(ctx, src, s.batch, batches[s.batch]); err != nil {
				return acked, s.batch, err
			}
			acked[s.batch] = true
		} else if err := a.Compact(ctx, src, s.compact); err != nil {
			return acked, "", err
		}
	}
	return acked, "", nil
}

// TestCrash crashes the script at every operation, both before and after the
// operation takes effect, on both buckets. After the crash a fresh Archive
// over the same bucket must read every event of an acknowledged Append
// exactly once, and nothing else but events of the interrupted batch; after
// recovery (the interrupted batch appended again, every date compacted) it
// must read exactly the acknowledged and interrupted batches.
func TestCrash(t *testing.T) {
	ctx := context.Background()
	src := testSource()
	batches := crashBatches()
	// Count the script's operations.
	count := &crashBucket{b: NewMem(), k: 1 << 30}
	if _, _, err := runScript(ctx, New(count), batches); err != nil {
		t.Fatal(err)
	}
	if count.n < 20 {
		t.Fatalf("the script ran only %d operations", count.n)
	}
	for _, backend := range []string{"mem", "dir"} {
		for _, after := range []bool{false, true} {
			for k := 1; k <= count.n; k++ {
				t.Run(fmt.Sprintf("%s/after=%v/k=%d", backend, after, k), func(t *testing.T) {
					t.Parallel()
					var b Bucket = NewMem()
					if backend == "dir" {
						d, err := NewDir(t.TempDir())
						if err != nil {
							t.Fatal(err)
						}
						b = d
					}
					cb := &crashBucket{b: b, k: k, after: after}
					acked, interrupted, err := runScript(ctx, New(cb), batches)
					if !errors.Is(err, errCrash) {
						t.Fatalf("the script did not crash at operation %d: %v", k, err)
					}
					a := New(b) // the restarted process
					checkRecovered(t, k, "after the crash", scanAll(t, a, src), batches, acked, interrupted, false)

					if interrupted != "" {
						if err := a.Append(ctx, src, interrupted, batches[interrupted]); err != nil {
							t.Fatal(err)
						}
					}
					for d := -1; d <= 1; d++ {
						if err := a.Compact(ctx, src, day0.Add(time.Duration(d)*day)); err != nil {
							t.Fatal(err)
						}
					}
					checkRecovered(t, k, "after recovery", scanAll(t, a, src), batches, acked, interrupted, true)
				})
			}
		}
	}
}

func checkRecovered(t *testing.T, k int, when string, got []Archived, batches map[string][]Archived, acked map[string]bool, interrupted string, complete bool) {
	t.Helper()
	must, may := model{}, model{}
	for id := range acked {
		must.add(batches[id])
		may.add(batches[id])
	}
	if interrupted != "" {
		may.add(batches[interrupted])
	}
	seen := map[Origin]bool{}
	for _, e := range got {
		if seen[e.Origin] {
			t.Fatalf("k=%d %s: origin %v read twice", k, when, e.Origin)
		}
		seen[e.Origin] = true
		want, ok := may[dateOf(e.Time)][e.Origin]
		if !ok {
			t.Fatalf("k=%d %s: read %v, which no acknowledged or interrupted batch holds", k, when, e)
		}
		if compareContent(&e, &want) != 0 {
			t.Fatalf("k=%d %s: read %v, want %v", k, when, e, want)
		}
	}
	need := must
	if complete {
		need = may
	}
	for _, evs := range need {
		for o := range evs {
			if !seen[o] {
				t.Fatalf("k=%d %s: origin %v lost", k, when, o)
			}
		}
	}
}
