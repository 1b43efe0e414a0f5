// Package training builds point-in-time training sets: for each row of a
// spine (a time and the key of each entity the features are about) it
// computes the value every requested served name had at the row's time,
// by folding the event archive's events into rows with the tile code that
// serves them (tile.Plan.Fold, tile.Plan.Eval) and reading them as the read
// path does (query's rules for absent rows).
//
// Two meanings of "the value at t" (docs/training.md):
//
//   - EventTime (the default): what the read API would answer at t had every
//     event with an event time ≤ t arrived by then. Each event is folded at
//     its own event time; no event later than t counts, whatever its arrival.
//   - AsServed: what the read API did answer at t. Only events that had
//     arrived by t count, each folded at its arrival as the write path folded
//     it (an event late at its arrival never counts; one from the future
//     counts from its own time on), in the order the write path took them.
//
// Build reads the archive once per source the features need, in event-time
// order, and moves through the spine in time order beside it: the work is
// O(events + rows), and memory is one row of tiles per (view, key) of the
// spine and the spine's values, plus, as served, the events whose arrival is
// still ahead of the reading (those archived long after their event time).
//
// The caller resolves the features with a query.Engine (Service or Prepare),
// builds the Spine (keys of the right types) and hands both to Build. Nothing
// here writes to the archive or to any store.
package training

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Mode says what a value at time t means.
type Mode uint8

const (
	// EventTime counts every event with an event time ≤ t.
	EventTime Mode = iota
	// AsServed counts the events that had arrived by t, as the write path
	// took them.
	AsServed
)

func (m Mode) String() string {
	if m == AsServed {
		return "as served"
	}
	return "event time"
}

// Spine is the rows of a training set.
type Spine struct {
	// Times[i] is row i's time, Unix milliseconds.
	Times []int64
	// Keys[e] holds the keys of Prepared.Entities[e], row after row: with
	// k key fields, row i's key is Keys[e][i*k : (i+1)*k], of the entity's
	// key types (query.Entity.KeyTypes).
	Keys [][]event.Value
}

// Options configure Build. Project, Plans and Archive are required.
type Options struct {
	Project *definition.Project
	Plans   map[*definition.View]*tile.Plan
	Archive *archive.Archive
	Mode    Mode
	// Progress, if set, is told how many of the archive's dates (over
	// every source read) have been read, of how many.
	Progress func(done, total int64)
}

// Set is a built training set: one column per served value, each with one
// value per spine row, in spine order.
type Set struct {
	// Features are the served values in the prepared order: entity type by
	// entity type (query.Prepared.Entities), each in the order asked for.
	Features []query.Feature
	// Columns are parallel to Features; Valid[i] is false where the read
	// API gives null.
	Columns []query.Column
	Summary Summary
}

// Summary counts what Build did.
type Summary struct {
	// Rows is the spine's rows; Entities the distinct keys over its entity
	// types.
	Rows, Entities int
	// EventsRead counts the archived events read; EventsFolded those of the
	// spine's keys folded into a row (once per view they feed).
	EventsRead, EventsFolded int64
	// Refused counts, as served, archived events the source's rules refuse
	// at their arrival (before min_event_time, or further ahead of the
	// arrival than max_future_skew): they never counted.
	Refused int64
	// Uncovered counts the rows whose time lies outside what the archive
	// holds: before its first date (less the longest window the row needs),
	// or after its last date. Their values may miss events.
	Uncovered int
	// Seconds is how long Build took.
	Seconds float64
}

// Column lookups: where a view's output goes in the set.
type target struct {
	output int // in the view plan's Outputs
	column int // in Set.Columns
}

// viewState is one view's part of a build: a row per distinct key of the
// spine, and which row each spine row reads.
type viewState struct {
	view    *definition.View
	plan    *tile.Plan
	entity  int   // index in Prepared.Entities
	keyIdx  []int // source fields of the entity's key
	rows    []*tile.Row
	byKey   map[string]int32 // encoded key → index in rows
	rowOf   []int32          // per spine row
	targets []target
	vals    []event.Value
	keyBuf  []byte
	keyVals []event.Value
}

// lookup returns the row of the event's key, or nil when the spine does
// not have the key.
func (vs *viewState) lookup(fields []event.Value) *tile.Row {
	vs.keyVals = vs.keyVals[:0]
	for _, i := range vs.keyIdx {
		vs.keyVals = append(vs.keyVals, fields[i])
	}
	vs.keyBuf = tile.AppendKey(vs.keyBuf[:0], "", vs.keyVals)
	i, ok := vs.byKey[string(vs.keyBuf)]
	if !ok {
		return nil
	}
	return vs.rows[i]
}

