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

// Reads through the row cache give exactly the values of reads from the
// store, cold or warm.
func TestCachedReadsEqualUncached(t *testing.T) {
	w := newWorld(t, 20, 300)
	plain := w.engine(t, nil)
	cache := rowcache.New(rowcache.Options{MaxBytes: 64 << 10}) // small: evictions happen
	cached := w.engine(t, rowcache.ReadThrough{Cache: cache, Load: w.store.Get})
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b Result
	for round := range 200 {
		req := rankingRequest(t, plain, 1+rng.Int64N(25), 0)
		for range 1 + rng.IntN(40) {
			req.Keys[1] = append(req.Keys[1], event.IntValue(1+rng.Int64N(320)))
		}
		sameReads(t, fmt.Sprintf("round %d", round), plain, cached, req, &a, &b)
	}
	if st := cache.Stats(); st.Hits == 0 || st.Misses == 0 {
		t.Fatalf("cache stats %+v: the test did not exercise both hits and misses", st)
	}
}

// sameReads reads req with want's engine and got's and fails unless both
// give the same presence, event times and values.
func sameReads(t *testing.T, what string, want, got *Engine, req *Request, a, b *Result) {
	t.Helper()
	if err := want.Read(context.Background(), req, a); err != nil {
		t.Fatal(err)
	}
	if err := got.Read(context.Background(), req, b); err != nil {
		t.Fatal(err)
	}
	for i := range a.Entities {
		ea, eb := &a.Entities[i], &b.Entities[i]
		for j := range ea.N {
			if ea.Present[j] != eb.Present[j] || (ea.Present[j] && ea.EventTime[j] != eb.EventTime[j]) {
				t.Fatalf("%s: entity %d key %d: presence or event time differ", what, i, j)
			}
			for c := range ea.Columns {
				if va, vb := ea.Columns[c].Value(j), eb.Columns[c].Value(j); !va.Equal(vb) {
					t.Fatalf("%s: %s of key %d: %v, want %v", what, req.Prepared.Entities[i].Features[c].Name, j, vb, va)
				}
			}
		}
	}
}

// A row changed in the store by another process (no Set on this cache) is
// served from the cache only until the staleness bound, never after.
func TestCacheNeverServesPastStalenessBound(t *testing.T) {
	w := newWorld(t, 1, 0)
	var clock atomic.Int64
	clock.Store(time.Unix(1000, 0).UnixNano())
	cache := rowcache.New(rowcache.Options{MaxAge: time.Second, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	e := w.engine(t, rowcache.ReadThrough{Cache: cache, Load: w.store.Get})
	prep, _ := e.Prepare([]string{"user_engagement:last_post"})
	req := &Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(1)}}}
	read := func() event.Value {
		var res Result
		if err := e.Read(context.Background(), req, &res); err != nil {
			t.Fatal(err)
		}
		return res.Entities[0].Columns[0].Value(0)
	}
	before := read() // cached now
	// Another writer replaces the row in the store.
	v := w.project.View("user_engagement")
	plan := w.plans[v]
	row := plan.NewRow()
	plan.Fold(row, &event.Event{TS: now, Fields: []event.Value{event.IntValue(1), event.IntValue(424242), event.StringValue("view"), event.FloatValue(1)}}, now)
	key := tile.AppendKey(nil, v.Name, []event.Value{event.IntValue(1)})
	if err := w.store.Write(context.Background(), []store.KV{{Key: key, Value: plan.AppendRow(nil, row)}}); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(time.Second)) // exactly at the bound: may still be served
	if got := read(); !got.Equal(before) {
		t.Fatalf("within the bound the cache should serve its copy %v, got %v", before, got)
	}
	clock.Add(1) // past the bound: must not be served
	if got := read(); got.Int != 424242 {
		t.Fatalf("past the staleness bound the cache served %v, want the new 424242", got)
	}
}
