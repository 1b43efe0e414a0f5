package query

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/rowcache"
)

// The read path alone (rows served from memory) and over the embedded store,
// for RW1's query shapes: Q1 (one user, 12 values) and Q2 (one user and
// 500 posts, 9,512 values).
func BenchmarkRead(b *testing.B) {
	w := newWorld(b, 100, 1500)
	for _, src := range []struct {
		name string
		rows RowSource
	}{{"mem", w.memSource(b)}, {"pebble", w.store}} {
		e := w.engine(b, src.rows)
		for _, q := range []struct {
			name  string
			posts int
		}{{"Q1", 0}, {"Q2", 500}} {
			b.Run(src.name+"/"+q.name, func(b *testing.B) {
				req := rankingRequest(b, e, 7, q.posts)
				if q.posts == 0 {
					p, _ := e.Service("user_profile")
					req.Prepared, req.Keys = p, req.Keys[:1]
				}
				values := 12 + q.posts*19
				var res Result
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := e.Read(context.Background(), req, &res); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(values)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
			})
		}
	}
}

// BenchmarkReadCached is Q2 (one user and 500 posts) read through the row
// cache as a scale-out server does (rows at most max_staleness old), with
// rows served from memory by the "store": "hits" finds every row cached and
// fresh; "expired" finds every row cached but too old, so each is read from
// the store and refilled — what happens to hot rows once per max_staleness.
func BenchmarkReadCached(b *testing.B) {
	w := newWorld(b, 100, 1500)
	mem := w.memSource(b)
	for _, mode := range []string{"hits", "expired"} {
		b.Run(mode, func(b *testing.B) {
			clock := time.Unix(1_700_000_000, 0)
			cache := rowcache.New(rowcache.Options{MaxAge: time.Second, Now: func() time.Time { return clock }})
			e := w.engine(b, rowcache.ReadThrough{Cache: cache, Load: mem.Get})
			req := rankingRequest(b, e, 7, 500)
			var res Result
			if err := e.Read(context.Background(), req, &res); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if mode == "expired" {
					clock = clock.Add(2 * time.Second)
				}
				if err := e.Read(context.Background(), req, &res); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(9512)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
		})
	}
}

// delayedSource is a store that answers after a fixed delay, like a network
// round trip.
type delayedSource struct {
	mem   memSource
	delay time.Duration
}

func (s delayedSource) Get(ctx context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	time.Sleep(s.delay)
	return s.mem.Get(ctx, keys, fn)
}

// BenchmarkReadHalfCached is Q2 through the row cache with half of its rows
// fresh in the cache and the other half expired, over a store that answers
// after 1 ms: the time of one request, end to end. The cached rows can be
// evaluated while the store is being read, instead of after.
func BenchmarkReadHalfCached(b *testing.B) {
	w := newWorld(b, 100, 1500)
	mem := w.memSource(b)
	clock := time.Unix(1_700_000_000, 0)
	cache := rowcache.New(rowcache.Options{MaxAge: time.Second, Now: func() time.Time { return clock }})
	e := w.engine(b, rowcache.ReadThrough{Cache: cache, Load: delayedSource{mem, time.Millisecond}.Get})
	req := rankingRequest(b, e, 7, 500)
	var res Result
	if err := e.Read(context.Background(), req, &res); err != nil {
		b.Fatal(err)
	}
	keys := res.keys
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		clock = clock.Add(2 * time.Second) // every row expired …
		for i := 1; i < len(keys); i += 2 {
			if v, ok := mem[string(keys[i])]; ok {
				cache.Set(keys[i], v) // … but every other one written since
			}
		}
		b.StartTimer()
		if err := e.Read(context.Background(), req, &res); err != nil {
			b.Fatal(err)
		}
	}
}