// builder holds the state of one Build.
type builder struct {
	opts    Options
	spine   *Spine
	set     *Set
	order   []int    // spine rows by time
	present [][]bool // per entity, per row: some view of it has events
	done    int64    // dates read
	total   int64
}

// Build computes the training set of the prepared features for the spine
// from the archive. It reads the archive and nothing else; an error comes
// from the archive, from ctx, or from a spine that does not fit prep.
func Build(ctx context.Context, opts Options, prep *query.Prepared, spine *Spine) (*Set, error) {
	start := time.Now()
	if opts.Project == nil || opts.Plans == nil || opts.Archive == nil {
		return nil, fmt.Errorf("training: Options need Project, Plans and Archive")
	}
	if err := check(prep, spine); err != nil {
		return nil, err
	}
	n := len(spine.Times)
	b := &builder{opts: opts, spine: spine, set: &Set{}}
	b.set.Summary.Rows = n
	var views []*viewState
	for e, pe := range prep.Entities {
		base := len(b.set.Features)
		for _, f := range pe.Features {
			b.set.Features = append(b.set.Features, f)
			var c query.Column
			c.Reset(f.Type, n)
			b.set.Columns = append(b.set.Columns, c)
		}
		k := len(pe.Entity.KeyTypes)
		keys := spine.Keys[e]
		first := true
		for vi, v := range pe.Views() {
			plan := opts.Plans[v]
			if plan == nil {
				return nil, fmt.Errorf("training: no plan for view %s", v.Name)
			}
			vs := &viewState{view: v, plan: plan, entity: e, byKey: map[string]int32{}, rowOf: make([]int32, n),
				vals: make([]event.Value, len(plan.Outputs))}
			for _, name := range v.Entity.Keys {
				vs.keyIdx = append(vs.keyIdx, v.Source.FieldIndex(name))
			}
			for i := range n {
				vs.keyBuf = tile.AppendKey(vs.keyBuf[:0], "", keys[i*k:(i+1)*k])
				r, ok := vs.byKey[string(vs.keyBuf)]
				if !ok {
					r = int32(len(vs.rows))
					vs.byKey[string(vs.keyBuf)] = r
					vs.rows = append(vs.rows, plan.NewRow())
				}
				vs.rowOf[i] = r
			}
			if first {
				b.set.Summary.Entities += len(vs.rows)
				first = false
			}
			for c := range pe.Features {
				if view, output := pe.Item(c); view == vi {
					vs.targets = append(vs.targets, target{output: output, column: base + c})
				}
			}
			views = append(views, vs)
		}
		b.present = append(b.present, make([]bool, n))
	}
	b.order = make([]int, n)
	for i := range b.order {
		b.order[i] = i
	}
	slices.SortStableFunc(b.order, func(x, y int) int { return cmp.Compare(spine.Times[x], spine.Times[y]) })

	// One pass over the archive per source, with the views it feeds.
	var sources []*definition.Source
	bySource := map[*definition.Source][]*viewState{}
	for _, vs := range views {
		if _, ok := bySource[vs.view.Source]; !ok {
			sources = append(sources, vs.view.Source)
		}
		bySource[vs.view.Source] = append(bySource[vs.view.Source], vs)
	}
	uncovered := make([]bool, n)
	dates := map[*definition.Source][]time.Time{}
	for _, src := range sources {
		d, err := opts.Archive.Dates(ctx, src)
		if err != nil {
			return nil, err
		}
		dates[src] = d
		b.total += int64(len(d))
		b.cover(bySource[src], d, uncovered)
	}
	for _, u := range uncovered {
		if u {
			b.set.Summary.Uncovered++
		}
	}
	b.progress()
	for _, src := range sources {
		var err error
		if opts.Mode == AsServed {
			err = b.asServed(ctx, src, bySource[src])
		} else {
			err = b.eventTime(ctx, src, bySource[src])
		}
		if err != nil {
			return nil, err
		}
	}
	// A key none of whose views has an event is absent: every value of it
	// is null, as the read API answers it.
	for e, pe := range prep.Entities {
		base := 0
		for _, p := range prep.Entities[:e] {
			base += len(p.Features)
		}
		for i, ok := range b.present[e] {
			if ok {
				continue
			}
			for c := range pe.Features {
				b.set.Columns[base+c].Valid[i] = false
			}
		}
	}
	b.set.Summary.Seconds = time.Since(start).Seconds()
	return b.set, nil
}

