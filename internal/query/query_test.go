package query

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

const now = int64(1_790_000_000_000)

// world holds the feed project with rows written straight into a store.
type world struct {
	project *definition.Project
	plans   map[*definition.View]*tile.Plan
	store   store.Store
	rows    map[string]*tile.Row // what was written, for the expected values
}

// newWorld writes rows for users 1..users and posts 1..posts (every third
// post has none) from random events.
func newWorld(t testing.TB, users, posts int) *world {
	t.Helper()
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	st := kilntest.MemStore(t)
	w := &world{project: p, plans: plans, store: st, rows: map[string]*tile.Row{}}
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"view", "view", "like", "share", "comment"}
	var batch []store.KV
	add := func(view string, id int64, n int) {
		v := p.View(view)
		plan := plans[v]
		row := plan.NewRow()
		for range n {
			ev := event.Event{TS: now - rng.Int64N(10*86400_000), Fields: []event.Value{
				event.IntValue(id), event.IntValue(rng.Int64N(1000)), event.StringValue(kinds[rng.IntN(len(kinds))]), event.FloatValue(rng.Float64() * 1e4),
			}}
			if view == "post_engagement" {
				ev.Fields[1] = event.IntValue(id)
			}
			plan.Fold(row, &ev, now)
		}
		key := tile.AppendKey(nil, view, []event.Value{event.IntValue(id)})
		w.rows[string(key)] = row
		batch = append(batch, store.KV{Key: key, Value: plan.AppendRow(nil, row)})
	}
	for u := 1; u <= users; u++ {
		add("user_engagement", int64(u), 1+rng.IntN(200))
	}
	for i := 1; i <= posts; i++ {
		if i%3 != 0 {
			add("post_engagement", int64(i), 1+rng.IntN(50))
		}
	}
	if err := st.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) engine(t testing.TB, rows RowSource) *Engine {
	t.Helper()
	if rows == nil {
		rows = w.store
	}
	e, err := New(Config{Project: w.project, Plans: w.plans, Rows: rows, Now: func() int64 { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// rankingRequest asks for service ranking: one user and posts 1..n.
func rankingRequest(t testing.TB, e *Engine, user int64, n int) *Request {
	t.Helper()
	prep, err := e.Service("ranking")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(user)}, nil}}
	for i := 1; i <= n; i++ {
		req.Keys[1] = append(req.Keys[1], event.IntValue(int64(i)))
	}
	return req
}

// Every value a Read returns is what the row's plan evaluates to.
func TestReadMatchesRows(t *testing.T) {
	w := newWorld(t, 3, 60)
	e := w.engine(t, nil)
	req := rankingRequest(t, e, 2, 60)
	req.Keys[1] = append(req.Keys[1], event.IntValue(9999)) // no such post
	var res Result
	if err := e.Read(context.Background(), req, &res); err != nil {
		t.Fatal(err)
	}
	for i, pe := range req.Prepared.Entities {
		er := &res.Entities[i]
		if er.N != len(req.Keys[i]) {
			t.Fatalf("%s: %d results for %d keys", pe.Entity.Def.Name, er.N, len(req.Keys[i]))
		}
		for j := range er.N {
			key := req.Keys[i][j]
			view := pe.views[0].view.Name
			row := w.rows[string(tile.AppendKey(nil, view, []event.Value{key}))]
			if (row != nil) != er.Present[j] {
				t.Fatalf("%s %v: present %v, row %v", view, key, er.Present[j], row != nil)
			}
			want := make([]event.Value, len(pe.views[0].plan.Outputs))
			if row != nil {
				pe.views[0].plan.Eval(row, now, want)
				if er.EventTime[j] != row.Newest {
					t.Fatalf("%s %v: event time %d, want %d", view, key, er.EventTime[j], row.Newest)
				}
			}
			for c, f := range pe.Features {
				got := er.Columns[c].Value(j)
				exp := event.Value{}
				if row != nil {
					exp = want[pe.items[c].output]
				}
				if !got.Equal(exp) {
					t.Fatalf("%s %v %s = %v, want %v", view, key, f.Name, got, exp)
				}
			}
		}
	}
	if len(res.Entities[1].Columns) != 19 || len(res.Entities[0].Columns) != 12 {
		t.Fatalf("columns: user %d, post %d", len(res.Entities[0].Columns), len(res.Entities[1].Columns))
	}
}

// A key with a row in one view of its entity and not another gets the
// empty values of the other: 0 counts, null means.
func TestPartiallyPresentEntity(t *testing.T) {
	p, plans := kilntest.Compile(t, "two.yaml", []byte(`
project: two
entities: {user: {keys: [uid]}}
sources:
  a: {type: push, event_time: ts, fields: {uid: int64, x: float64}}
  b: {type: push, event_time: ts, fields: {uid: int64, y: float64}}
views:
  va: {entity: user, source: a, features: {n: {agg: count, windows: [1h]}}}
  vb: {entity: user, source: b, features: {n: {agg: count, windows: [1h]}, m: {agg: mean, field: y, windows: [1h]}}}
`))
	st := kilntest.MemStore(t)
	pa := plans[p.View("va")]
	row := pa.NewRow()
	pa.Fold(row, &event.Event{TS: now - 1000, Fields: []event.Value{event.IntValue(7), event.FloatValue(1)}}, now)
	st.Write(context.Background(), []store.KV{{Key: tile.AppendKey(nil, "va", []event.Value{event.IntValue(7)}), Value: pa.AppendRow(nil, row)}})
	e, err := New(Config{Project: p, Plans: plans, Rows: st, Now: func() int64 { return now }})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := e.Prepare([]string{"vb:m_1h", "va:n_1h", "vb:n_1h"})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := e.Read(context.Background(), &Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(7), event.IntValue(8)}}}, &res); err != nil {
		t.Fatal(err)
	}
	er := res.Entities[0]
	if !er.Present[0] || er.Present[1] {
		t.Fatalf("present %v", er.Present)
	}
	got := fmt.Sprint(er.Columns[0].Value(0), er.Columns[1].Value(0), er.Columns[2].Value(0), er.Columns[1].Value(1))
	if got != "null 1 0 null" {
		t.Fatalf("user 7: vb:m_1h, va:n_1h, vb:n_1h, and user 8's va:n_1h = %s, want null 1 0 null", got)
	}
}

