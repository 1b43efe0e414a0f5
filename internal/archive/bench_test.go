package archive

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// BenchmarkAppend appends 10,000-event batches of RW1's source
// "engagements" (live events at 10,000/s, so one date per batch) and reports
// events/s, to memory and to a directory (which syncs every file).
func BenchmarkAppend(b *testing.B) {
	src, batch := benchBatch(b)
	n := len(batch)
	for _, backend := range []string{"mem", "dir"} {
		b.Run(backend, func(b *testing.B) {
			var bk Bucket = NewMem()
			if backend == "dir" {
				d, err := NewDir(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				bk = d
			}
			a, ctx := New(bk), context.Background()
			var bytes int
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// A fresh bucket now and then keeps memory flat.
				if m, ok := bk.(*Mem); ok && i%64 == 0 {
					*m = Mem{objects: map[string][]byte{}}
				}
				if err := a.Append(ctx, src, fmt.Sprintf("p00-%012d", i), batch); err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					names, _ := bk.List(ctx, "")
					data, _ := bk.Get(ctx, names[0].Name)
					bytes = len(data)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(bytes)/float64(n), "file-bytes/event")
		})
	}
}

// benchBatch returns RW1's source "engagements" and a batch of its live
// events, KILN_BENCH_BATCH of them (10,000 unless set).
func benchBatch(b *testing.B) (*definition.Source, []Archived) {
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	var srcIdx = -1
	for i, s := range p.Sources {
		if s.Name == workload.SourceName {
			srcIdx = i
		}
	}
	if srcIdx < 0 {
		b.Fatal("no source engagements")
	}
	src := p.Sources[srcIdx]
	// Map the workload's fields onto the source's schema.
	idx := make([]int, len(workload.FieldNames))
	for i, n := range workload.FieldNames {
		if idx[i] = src.FieldIndex(n); idx[i] < 0 {
			b.Fatalf("source has no field %s", n)
		}
	}
	n := 10_000
	if s := os.Getenv("KILN_BENCH_BATCH"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	live := workload.NewGenerator(workload.Config{Scale: 0.01}).Live(float64(n))
	now := workload.DefaultNow.Add(time.Hour)
	var e event.Event
	batch := make([]Archived, n)
	for i := range batch {
		live.Next(now, &e)
		now = now.Add(live.Interval())
		a := Archived{Time: e.TS, Arrival: e.TS + 3, Fields: make([]event.Value, len(src.Fields)),
			Origin: Origin{Stream: "engagements/0", Offset: int64(i)}}
		for j, v := range e.Fields {
			a.Fields[idx[j]] = v
		}
		batch[i] = a
	}
	return src, batch
}

// BenchmarkEncode encodes benchBatch's batch as one file, in memory.
func BenchmarkEncode(b *testing.B) {
	src, batch := benchBatch(b)
	fs, err := newFileSchema(src)
	if err != nil {
		b.Fatal(err)
	}
	var size int
	for b.Loop() {
		data, err := fs.encode(src.Name, batch)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(len(batch))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(size)/float64(len(batch)), "file-bytes/event")
}
