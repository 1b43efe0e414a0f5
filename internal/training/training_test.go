package training_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/training"
)

// project has every aggregation, windows of several lengths, two entity
// types, a view with no all-time feature (so events can be late for it) and
// one with only all-time features.
const project = `
project: training
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  eng:
    type: push
    event_time: ts
    max_future_skew: 2m
    fields: {user_id: int64, post_id: string, kind: string, dwell: float64, n: int64, paid: bool}
views:
  user_w:
    entity: user
    source: eng
    features:
      views:     {agg: count, where: {kind: view}, windows: [1m, 5m]}
      dwell_sum: {agg: sum, field: dwell, windows: [1m, 5m]}
      dwell_avg: {agg: mean, field: dwell, where: {kind: [view, like]}, windows: [5m]}
      dwell_min: {agg: min, field: dwell, windows: [1m]}
      n_max:     {agg: max, field: n, windows: [5m]}
  user_all:
    entity: user
    source: eng
    features:
      total:     {agg: count}
      last_kind: {agg: last, field: kind}
      last_paid: {agg: last, field: paid}
      n_sum:     {agg: sum, field: n}
  post_w:
    entity: post
    source: eng
    features:
      likes:     {agg: count, where: {kind: like}, windows: [2m]}
      dwell_max: {agg: max, field: dwell, windows: [2m]}
      dwell_avg: {agg: mean, field: dwell, windows: [90s]}
services:
  all:
    views: [user_w, user_all, post_w]
`

// seeds is how many random histories TestAsServedEqualsServed plays; a
// failure names its seed.
var seeds = flag.Uint64("seeds", 6, "random histories of TestAsServedEqualsServed")

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

const (
	users = 4
	posts = 3
)

// pushed is an event a push carried and the node accepted.
type pushed struct {
	ts     int64
	fields []event.Value
}

// served is what /v1/features answered at one instant for every key.
type served struct {
	at    int64
	users map[int64]map[string]any
	posts map[string]map[string]any
}

// TestAsServedEqualsServed drives a live node with random events (out of
// order, late, from the future, refused) on a clock the test moves, records
// what /v1/features served at random instants, and builds the training set
// of those instants as served: every value must be the served one, floats
// bit for bit. In event-time mode the same set must equal a naive
// recomputation from the accepted events under the window rule. It runs on
// each online store: the embedded one, and a real Redis server (the node
// then writes rows with compare-and-set and keeps its journal in its data
// directory).
func TestAsServedEqualsServed(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			for seed := range *seeds {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					run(t, backend, seed)
				})
			}
		})
	}
}

// backend is an online store a property test's node runs on: projectText
// returns the test's project with that store configured.
type backend struct {
	name        string
	projectText func(t *testing.T) string
}

var backends = []backend{
	{"pebble", func(*testing.T) string { return project }},
	{"redis", func(t *testing.T) string {
		// A server of its own per history: no rows of another.
		return fmt.Sprintf("online_store: {type: redis, addrs: [%s]}\n", redistest.Standalone(t)) + project
	}},
}

