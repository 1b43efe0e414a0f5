package tracing_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/rowcache"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// Traced, a read allocates more per request (its spans), not per key or
// value: through the row cache and straight from the store, the
// allocations tracing adds to a read of 500 posts are those it adds to a
// read of 50.
func TestReadSpansAllocatePerRequest(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not meaningful")
	}
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	st := kilntest.MemStore(t)
	const now = int64(1_790_000_000_000)
	var kvs []store.KV
	add := func(view string, key int64) {
		plan := plans[p.View(view)]
		row := plan.NewRow()
		plan.Fold(row, &event.Event{TS: now - 60_000, Fields: []event.Value{event.IntValue(1), event.IntValue(key), event.StringValue("view"), event.FloatValue(3)}}, now)
		kvs = append(kvs, store.KV{Key: tile.AppendKey(nil, view, []event.Value{event.IntValue(key)}), Value: plan.AppendRow(nil, row)})
	}
	add("user_engagement", 1)
	for i := int64(1); i <= 500; i++ {
		add("post_engagement", i)
	}
	if err := st.Write(context.Background(), kvs); err != nil {
		t.Fatal(err)
	}
	// Spans exported as they end, by the goroutine that ends them: a
	// batcher's goroutine would allocate at times of its own.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")

	rt := rowcache.ReadThrough{Cache: rowcache.New(rowcache.Options{}), Load: st.Get}
	for _, tc := range []struct {
		name    string
		off, on query.RowSource
	}{
		{"cached", rt, tracing.CachedRows(tp, rt)},
		{"store", st, tracing.StoreRows(tp, st)},
	} {
		allocs := func(rows query.RowSource, traced bool, posts int) float64 {
			e, err := query.New(query.Config{Project: p, Plans: plans, Rows: rows, Now: func() int64 { return now }})
			if err != nil {
				t.Fatal(err)
			}
			prep, err := e.Service("ranking")
			if err != nil {
				t.Fatal(err)
			}
			req := &query.Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(1)}, nil}}
			for i := range posts {
				req.Keys[1] = append(req.Keys[1], event.IntValue(int64(i+1)))
			}
			var res query.Result
			read := func() {
				ctx := context.Background()
				if traced {
					var span trace.Span
					ctx, span = tracer.Start(ctx, "request")
					defer span.End()
				}
				if err := e.Read(ctx, req, &res); err != nil {
					t.Fatal(err)
				}
			}
			read() // warm the result's memory and the cache
			return testing.AllocsPerRun(20, read)
		}
		small := allocs(tc.on, true, 50) - allocs(tc.off, false, 50)
		large := allocs(tc.on, true, 500) - allocs(tc.off, false, 500)
		if small != large || small <= 0 {
			t.Errorf("%s: tracing adds %v allocations to a read of 50 posts, %v to one of 500; want the same, more than none", tc.name, small, large)
		}
	}
}
