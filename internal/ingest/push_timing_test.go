package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/workload"
)

// BenchmarkPushRW1 pushes RW1 live events, 1,000 per push, into an
// in-memory Pebble store: the write path without HTTP or decoding. It
// reports events/s and, through -benchmem, what one push allocates.
func BenchmarkPushRW1(b *testing.B) {
	b.ReportAllocs()
	benchmarkPushes(b, kilntest.MemStore(b), 1000)
}

// BenchmarkPushCeiling is BenchmarkPushRW1 over a store that costs nothing,
// in pushes of 10,000 events: the write path's own CPU per event (routing,
// folding, encoding the commit's log record, rolling, encoding and
// publishing rows at each group commit), the ceiling of push throughput
// whatever the store. Run it with -cpu 1 for events/s per core.
// BenchmarkPushCeiling/write-through encodes and writes every commit's rows
// instead, as on Redis.
func BenchmarkPushCeiling(b *testing.B) {
	b.Run("write-behind", func(b *testing.B) { benchmarkPushes(b, discardStore{}, 10_000) })
	b.Run("write-through", func(b *testing.B) { benchmarkPushes(b, discardRows{}, 10_000) })
}

// discardStore holds nothing: every Get finds no row, every Write is
// dropped, and so is the log. It takes the store out of the write path's
// cost.
type discardStore struct{ discardRows }

func (discardStore) Apply(context.Context, []store.KV, store.Range, bool) error { return nil }
func (discardStore) Scan(context.Context, store.Range, func(key, value []byte) error) error {
	return nil
}

// discardRows is discardStore without a log: the writer writes through.
type discardRows struct{}

func (discardRows) Get(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	for i := range keys {
		fn(i, nil, false)
	}
	return nil
}
func (discardRows) Write(context.Context, []store.KV) error { return nil }
func (discardRows) Close() error                            { return nil }

// benchmarkPushes pushes RW1 live events, per to a push, through a
// writer over st, and reports events/s.
func benchmarkPushes(b *testing.B, st store.Store, per int) {
	p, plans := kilntest.Compile(b, examples.FeedProjectName, examples.FeedProject)
	now := workload.DefaultNow
	pl, err := New(p, plans, st, Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	live := workload.NewGenerator(workload.Config{HistoryEvents: -1}).Live(0)
	pushes := make([][]event.Event, 64)
	for i := range pushes {
		pushes[i] = make([]event.Event, per)
		for j := range pushes[i] {
			live.Next(now, &pushes[i][j])
		}
	}
	src := p.Source("engagements")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := pl.Push(context.Background(), src, pushes[i%len(pushes)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
}