func run(t *testing.T, backend backend, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 77))
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n, p := nodetest.StartClock(t, "kiln.yaml", []byte(backend.projectText(t)), func() time.Time { return time.UnixMilli(clock.Load()) })
	var events []pushed
	var reads []served
	for range 400 {
		// Time moves by up to 15s, sometimes not at all.
		if rng.IntN(4) > 0 {
			clock.Add(rng.Int64N(15_000))
		}
		now := clock.Load()
		switch k := rng.IntN(10); {
		case k < 7:
			batch := make([]pushed, 1+rng.IntN(4))
			for i := range batch {
				batch[i] = randomEvent(rng, now)
			}
			push(t, n, batch, http.StatusOK)
			events = append(events, batch...)
		case k == 7:
			// Further ahead than max_future_skew: refused whole, never counts.
			ev := randomEvent(rng, now)
			ev.ts = now + 2*60_000 + 1 + rng.Int64N(60_000)
			push(t, n, []pushed{ev, randomEvent(rng, now)}, http.StatusBadRequest)
		default:
			reads = append(reads, read(t, n, now))
			// What a later push carries arrives after the read, even
			// within its millisecond: as served counts what arrived by
			// the read's millisecond.
			clock.Add(1)
		}
	}
	reads = append(reads, read(t, n, clock.Load()))
	if err := n.Journal.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	prep, err := n.Engine.Service("all")
	if err != nil {
		t.Fatal(err)
	}
	// One spine row per (read, user), with a post beside it.
	spine := &training.Spine{Keys: make([][]event.Value, len(prep.Entities))}
	type rowRef struct {
		read int
		user int64
		post string
	}
	var refs []rowRef
	for ri, r := range reads {
		for u := int64(1); u <= users; u++ {
			post := fmt.Sprintf("p%d", rng.IntN(posts+1)) // p0 never has events
			refs = append(refs, rowRef{ri, u, post})
			spine.Times = append(spine.Times, r.at)
			for e, pe := range prep.Entities {
				switch pe.Entity.Def.Name {
				case "user":
					spine.Keys[e] = append(spine.Keys[e], event.IntValue(u))
				case "post":
					spine.Keys[e] = append(spine.Keys[e], event.StringValue(post))
				}
			}
		}
	}
	// The spine in a shuffled order: the set comes back in spine order.
	perm := rng.Perm(len(refs))
	shuffled := &training.Spine{Keys: make([][]event.Value, len(spine.Keys))}
	var shuffledRefs []rowRef
	for _, i := range perm {
		shuffledRefs = append(shuffledRefs, refs[i])
		shuffled.Times = append(shuffled.Times, spine.Times[i])
		for e := range spine.Keys {
			shuffled.Keys[e] = append(shuffled.Keys[e], spine.Keys[e][i])
		}
	}
	refs, spine = shuffledRefs, shuffled

	opts := training.Options{Project: p, Plans: n.Plans, Archive: n.Archive, Mode: training.AsServed}
	set, err := training.Build(context.Background(), opts, prep, spine)
	if err != nil {
		t.Fatal(err)
	}
	if set.Summary.Rows != len(refs) || set.Summary.EventsRead != int64(len(events)) {
		t.Errorf("summary %+v, want %d rows and %d events read", set.Summary, len(refs), len(events))
	}
	checkSpilled(t, opts, prep, spine, set)
	bad := 0
	for i, ref := range refs {
		r := reads[ref.read]
		for c, f := range set.Features {
			var want any
			if view := p.View(viewOf(f.Name)); view.Entity.Name == "user" {
				want = r.users[ref.user][f.Name]
			} else {
				want = r.posts[ref.post][f.Name]
			}
			got := set.Columns[c].Value(i)
			if !sameServed(got, want) && bad < 20 {
				bad++
				t.Errorf("as served at %s, user %d post %s: %s = %v, served %v",
					time.UnixMilli(r.at).UTC().Format(time.RFC3339Nano), ref.user, ref.post, f.Name, got, want)
			}
		}
	}

	opts.Mode = training.EventTime
	set, err = training.Build(context.Background(), opts, prep, spine)
	if err != nil {
		t.Fatal(err)
	}
	checkSpilled(t, opts, prep, spine, set)
	for i, row := range refs {
		at := spine.Times[i]
		for c, f := range set.Features {
			ref := definitionRef(p, f.Name)
			key := event.StringValue(row.post)
			if ref.View.Entity.Name == "user" {
				key = event.IntValue(row.user)
			}
			want := naive(ref, events, key, at)
			got := set.Columns[c].Value(i)
			if !near(got, want) && bad < 40 {
				bad++
				t.Errorf("event time at %s, user %d post %s: %s = %v, naive %v",
					time.UnixMilli(at).UTC().Format(time.RFC3339Nano), row.user, row.post, f.Name, got, want)
			}
		}
	}
}

func randomEvent(rng *rand.Rand, now int64) pushed {
	// Mostly recent, some minutes old (late for the short windows), some
	// ahead of the clock within the skew.
	var ts int64
	switch k := rng.IntN(10); {
	case k < 6:
		ts = now - rng.Int64N(30_000)
	case k < 8:
		ts = now - rng.Int64N(12*60_000)
	default:
		ts = now + rng.Int64N(2*60_000)
	}
	kinds := []string{"view", "like", "share"}
	f := []event.Value{
		event.IntValue(1 + rng.Int64N(users)),
		event.StringValue(fmt.Sprintf("p%d", 1+rng.IntN(posts))),
		event.StringValue(kinds[rng.IntN(len(kinds))]),
		{}, {},
		event.BoolValue(rng.IntN(2) == 0),
	}
	if rng.IntN(5) > 0 {
		f[3] = event.FloatValue(math.Round(rng.Float64()*1e6) / 7) // not exact in binary
	}
	if rng.IntN(5) > 0 {
		f[4] = event.IntValue(rng.Int64N(1000) - 500)
	}
	return pushed{ts: ts, fields: f}
}

var fieldNames = []string{"user_id", "post_id", "kind", "dwell", "n", "paid"}

func push(t *testing.T, n *node.Node, batch []pushed, want int) {
	t.Helper()
	var evs []map[string]any
	for _, ev := range batch {
		m := map[string]any{"ts": ev.ts}
		for i, v := range ev.fields {
			switch v.Kind {
			case event.Int64:
				m[fieldNames[i]] = v.Int
			case event.Float64:
				m[fieldNames[i]] = json.Number(strconv.FormatFloat(v.Float, 'g', -1, 64))
			case event.String:
				m[fieldNames[i]] = v.Str
			case event.Bool:
				m[fieldNames[i]] = v.Bool
			}
		}
		evs = append(evs, m)
	}
	body, _ := json.Marshal(map[string]any{"source": "eng", "events": evs})
	resp, err := http.Post(n.URL()+"/v1/push", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("push answered %d, want %d: %s", resp.StatusCode, want, out)
	}
}

