package ingest

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

const testProject = `
project: t
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, post_id: int64, kind: string, x: float64}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n:    {agg: count, windows: [1h]}
      xs:   {agg: sum, field: x, where: {kind: [a, b]}, windows: [1h, 24h]}
  by_post:
    entity: post
    source: clicks
    features:
      n:    {agg: count, windows: [1h]}
services:
  s: {views: [by_user]}
`

// clock is an injected clock the tests move by hand.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

type fixture struct {
	project *definition.Project
	plans   map[*definition.View]*tile.Plan
	store   store.Store
	w       *Writer
	clock   *clock
}

// compileProject parses and compiles a project file's text.
func compileProject(t testing.TB, yaml string) (*definition.Project, map[*definition.View]*tile.Plan) {
	t.Helper()
	return kilntest.Compile(t, "test.yaml", []byte(yaml))
}

func newFixture(t testing.TB, st store.Store, opts Options) *fixture {
	t.Helper()
	p, plans := compileProject(t, testProject)
	if st == nil {
		st = kilntest.MemStore(t)
	}
	c := &clock{}
	c.ms.Store(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixMilli())
	opts.Now = c.now
	pl, err := New(p, plans, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	return &fixture{project: p, plans: plans, store: st, w: pl, clock: c}
}

func (f *fixture) ev(age time.Duration, user, post int64, kind string, x float64) event.Event {
	return event.Event{TS: f.clock.ms.Load() - age.Milliseconds(), Fields: []event.Value{
		event.IntValue(user), event.IntValue(post), event.StringValue(kind), event.FloatValue(x),
	}}
}

// read evaluates the row of a view for one key at the clock, as the
// writer has committed it (Writer.Get: from its log's overlay or the
// store).
func (f *fixture) read(t *testing.T, view string, key int64) map[string]event.Value {
	t.Helper()
	v := f.project.View(view)
	plan := f.plans[v]
	k := tile.AppendKey(nil, view, []event.Value{event.IntValue(key)})
	row := plan.NewRow()
	found := false
	err := f.w.Get(context.Background(), [][]byte{k}, func(_ int, value []byte, ok bool) {
		found = ok
		if ok {
			if err := plan.DecodeRow(value, row); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return nil
	}
	vals := make([]event.Value, len(plan.Outputs))
	plan.Eval(row, f.clock.ms.Load(), vals)
	out := map[string]event.Value{}
	for i, o := range plan.Outputs {
		out[o.Name] = vals[i]
	}
	return out
}

func TestPushIsDurableAndReadable(t *testing.T) {
	f := newFixture(t, nil, Options{})
	src := f.project.Source("clicks")
	events := []event.Event{
		f.ev(time.Minute, 1, 10, "a", 2.5),
		f.ev(2*time.Hour, 1, 10, "b", 4),      // only the 24h window
		f.ev(10*time.Minute, 1, 11, "c", 100), // filtered out of xs
		f.ev(5*time.Minute, 2, 10, "a", 1),
	}
	res, err := f.w.Push(context.Background(), src, events)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.DroppedLate != 0 {
		t.Fatalf("result %+v, want 4 accepted", res)
	}
	// Push returned, so the rows are in the store: read them there.
	u1 := f.read(t, "by_user", 1)
	if u1["by_user:n_1h"].Int != 2 || u1["by_user:xs_1h"].Float != 2.5 || u1["by_user:xs_24h"].Float != 6.5 {
		t.Fatalf("user 1: %v", u1)
	}
	if p10 := f.read(t, "by_post", 10); p10["by_post:n_1h"].Int != 2 {
		t.Fatalf("post 10: %v", p10)
	}
	if f.read(t, "by_user", 3) != nil {
		t.Fatal("user 3 has a row but no events")
	}
	// An hour later the 1h window has moved past them.
	f.clock.add(time.Hour + 10*time.Minute)
	if u1 := f.read(t, "by_user", 1); u1["by_user:n_1h"].Int != 0 || u1["by_user:xs_24h"].Float != 6.5 {
		t.Fatalf("user 1 an hour later: %v", u1)
	}
}

func TestPushDropsLateEvents(t *testing.T) {
	f := newFixture(t, nil, Options{})
	src := f.project.Source("clicks")
	// by_user keeps 24h+2h, by_post 1h+5m: a 3h-old event still feeds
	// by_user; a 3-day-old one feeds nothing.
	res, err := f.w.Push(context.Background(), src, []event.Event{
		f.ev(3*time.Hour, 1, 10, "a", 1),
		f.ev(72*time.Hour, 1, 10, "a", 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.DroppedLate != 1 {
		t.Fatalf("result %+v, want 1 accepted, 1 late", res)
	}
	if f.read(t, "by_post", 10) != nil {
		t.Fatal("a row was written for an event late for its view")
	}
	if u := f.read(t, "by_user", 1); u["by_user:xs_24h"].Float != 1 {
		t.Fatalf("user 1: %v", u)
	}
	if !maps.Equal(res.LateByView, map[string]int{"by_post": 2, "by_user": 1}) {
		t.Fatalf("late by view %v, want by_post 2, by_user 1", res.LateByView)
	}
	st := f.w.Stats()
	if st.LateByView["by_post"] != 2 || st.LateByView["by_user"] != 1 || st.DroppedLate != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A row whose clock is ahead of the push's (written by another process
// with a later clock) can find an event late that the push took for on
// time: the answer counts it too.
func TestPushCountsEventsTheRowsFoundLate(t *testing.T) {
	ahead := newFixture(t, nil, Options{WriteThrough: true})
	ctx := context.Background()
	src := ahead.project.Source("clicks")
	if _, err := ahead.w.Push(ctx, src, []event.Event{ahead.ev(0, 1, 10, "a", 1)}); err != nil {
		t.Fatal(err)
	}
	ahead.w.Close()
	// A second process on the same store, its clock 30 minutes behind.
	f := newFixture(t, ahead.store, Options{WriteThrough: true})
	f.clock.add(-30 * time.Minute)
	src = f.project.Source("clicks")
	// 1h old by this clock: on time for by_post (1h window) here, late for
	// post 10's row, whose clock is 30 minutes later; by_user takes it.
	res, err := f.w.Push(ctx, src, []event.Event{f.ev(time.Hour, 1, 10, "a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.DroppedLate != 0 || !maps.Equal(res.LateByView, map[string]int{"by_post": 1}) {
		t.Fatalf("result %+v, want 1 accepted, late for by_post", res)
	}
	// Late at the push for both views; late for post 10's row only; late
	// for by_post at the push and for user 1's row: two of four events
	// reach no view.
	res, err = f.w.Push(ctx, src, []event.Event{
		f.ev(time.Hour, 2, 11, "a", 1), f.ev(27*time.Hour, 1, 12, "a", 1),
		f.ev(time.Hour, 3, 10, "b", 1), f.ev(25*time.Hour+45*time.Minute, 1, 10, "a", 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 || res.DroppedLate != 2 || !maps.Equal(res.LateByView, map[string]int{"by_post": 3, "by_user": 2}) {
		t.Fatalf("result %+v, want 2 accepted, 2 dropped late, late for by_post 3, by_user 2", res)
	}
	if st := f.w.Stats(); st.LateByView["by_post"] != 4 || st.LateByView["by_user"] != 2 || st.DroppedLate != 2 || st.Accepted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// Many pushers over shared rows: every event is counted once (run with -race).
func TestConcurrentPushesCountEveryEventOnce(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 3, MaxBatchRows: 7})
	src := f.project.Source("clicks")
	const pushers, pushes, per = 8, 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, pushers)
	for g := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range pushes {
				events := make([]event.Event, per)
				for j := range events {
					events[j] = f.ev(time.Duration(j)*time.Second, int64(j%5), int64(g*1000+i), "a", 1)
				}
				if _, err := f.w.Push(context.Background(), src, events); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(0)
	for u := range int64(5) {
		total += f.read(t, "by_user", u)["by_user:n_1h"].Int
	}
	if want := int64(pushers * pushes * per); total != want {
		t.Fatalf("counted %d events, pushed %d", total, want)
	}
}

// failingStore fails writes while fail is set: a store whose disk is full.
type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (s *failingStore) Write(ctx context.Context, batch []store.KV) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.Store.Write(ctx, batch)
}

func TestFailedWriteAcknowledgesNothing(t *testing.T) {
	fs := &failingStore{Store: kilntest.MemStore(t)}
	f := newFixture(t, fs, Options{Partitions: 1})
	src := f.project.Source("clicks")
	if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)}); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)}); err == nil {
		t.Fatal("push succeeded while the store failed")
	}
	fs.fail.Store(false)
	// The failed push left no trace, in the store or in the writer's memory:
	// the next push counts from the acknowledged state.
	if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)}); err != nil {
		t.Fatal(err)
	}
	if n := f.read(t, "by_user", 1)["by_user:n_1h"].Int; n != 2 {
		t.Fatalf("count %d, want 2 (the failed push must not count)", n)
	}
	if st := f.w.Stats(); st.WriteErrors == 0 {
		t.Fatalf("stats %+v: no write error counted", st)
	}
}

func TestCloseWritesAndRefuses(t *testing.T) {
	f := newFixture(t, nil, Options{})
	src := f.project.Source("clicks")
	if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after close: %v, want ErrClosed", err)
	}
	if err := f.w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// Rows evicted from the writer's memory are read back from the store, so
// counts continue across evictions.
func TestEvictedRowsReload(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 1, MaxCachedRows: 2})
	src := f.project.Source("clicks")
	for round := range 3 {
		for u := range int64(10) {
			if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, u, 1000+u, "a", 1)}); err != nil {
				t.Fatal(err)
			}
		}
		for u := range int64(10) {
			if n := f.read(t, "by_user", u)["by_user:n_1h"].Int; n != int64(round+1) {
				t.Fatalf("round %d user %d: count %d", round, u, n)
			}
		}
	}
}
