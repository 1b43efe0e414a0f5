package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/rowcache"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// memoCounter is a memo source that counts the memos it hands out.
type memoCounter struct {
	rowcache.ReadThrough
	memos atomic.Int64
}

func (m *memoCounter) GetMemo(ctx context.Context, keys [][]byte, fn func(int, []byte, bool, []byte) []byte) error {
	return m.ReadThrough.GetMemo(ctx, keys, func(i int, value []byte, found bool, memo []byte) []byte {
		if memo != nil {
			m.memos.Add(1)
		}
		return fn(i, value, found, memo)
	})
}

// Reads that serve rows' kept values (memos) give exactly the values of
// reads that decode and evaluate every row, while time moves across the
// windows' hops and rows change under the cache.
func TestMemoizedReadsEqualEvaluated(t *testing.T) {
	t.Run("set", func(t *testing.T) { testMemoizedReads(t, 0) })
	// Rows expire and are refilled: a refill of an unchanged row hands out
	// the memo kept with it.
	t.Run("expiring", func(t *testing.T) { testMemoizedReads(t, 10*time.Second) })
}

func testMemoizedReads(t *testing.T, maxAge time.Duration) {
	w := newWorld(t, 20, 300)
	var clock atomic.Int64
	clock.Store(now)
	engine := func(rows RowSource) *Engine {
		e, err := New(Config{Project: w.project, Plans: w.plans, Rows: rows, Now: clock.Load})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	plain := engine(w.store)
	cache := rowcache.New(rowcache.Options{
		MaxBytes: 256 << 10, // small: evictions happen
		MaxAge:   maxAge,
		Now:      func() time.Time { return time.UnixMilli(clock.Load()) },
	})
	src := &memoCounter{ReadThrough: rowcache.ReadThrough{Cache: cache, Load: w.store.Get}}
	memoized := engine(src)
	rng := rand.New(rand.NewPCG(5, 6))
	posts := w.project.View("post_engagement")
	plan := w.plans[posts]
	var a, b Result
	for round := range 400 {
		switch r := rng.IntN(10); {
		case r < 6: // seconds pass: the 5m window's tail moves every 25 s
			clock.Add(rng.Int64N(20_000))
		case r < 7: // hours pass
			clock.Add(rng.Int64N(6 * 3600_000))
		case r < 9: // the write path changes a few posts
			for range 1 + rng.IntN(5) {
				id := 1 + rng.Int64N(300)
				key := tile.AppendKey(nil, posts.Name, []event.Value{event.IntValue(id)})
				row := plan.NewRow()
				var old []byte
				w.store.Get(context.Background(), [][]byte{key}, func(_ int, v []byte, found bool) {
					if found {
						old = append(old, v...)
					}
				})
				if old != nil {
					if err := plan.DecodeRow(old, row); err != nil {
						t.Fatal(err)
					}
				}
				ts := clock.Load() - rng.Int64N(600_000) + 30_000 // some ahead of the clock: pending
				plan.Fold(row, &event.Event{TS: ts, Fields: []event.Value{event.IntValue(1), event.IntValue(id), event.StringValue("view"), event.FloatValue(float64(rng.IntN(100)))}}, clock.Load())
				plan.Advance(row, clock.Load())
				val := plan.AppendRow(nil, row)
				if err := w.store.Write(context.Background(), []store.KV{{Key: key, Value: val}}); err != nil {
					t.Fatal(err)
				}
				cache.Update(key, val)
			}
		}
		req := rankingRequest(t, plain, 1+rng.Int64N(25), 0)
		for range 1 + rng.IntN(60) {
			req.Keys[1] = append(req.Keys[1], event.IntValue(1+rng.Int64N(320)))
		}
		sameReads(t, fmt.Sprintf("round %d at %d", round, clock.Load()), plain, memoized, req, &a, &b)
	}
	if n := src.memos.Load(); n == 0 {
		t.Fatal("no memo was handed out: the test did not exercise them")
	}
	if st := cache.Stats(); maxAge > 0 && st.Expired == 0 {
		t.Fatalf("Stats %+v: no row expired", st)
	}
}

// A memo round-trips every kind of value it keeps, and refuses what it
// cannot hold or another plan's, and times outside its span.
func TestMemoEncoding(t *testing.T) {
	w := newWorld(t, 0, 0)
	p := w.plans[w.project.View("post_engagement")]
	other := w.plans[w.project.View("user_engagement")]
	vals := make([]event.Value, len(p.Outputs))
	for i := range vals {
		switch i % 4 {
		case 0:
			vals[i] = event.IntValue(int64(-i))
		case 1:
			vals[i] = event.FloatValue(float64(i) / 3)
		case 2:
			vals[i] = event.Value{}
		case 3:
			vals[i] = event.BoolValue(true)
		}
	}
	memo, ok := appendMemo(nil, p, 1234, 100, 200, vals)
	if !ok {
		t.Fatal("appendMemo refused numbers, nulls and bools")
	}
	got := make([]event.Value, len(vals))
	for _, at := range []int64{100, 150, 199} {
		newest, ok := readMemo(memo, p, at, got)
		if !ok || newest != 1234 {
			t.Fatalf("readMemo at %d: ok %v, newest %d", at, ok, newest)
		}
		for i := range vals {
			if !got[i].Equal(vals[i]) || got[i].Kind != vals[i].Kind {
				t.Fatalf("value %d: %v, kept %v", i, got[i], vals[i])
			}
		}
	}
	for _, at := range []int64{99, 200} {
		if _, ok := readMemo(memo, p, at, got); ok {
			t.Fatalf("readMemo at %d, outside [100, 200), served the memo", at)
		}
	}
	if _, ok := readMemo(memo, other, 150, make([]event.Value, len(other.Outputs))); ok {
		t.Fatal("another plan's memo was served")
	}
	if _, ok := readMemo(memo[:len(memo)-1], p, 150, got); ok {
		t.Fatal("a truncated memo was served")
	}
	vals[3] = event.StringValue("s")
	if _, ok := appendMemo(nil, p, 1234, 100, 200, vals); ok {
		t.Fatal("appendMemo kept a string")
	}
}
