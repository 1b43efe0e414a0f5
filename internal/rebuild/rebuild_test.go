package rebuild

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
)

const project = `
project: t
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n: {agg: count, windows: [2d]}
  all_time:
    entity: user
    source: clicks
    features:
      n: {agg: count}
`

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// A rebuild replays the archived events that arrived before T0 into its
// view alone, from as far back as the windows reach, and says when the
// archive does not reach that far.
func TestRun(t *testing.T) {
	ctx := context.Background()
	p, plans := kilntest.Compile(t, "kiln.yaml", []byte(project))
	w, err := ingest.New(p, plans, kilntest.MemStore(t), ingest.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src := p.Source("clicks")
	a := archive.New(archive.NewMem())
	t0 := now.UnixMilli()
	var evs []archive.Archived
	// Five days of events, two a day per user, two users; the last day's
	// second event of each user arrived after T0.
	for d := range 5 {
		for u := range int64(2) {
			for i := range 2 {
				ts := now.Add(-time.Duration(4-d)*24*time.Hour - time.Duration(i+1)*time.Hour)
				arrival := ts.UnixMilli() + 1000
				if d == 4 && i == 1 {
					arrival = t0 + 5
				}
				stream := "kafka/clicks/0"
				if u == 1 {
					stream = "push/p0"
				}
				evs = append(evs, archive.Archived{Time: ts.UnixMilli(), Arrival: arrival,
					Fields: []event.Value{event.IntValue(u), event.StringValue("view")},
					Origin: archive.Origin{Stream: stream, Offset: int64(len(evs))}})
			}
		}
	}
	if err := a.Append(ctx, src, "b1", evs); err != nil {
		t.Fatal(err)
	}
	var progress []Progress
	sum, err := Run(ctx, Config{View: p.View("by_user"), Plan: plans[p.View("by_user")], Archive: a, Writer: w, Before: t0,
		BatchEvents: 3, Progress: func(p Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	// The 2d window reaches back to 12:00 two days ago, on the third date
	// back: the events of the last two days, less the two that arrived
	// after T0.
	if sum.DatesTotal != 3 || sum.DatesDone != 3 || sum.Live != 2 || sum.Replayed != 2*4-2 || sum.Rows != 2 || sum.Incomplete != "" {
		t.Fatalf("summary %+v", sum)
	}
	if len(progress) == 0 || progress[len(progress)-1] != sum.Progress {
		t.Fatalf("progress %v, summary %v", progress, sum.Progress)
	}
	count := func(view string, user int64) int64 {
		v := p.View(view)
		pl := plans[v]
		var n int64 = -1
		err := w.Get(ctx, [][]byte{tile.AppendKey(nil, view, []event.Value{event.IntValue(user)})}, func(_ int, value []byte, found bool) {
			if !found {
				return
			}
			r := pl.NewRow()
			if err := pl.DecodeRow(value, r); err != nil {
				t.Fatal(err)
			}
			vals := make([]event.Value, len(pl.Outputs))
			pl.Eval(r, now.UnixMilli(), vals)
			n = vals[0].Int
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got0, got1 := count("by_user", 0), count("by_user", 1); got0+got1 != sum.Replayed-sum.DroppedLate {
		t.Fatalf("counts %d + %d, want %d", got0, got1, sum.Replayed-sum.DroppedLate)
	}
	if n := count("all_time", 0); n != -1 {
		t.Fatalf("the other view has a row (%d): a rebuild must leave it alone", n)
	}
	// The all-time view needs every event since 1970; the archive begins
	// four days back.
	sum, err = Run(ctx, Config{View: p.View("all_time"), Plan: plans[p.View("all_time")], Archive: a, Writer: w, Before: t0})
	if err != nil {
		t.Fatal(err)
	}
	if sum.DatesTotal != 5 || sum.Replayed != 5*4-2 || !strings.Contains(sum.Incomplete, "begins on 2026-11-22") {
		t.Fatalf("summary %+v", sum)
	}
	if n := count("all_time", 0); n != 9 {
		t.Fatalf("all-time count %d, want 9", n)
	}
	// BeforeBatch stops a rebuild.
	stop := errors.New("stop")
	_, err = Run(ctx, Config{View: p.View("all_time"), Plan: plans[p.View("all_time")], Archive: a, Writer: w, Before: t0,
		BeforeBatch: func(context.Context, Progress) error { return stop }})
	if !errors.Is(err, stop) {
		t.Fatalf("stopped rebuild: %v", err)
	}
}

func TestOrigin(t *testing.T) {
	for _, c := range []struct {
		in   archive.Origin
		want event.Origin
	}{
		{archive.Origin{Stream: "kafka/clicks/3", Offset: 42}, event.Origin{Stream: stream.StreamID("kafka/clicks/3"), Offset: 42}},
		{archive.Origin{Stream: "nats/ORDERS", Offset: 7}, event.Origin{Stream: stream.StreamID("nats/ORDERS"), Offset: 7}},
		{archive.Origin{Stream: "push/p03", Offset: 7}, event.Origin{}},
		{archive.Origin{Stream: "", Offset: 7}, event.Origin{}},
	} {
		if got := Origin(c.in); got != c.want {
			t.Errorf("Origin(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