func read(t *testing.T, n *node.Node, at int64) served {
	t.Helper()
	var userKeys, postKeys []map[string]any
	for u := int64(1); u <= users; u++ {
		userKeys = append(userKeys, map[string]any{"user_id": u})
	}
	for i := range posts + 1 {
		postKeys = append(postKeys, map[string]any{"post_id": fmt.Sprintf("p%d", i)})
	}
	body, _ := json.Marshal(map[string]any{"service": "all", "entities": map[string]any{"user": userKeys, "post": postKeys}})
	resp, err := http.Post(n.URL()+"/v1/features", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Entities map[string][]struct {
			Key      map[string]any
			Features map[string]any
		}
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("read: %d %v", resp.StatusCode, err)
	}
	s := served{at: at, users: map[int64]map[string]any{}, posts: map[string]map[string]any{}}
	for _, r := range ans.Entities["user"] {
		u, _ := r.Key["user_id"].(json.Number).Int64()
		s.users[u] = r.Features
	}
	for _, r := range ans.Entities["post"] {
		s.posts[r.Key["post_id"].(string)] = r.Features
	}
	return s
}

// sameServed compares a training-set value with a served JSON value:
// floats by their bits.
func sameServed(got event.Value, want any) bool {
	switch w := want.(type) {
	case nil:
		return got.Kind == event.Null
	case json.Number:
		switch got.Kind {
		case event.Int64:
			return w.String() == strconv.FormatInt(got.Int, 10)
		case event.Float64:
			f, err := strconv.ParseFloat(w.String(), 64)
			return err == nil && math.Float64bits(f) == math.Float64bits(got.Float)
		}
	case string:
		return got.Kind == event.String && got.Str == w
	case bool:
		return got.Kind == event.Bool && got.Bool == w
	}
	return false
}

func viewOf(name string) string {
	for i := range name {
		if name[i] == ':' {
			return name[:i]
		}
	}
	return name
}

func definitionRef(p *definition.Project, name string) definition.FeatureRef {
	for _, v := range p.Views {
		for _, r := range v.Outputs() {
			if r.Name() == name {
				return r
			}
		}
	}
	panic("no feature " + name)
}

// naive computes a served value at t from the raw events by the documented
// rule alone: window W at t covers floor(t − W, hop) ≤ ts ≤ t; a key with
// no event at or before t in any view of its entity is absent (null).
func naive(ref definition.FeatureRef, events []pushed, key event.Value, t int64) event.Value {
	src := ref.View.Source
	keyField := src.FieldIndex(ref.View.Entity.Keys[0])
	present := false
	var count int64
	var sum float64
	lo, hi := math.Inf(1), math.Inf(-1)
	var lastTS int64
	var last event.Value
	from := tile.NewWindow(ref.Window).Start(t)
	if ref.Window == 0 {
		from = math.MinInt64
	}
	f := ref.Feature
	for _, ev := range events {
		if !ev.fields[keyField].Equal(key) || ev.ts > t {
			continue
		}
		present = true
		if ev.ts < from || !matches(src, f, ev.fields) {
			continue
		}
		var x event.Value
		if f.Field != "" {
			x = ev.fields[src.FieldIndex(f.Field)]
			if x.Kind == event.Null {
				continue
			}
		}
		count++
		sum += x.Num()
		lo, hi = math.Min(lo, x.Num()), math.Max(hi, x.Num())
		if last.Kind == event.Null || ev.ts > lastTS || (ev.ts == lastTS && x.Compare(last) > 0) {
			lastTS, last = ev.ts, x
		}
	}
	if !present {
		return event.Value{}
	}
	switch f.Agg {
	case definition.Count:
		return event.IntValue(count)
	case definition.Sum:
		return event.FloatValue(sum)
	case definition.Mean:
		if count == 0 {
			return event.Value{}
		}
		return event.FloatValue(sum / float64(count))
	case definition.Min:
		if count == 0 {
			return event.Value{}
		}
		return event.FloatValue(lo)
	case definition.Max:
		if count == 0 {
			return event.Value{}
		}
		return event.FloatValue(hi)
	}
	return last
}

func matches(src *definition.Source, f *definition.Feature, fields []event.Value) bool {
	for _, w := range f.Where {
		v := fields[src.FieldIndex(w.Field)]
		ok := false
		for _, want := range w.Values {
			ok = ok || v.Equal(want)
		}
		if !ok {
			return false
		}
	}
	return true
}

// near compares exactly but for sums and means, within 1e-12 relative.
func near(got, want event.Value) bool {
	if got.Kind != want.Kind {
		return false
	}
	if got.Kind == event.Float64 {
		d := math.Abs(got.Float - want.Float)
		return d <= 1e-12*math.Max(math.Abs(want.Float), 1e-300) || d == 0
	}
	return got.Equal(want)
}