// check refuses a spine whose keys do not fit the prepared features.
func check(prep *query.Prepared, spine *Spine) error {
	if prep == nil || len(prep.Entities) == 0 {
		return fmt.Errorf("training: no features requested")
	}
	if len(spine.Keys) != len(prep.Entities) {
		return fmt.Errorf("training: keys for %d entity types, the features need %d", len(spine.Keys), len(prep.Entities))
	}
	n := len(spine.Times)
	for e, pe := range prep.Entities {
		k := len(pe.Entity.KeyTypes)
		if len(spine.Keys[e]) != n*k {
			return fmt.Errorf("training: entity %s: %d key values for %d rows of %d key field(s)", pe.Entity.Def.Name, len(spine.Keys[e]), n, k)
		}
		for j, v := range spine.Keys[e] {
			if v.Kind != pe.Entity.KeyTypes[j%k] {
				return fmt.Errorf("training: row %d: %s is %v, want %v", j/k, pe.Entity.Def.Keys[j%k], v.Kind, pe.Entity.KeyTypes[j%k])
			}
		}
	}
	return nil
}

// cover marks the rows whose time the archive's dates of a source do not
// cover for its views: the row needs events back to t − the longest
// window's reach (all time: t itself), and up to t.
func (b *builder) cover(views []*viewState, dates []time.Time, uncovered []bool) {
	var back int64
	for _, vs := range views {
		back = max(back, vs.plan.Retention())
	}
	for i, t := range b.spine.Times {
		if len(dates) == 0 {
			uncovered[i] = true
			continue
		}
		first := dates[0].UnixMilli()
		end := dates[len(dates)-1].Add(24 * time.Hour).UnixMilli()
		if t-back < first || t >= end {
			uncovered[i] = true
		}
	}
}

func (b *builder) progress() {
	if b.opts.Progress != nil {
		b.opts.Progress(b.done, b.total)
	}
}

// emitter walks the spine in time order for one source's views.
type emitter struct {
	b     *builder
	views []*viewState
	next  int // into b.order
}

// until reads every spine row whose time is before t.
func (em *emitter) until(t int64) {
	b := em.b
	for em.next < len(b.order) {
		i := b.order[em.next]
		if b.spine.Times[i] >= t {
			return
		}
		em.read(i)
		em.next++
	}
}

// read evaluates row i's values of the views at its time, as the read path
// evaluates a row: an empty row gives the values of no events.
func (em *emitter) read(i int) {
	t := em.b.spine.Times[i]
	for _, vs := range em.views {
		r := vs.rows[vs.rowOf[i]]
		if r.Empty() {
			vs.plan.Eval(nil, t, vs.vals)
		} else {
			em.b.present[vs.entity][i] = true
			vs.plan.Eval(r, t, vs.vals)
		}
		for _, tg := range vs.targets {
			em.b.set.Columns[tg.column].Set(i, vs.vals[tg.output])
		}
	}
}

// dateTicker counts the archive's dates as a scan moves through them.
type dateTicker struct {
	b   *builder
	day int64
}

func (d *dateTicker) tick(ts int64) {
	day := ts / (24 * 3600 * 1000)
	if ts < 0 {
		day--
	}
	if day != d.day {
		if d.day != minDay {
			d.b.done++
			d.b.progress()
		}
		d.day = day
	}
}

const minDay = -1 << 62

// scanEnd is the end (exclusive) of the event times a source's scan reads:
// after the spine's last time, and as served the events that could have
// arrived by then from the future.
func (b *builder) scanEnd(extra int64) time.Time {
	last := int64(0)
	for _, t := range b.spine.Times {
		last = max(last, t)
	}
	return time.UnixMilli(min(last+extra+1, eventMaxTime))
}

// eventMaxTime bounds a scan: 9999-12-31T23:59:59.999Z.
const eventMaxTime = 253402300799999

