package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/event"
	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/store"
	"github.com/kiln-dev/kiln/tile"
	"github.com/kiln-dev/kiln/workload"
)

// discardStore holds nothing: every Get finds no row, every Write is
// dropped. It takes the store out of the write path's cost.
type discardStore struct{}

func (discardStore) Get(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	for i := range keys {
		fn(i, nil, false)
	}
	return nil
}
func (discardStore) Write(context.Context, []store.KV) error { return nil }
func (discardStore) Close() error                            { return nil }

// BenchmarkPushCeiling is BenchmarkPushRW1 over a store that costs nothing,
// in pushes of 10,000 events: the write path's own CPU per event (routing,
// folding, rolling and encoding rows at each group commit), the ceiling of
// push throughput whatever the store. Run it with -cpu 1 for events/s per
// core.
func BenchmarkPushCeiling(b *testing.B) {
	p, err := definition.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		b.Fatal(err)
	}
	now := workload.DefaultNow
	pl, err := New(p, plans, discardStore{}, Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	live := workload.NewGenerator(workload.Config{HistoryEvents: -1}).Live(0)
	const per = 10000
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
