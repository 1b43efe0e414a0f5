package rowcache

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// benchValue is a typical small row.
var benchValue = make([]byte, 300)

// benchKeys returns n keys shaped like row keys: a view id and an entity id.
func benchKeys(prefix string, n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%s/v01/%012d", prefix, i)
	}
	return keys
}

// BenchmarkGetHits501 is one ranking request, 1 user and 500 posts, all
// cached.
func BenchmarkGetHits501(b *testing.B) {
	c := New(Options{})
	keys := append(benchKeys("user", 1), benchKeys("post", 500)...)
	for _, k := range keys {
		c.Set(k, benchValue)
	}
	var n int
	fn := func(_ int, v []byte, _ bool) { n += len(v) }
	miss := make([]int, 0, len(keys))
	b.ReportAllocs()
	b.SetBytes(int64(len(keys) * len(benchValue)))
	for b.Loop() {
		miss = c.Get(keys, miss, fn)
	}
	if len(miss) != 0 || n == 0 {
		b.Fatalf("%d misses", len(miss))
	}
}

// BenchmarkLoadHits501 is the same request through Load.
func BenchmarkLoadHits501(b *testing.B) {
	c := New(Options{})
	keys := append(benchKeys("user", 1), benchKeys("post", 500)...)
	for _, k := range keys {
		c.Set(k, benchValue)
	}
	fn := func(int, []byte, bool) {}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(keys) * len(benchValue)))
	for b.Loop() {
		if err := c.Load(ctx, keys, never, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetParallel is many goroutines each asking for one hot key.
func BenchmarkGetParallel(b *testing.B) {
	c := New(Options{})
	hot := benchKeys("post", 4096)
	for _, k := range hot {
		c.Set(k, benchValue)
	}
	var seed atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		x := seed.Add(0x9e3779b97f4a7c15)
		keys := make([][]byte, 1)
		miss := make([]int, 0, 1)
		fn := func(int, []byte, bool) {}
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			keys[0] = hot[x%uint64(len(hot))]
			if miss = c.Get(keys, miss, fn); len(miss) != 0 {
				b.Error("miss")
				return
			}
		}
	})
}

// BenchmarkLoadHalfMisses is a 500-key request of which 250 keys are cached
// and 250 were never seen; the load answers from memory, so this is the
// cache's own cost of a miss.
func BenchmarkLoadHalfMisses(b *testing.B) {
	c := New(Options{})
	hot := benchKeys("hot", 250)
	for _, k := range hot {
		c.Set(k, benchValue)
	}
	keys := make([][]byte, 0, 500)
	for i := range 250 {
		keys = append(keys, hot[i], make([]byte, 16))
	}
	load := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		for i := range keys {
			fn(i, benchValue, true)
		}
		return nil
	}
	fn := func(int, []byte, bool) {}
	ctx := context.Background()
	var next uint64
	b.ReportAllocs()
	for b.Loop() {
		for i := 1; i < len(keys); i += 2 {
			next++
			binary.BigEndian.PutUint64(keys[i], next) // a new key: a miss
		}
		if err := c.Load(ctx, keys, load, fn); err != nil {
			b.Fatal(err)
		}
	}
	s := c.Stats()
	b.ReportMetric(float64(s.Misses)/float64(s.Hits+s.Misses), "miss-ratio")
}

// BenchmarkSet is the write path's cost per row, overwriting rows of the
// same size.
func BenchmarkSet(b *testing.B) {
	c := New(Options{})
	keys := benchKeys("post", 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Set(keys[i%len(keys)], benchValue)
		i++
	}
}

// BenchmarkLoadExpired501 is one ranking request (1 user, 500 posts) whose
// rows are all cached but older than MaxAge: the scale-out case, where every
// hot row is read again from the store once per max_staleness. The load
// answers from memory, so this is the cache's own cost of a refresh.
func BenchmarkLoadExpired501(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	c := New(Options{MaxAge: time.Second, Now: func() time.Time { return now }})
	keys := append(benchKeys("user", 1), benchKeys("post", 500)...)
	load := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		for i := range keys {
			fn(i, benchValue, true)
		}
		return nil
	}
	var n int
	fn := func(_ int, v []byte, _ bool) { n += len(v) }
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(keys) * len(benchValue)))
	for b.Loop() {
		now = now.Add(2 * time.Second) // every entry is now too old
		if err := c.Load(ctx, keys, load, fn); err != nil {
			b.Fatal(err)
		}
	}
	if s := c.Stats(); s.Hits != 0 || n == 0 {
		b.Fatalf("stats %+v: want only misses", s)
	}
}