// slowSource holds every Get until released or until its context ends.
type slowSource struct {
	RowSource
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	gets    int
}

func (s *slowSource) Get(ctx context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	s.mu.Lock()
	s.gets++
	s.mu.Unlock()
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.RowSource.Get(ctx, keys, fn)
}

// A request past its deadline stops: it does no read at all if it is
// already late, and gives up a stalled read when the deadline passes.
func TestDeadlineStopsWork(t *testing.T) {
	w := newWorld(t, 2, 2)
	slow := &slowSource{RowSource: w.store, entered: make(chan struct{}, 4), release: make(chan struct{})}
	e := w.engine(t, slow)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Read(ctx, rankingRequest(t, e, 1, 2), new(Result)); !errors.Is(err, context.Canceled) {
		t.Fatalf("expired request: %v", err)
	}
	if slow.gets != 0 {
		t.Fatalf("an expired request read the store %d times", slow.gets)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Read(ctx, rankingRequest(t, e, 1, 2), new(Result)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled request: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	w := newWorld(t, 1, 1)
	e := w.engine(t, nil)
	prep, _ := e.Service("ranking")
	f := func(req *Request, want string) {
		t.Helper()
		err := e.Read(context.Background(), req, new(Result))
		var qe *Error
		if !errors.As(err, &qe) {
			t.Fatalf("%v: not a request error", err)
		}
		if want != "" && !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	f(&Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(1)}}}, "keys for 1 entity types")
	f(&Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(1)}, {}}}, "at least one key")
	f(&Request{Prepared: prep, Keys: [][]event.Value{{event.StringValue("1")}, {event.IntValue(1)}}}, "user_id is string, want int64")
	many := make([]event.Value, MaxEntities)
	for i := range many {
		many[i] = event.IntValue(int64(i))
	}
	f(&Request{Prepared: prep, Keys: [][]event.Value{{event.IntValue(1)}, many}}, "the limit is")
	if _, err := e.Prepare([]string{"post_engagement:views_5m", "post_engagement:views_5m"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate feature: %v", err)
	}
	if _, err := e.Prepare([]string{"post_engagement:views_6m"}); err == nil || !strings.Contains(err.Error(), "unknown feature") {
		t.Fatalf("unknown feature: %v", err)
	}
	if _, err := e.Service("nope"); err == nil || !strings.Contains(err.Error(), "ranking, user_profile") {
		t.Fatalf("unknown service: %v", err)
	}
}

// memSource serves rows from memory, to measure the engine alone.
type memSource map[string][]byte

func (m memSource) Get(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	for i, k := range keys {
		v, ok := m[string(k)]
		fn(i, v, ok)
	}
	return nil
}

func (w *world) memSource(t testing.TB) memSource {
	m := memSource{}
	for k, row := range w.rows {
		v := w.project.View(k[:strings.IndexByte(k, 0)])
		m[k] = w.plans[v].AppendRow(nil, row)
	}
	return m
}

// The read path allocates per request, not per entity or value: a ranking
// request for 500 posts allocates no more than one for 50.
func TestReadAllocationsDoNotGrowWithEntities(t *testing.T) {
	w := newWorld(t, 2, 500)
	e := w.engine(t, w.memSource(t))
	allocs := func(n int) float64 {
		req := rankingRequest(t, e, 1, n)
		var res Result
		e.Read(context.Background(), req, &res) // warm the result's memory
		return testing.AllocsPerRun(50, func() {
			if err := e.Read(context.Background(), req, &res); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := allocs(50), allocs(500)
	if large > small || large > 4 {
		t.Fatalf("allocs per read: %v for 50 posts, %v for 500 (want equal and ≤ 4)", small, large)
	}
}
