package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/event"
	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/store/pebble"
	"github.com/kiln-dev/kiln/tile"
	"github.com/kiln-dev/kiln/workload"
)

// BenchmarkPushRW1 pushes RW1 live events, 1,000 per push, into an
// in-memory Pebble store: the write path without HTTP or decoding. It
// reports events/s and, through -benchmem, what one push allocates.
func BenchmarkPushRW1(b *testing.B) {
	p, err := definition.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		b.Fatal(err)
	}
	st, err := pebble.Open("db", pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := workload.DefaultNow
	pl, err := New(p, plans, st, Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	live := workload.NewGenerator(workload.Config{HistoryEvents: -1}).Live(0)
	const per = 1000
	pushes := make([][]event.Event, 64)
	for i := range pushes {
		pushes[i] = make([]event.Event, per)
		for j := range pushes[i] {
			live.Next(now, &pushes[i][j])
		}
	}
	src := p.Source("engagements")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := pl.Push(context.Background(), src, pushes[i%len(pushes)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
}