// eventTime builds a source's columns in event-time mode: the archive's
// events in event-time order, each folded at its own time, the spine's rows
// read in time order between them.
func (b *builder) eventTime(ctx context.Context, src *definition.Source, views []*viewState) error {
	em := &emitter{b: b, views: views}
	dt := &dateTicker{b: b, day: minDay}
	sum := &b.set.Summary
	var ev event.Event
	err := b.opts.Archive.Scan(ctx, src, time.UnixMilli(0), b.scanEnd(0), func(a archive.Archived) error {
		sum.EventsRead++
		dt.tick(a.Time)
		em.until(a.Time) // rows before the event do not see it; a row at its time does
		ev = event.Event{TS: a.Time, Fields: a.Fields}
		for _, vs := range views {
			if r := vs.lookup(a.Fields); r != nil {
				vs.plan.Fold(r, &ev, a.Time)
				sum.EventsFolded++
			}
		}
		if sum.EventsRead%65536 == 0 {
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.finishDates(dt)
	em.until(eventMaxTime + 1)
	return nil
}

func (b *builder) finishDates(dt *dateTicker) {
	if dt.day != minDay {
		b.done++
		b.progress()
	}
}

// asServed builds a source's columns as served: the events of the spine's
// keys in the order the write path took them (arrival, then origin), each
// folded at its arrival, the spine's rows read in time order between them.
//
// The archive is read in event-time order. An accepted event is at most
// max_future_skew ahead of its arrival, so once the scan reaches event time
// X no event still to come arrived before X − skew: the events held in a
// heap by arrival are folded up to there, and only events archived long
// after their event time wait longer.
func (b *builder) asServed(ctx context.Context, src *definition.Source, views []*viewState) error {
	em := &emitter{b: b, views: views}
	dt := &dateTicker{b: b, day: minDay}
	sum := &b.set.Summary
	skew := src.MaxFutureSkew.Milliseconds()
	last := b.scanEnd(0).UnixMilli() - 1
	h := &arrivals{}
	var ev event.Event
	apply := func(a *archive.Archived) {
		em.until(a.Arrival) // rows before the arrival do not see it; a row at it does
		ev = event.Event{TS: a.Time, Fields: a.Fields}
		for _, vs := range views {
			// As the write path does (ingest.Writer.Push): an event late
			// for every window of the view at its arrival never reaches
			// the row (not even to move its clock); the others are
			// folded at their arrival, and one from the future waits in
			// the row until its time.
			if a.Time < vs.plan.LateBefore(a.Arrival) {
				continue
			}
			if r := vs.lookup(a.Fields); r != nil {
				vs.plan.Fold(r, &ev, a.Arrival)
				sum.EventsFolded++
			}
		}
	}
	err := b.opts.Archive.Scan(ctx, src, time.UnixMilli(0), b.scanEnd(skew), func(a archive.Archived) error {
		sum.EventsRead++
		dt.tick(a.Time)
		for h.Len() > 0 && (*h)[0].Arrival < a.Time-skew {
			x := heap.Pop(h).(archive.Archived)
			apply(&x)
		}
		if a.Time < src.MinEventTime || a.Time > a.Arrival+skew {
			sum.Refused++
			return nil
		}
		if a.Arrival > last {
			return nil // arrived after every row
		}
		relevant := false
		for _, vs := range views {
			if vs.lookup(a.Fields) != nil {
				relevant = true
				break
			}
		}
		if relevant {
			a.Fields = slices.Clone(a.Fields) // the scan's memory is its own
			heap.Push(h, a)
		}
		if sum.EventsRead%65536 == 0 {
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for h.Len() > 0 {
		x := heap.Pop(h).(archive.Archived)
		apply(&x)
	}
	b.finishDates(dt)
	em.until(eventMaxTime + 1)
	return nil
}

// arrivals is a min-heap of events in the write path's order: arrival,
// then origin (a push's events are numbered in the order it carried them).
type arrivals []archive.Archived

func (h arrivals) Len() int { return len(h) }
func (h arrivals) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.Arrival != b.Arrival {
		return a.Arrival < b.Arrival
	}
	if c := strings.Compare(a.Origin.Stream, b.Origin.Stream); c != 0 {
		return c < 0
	}
	return a.Origin.Offset < b.Origin.Offset
}
func (h arrivals) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *arrivals) Push(x any)   { *h = append(*h, x.(archive.Archived)) }
func (h *arrivals) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = archive.Archived{}
	*h = old[:len(old)-1]
	return x
}

// Resolver returns a query engine that resolves feature names (Service,
// Prepare) and key types as the read API does, for a process that reads
// no rows: its reads find nothing.
func Resolver(p *definition.Project, plans map[*definition.View]*tile.Plan) (*query.Engine, error) {
	return query.New(query.Config{Project: p, Plans: plans, Rows: noRows{}})
}

type noRows struct{}

func (noRows) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	for i := range keys {
		fn(i, nil, false)
	}
	return nil
}
