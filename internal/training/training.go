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
// The engine reads the archive once per source the features need, in
// event-time order, the sources side by side, and moves through the spine
// in time order beside them: the work is O(events + rows). Its memory is
// one row of tiles per (view, key) of the spine, plus, as served, the
// events whose arrival is still ahead of the reading (those archived long
// after their event time). The views' folds run on a worker per core.
//
// Build computes a spine held in memory into a Set in spine order (the
// HTTP endpoint's way). BuildFile computes a spine file of any size into
// an output file in time order: it reads the spine a chunk at a time,
// sorting it in runs on disk past a memory budget, and writes each row as
// soon as it is computed, so that its memory does not grow with the
// spine's rows. ReadTable, SpineOf and WriteTable are the pieces for a
// caller that holds a spine whole.
//
// The caller resolves the features with a query.Engine (Service or Prepare
// on Resolver's) and hands them to Build or BuildFile. Nothing here writes
// to the archive or to any store.
package training

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
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
	// Spilled is the bytes of the spine's runs written to temporary files
	// (BuildFile, when the spine did not fit its memory), in Runs files.
	Spilled int64
	Runs    int
	// Seconds is how long Build took.
	Seconds float64
}

// Column lookups: where a view's output goes in the set.
type target struct {
	output int // in the view plan's Outputs
	column int // in Set.Columns
}

// viewState is one view's part of a build: a row of tiles per distinct key
// of the spine. A key of one int64 field (the common case) is looked up in
// a map of int64s; any other by its encoding.
type viewState struct {
	view    *definition.View
	plan    *tile.Plan
	entity  int   // index in Prepared.Entities
	index   int   // in engine.views
	cursor  int   // its source's, in engine.cursors
	keyIdx  []int // source fields of the entity's key
	byInt   map[int64]*tile.Row
	byKey   map[string]*tile.Row
	targets []target
	vals    []event.Value
	keyBuf  []byte
	keyVals []event.Value
}

// intKey reports whether the view's entity has one int64 key field.
func (vs *viewState) intKey() bool { return vs.byInt != nil }

// row returns the row of a spine key, or nil when the spine does not have
// it. Only the goroutine that folds the view calls it.
func (vs *viewState) row(key []event.Value) *tile.Row {
	if vs.intKey() {
		return vs.byInt[key[0].Int]
	}
	vs.keyBuf = tile.AppendKey(vs.keyBuf[:0], "", key)
	return vs.byKey[string(vs.keyBuf)]
}

// add makes a row for a spine key; it reports whether the key is new.
func (vs *viewState) add(key []event.Value) bool {
	if vs.intKey() {
		if _, ok := vs.byInt[key[0].Int]; ok {
			return false
		}
		vs.byInt[key[0].Int] = vs.plan.NewRow()
		return true
	}
	vs.keyBuf = tile.AppendKey(vs.keyBuf[:0], "", key)
	if _, ok := vs.byKey[string(vs.keyBuf)]; ok {
		return false
	}
	vs.byKey[string(vs.keyBuf)] = vs.plan.NewRow()
	return true
}

// lookup returns the row of the event's key, or nil when the spine does
// not have the key. It uses the view's own buffers: only the goroutine
// that folds the view calls it (others call find).
func (vs *viewState) lookup(fields []event.Value) *tile.Row {
	return vs.find(fields, &vs.keyVals, &vs.keyBuf)
}

// find is lookup with the caller's buffers.
func (vs *viewState) find(fields []event.Value, keyVals *[]event.Value, keyBuf *[]byte) *tile.Row {
	if vs.intKey() {
		v := fields[vs.keyIdx[0]]
		if v.Kind != event.Int64 {
			return nil
		}
		return vs.byInt[v.Int]
	}
	*keyVals = (*keyVals)[:0]
	for _, i := range vs.keyIdx {
		*keyVals = append(*keyVals, fields[i])
	}
	*keyBuf = tile.AppendKey((*keyBuf)[:0], "", *keyVals)
	return vs.byKey[string(*keyBuf)]
}

// engine computes the values of spine rows handed to it in time order: it
// holds a row of tiles per (view, key) of the spine and walks each source's
// archive beside the rows, folding what a row at the row's time sees.
// Build and BuildFile drive it: AddKey for every row's keys, Start, then
// Row for each row in time order, and Finish; the rows' values come out,
// in the same order, through out.
type engine struct {
	opts     Options
	prep     *query.Prepared
	features []query.Feature
	views    []*viewState
	byEntity [][]*viewState
	first    []int // per entity: its first column in the set
	cursors  []*cursor
	sum      Summary
	done     int64 // dates read
	total    int64
	started  bool
	out      func(tag rowTag, vals []event.Value) error
	workers  []*worker
	batches  [2]*stepBatch // being filled, and with the workers
	wg       sync.WaitGroup
}

func newEngine(opts Options, prep *query.Prepared, out func(tag rowTag, vals []event.Value) error) (*engine, error) {
	if opts.Project == nil || opts.Plans == nil || opts.Archive == nil {
		return nil, fmt.Errorf("training: Options need Project, Plans and Archive")
	}
	if prep == nil || len(prep.Entities) == 0 {
		return nil, fmt.Errorf("training: no features requested")
	}
	e := &engine{opts: opts, prep: prep, out: out}
	for ei, pe := range prep.Entities {
		base := len(e.features)
		e.first = append(e.first, base)
		e.features = append(e.features, pe.Features...)
		var views []*viewState
		for vi, v := range pe.Views() {
			plan := opts.Plans[v]
			if plan == nil {
				return nil, fmt.Errorf("training: no plan for view %s", v.Name)
			}
			vs := &viewState{view: v, plan: plan, entity: ei, index: len(e.views) + len(views), vals: make([]event.Value, len(plan.Outputs))}
			if len(pe.Entity.KeyTypes) == 1 && pe.Entity.KeyTypes[0] == event.Int64 {
				vs.byInt = map[int64]*tile.Row{}
			} else {
				vs.byKey = map[string]*tile.Row{}
			}
			for _, name := range v.Entity.Keys {
				vs.keyIdx = append(vs.keyIdx, v.Source.FieldIndex(name))
			}
			for c := range pe.Features {
				if view, output := pe.Item(c); view == vi {
					vs.targets = append(vs.targets, target{output: output, column: base + c})
				}
			}
			views = append(views, vs)
		}
		e.byEntity = append(e.byEntity, views)
		e.views = append(e.views, views...)
	}
	return e, nil
}

// AddKey makes the rows of entity ei's key (its key fields' values, of the
// entity's key types).
func (e *engine) AddKey(ei int, key []event.Value) {
	for j, vs := range e.byEntity[ei] {
		if vs.add(key) && j == 0 {
			e.sum.Entities++
		}
	}
}

// Start lists the archive's dates and opens a scan per source, up to the
// last row's time (inclusive).
func (e *engine) Start(ctx context.Context, last int64) error {
	bySource := map[*definition.Source]*cursor{}
	for _, vs := range e.views {
		c := bySource[vs.view.Source]
		if c == nil {
			c = &cursor{e: e, src: vs.view.Source, mode: e.opts.Mode, skew: vs.view.Source.MaxFutureSkew.Milliseconds(),
				last: last, dt: dateTicker{day: minDay}, index: len(e.cursors)}
			bySource[vs.view.Source] = c
			e.cursors = append(e.cursors, c)
		}
		c.views = append(c.views, vs)
		vs.cursor = c.index
		c.back = max(c.back, vs.plan.Retention())
	}
	for _, c := range e.cursors {
		d, err := e.opts.Archive.Dates(ctx, c.src)
		if err != nil {
			return err
		}
		if len(d) > 0 {
			c.first, c.end = d[0].UnixMilli(), d[len(d)-1].Add(24*time.Hour).UnixMilli()
		}
		e.total += int64(len(d))
		extra := int64(0)
		if c.mode == AsServed {
			extra = c.skew
		}
		end := time.UnixMilli(min(last+extra+1, eventMaxTime))
		c.sc = e.opts.Archive.Scanner(ctx, c.src, time.UnixMilli(0), end)
		c.ctx = ctx
		if err := c.advance(); err != nil {
			return err
		}
	}
	e.batches[0] = e.newBatch()
	e.startWorkers()
	e.started = true
	e.progress()
	return nil
}

// Row asks for the values of a row at time t (no earlier than the
// previous row's) whose keys are keys[ei] for entity ei, each added with
// AddKey. They come out through out with tag, one value per feature of the
// set, event.Null where the read API gives null, once the workers have
// computed them (at the latest in Finish). keys is not kept; the slices
// it holds are.
func (e *engine) Row(t int64, keys [][]event.Value, tag rowTag) error {
	e.sum.Rows++
	uncovered := false
	for _, c := range e.cursors {
		if err := c.upTo(t); err != nil {
			return err
		}
		if c.end == 0 || t-c.back < c.first || t >= c.end {
			uncovered = true
		}
	}
	if uncovered {
		e.sum.Uncovered++
	}
	return e.read(t, keys, tag)
}

// Close stops the workers and the scans.
func (e *engine) Close() {
	e.stopWorkers()
	for _, c := range e.cursors {
		if c.sc != nil {
			c.sc.Close()
		}
	}
}

// Finish reads what is left of the scans (up to the last row's time),
// hands out every row asked for, and returns the summary.
func (e *engine) Finish() (Summary, error) {
	if e.started {
		for _, c := range e.cursors {
			if err := c.upTo(c.last); err != nil {
				return Summary{}, err
			}
			c.dt.finish(e)
		}
		if err := e.drain(); err != nil {
			return Summary{}, err
		}
		for _, w := range e.workers {
			e.sum.EventsFolded += w.folded
		}
		e.stopWorkers()
	}
	return e.sum, nil
}

// Build computes the training set of the prepared features for the spine
// from the archive. It reads the archive and nothing else; an error comes
// from the archive, from ctx, or from a spine that does not fit prep. The
// spine, the rows of tiles of its keys and the set are in memory: BuildFile
// is the way for spines of any size.
func Build(ctx context.Context, opts Options, prep *query.Prepared, spine *Spine) (*Set, error) {
	start := time.Now()
	if err := check(prep, spine); err != nil {
		return nil, err
	}
	set := &Set{}
	e, err := newEngine(opts, prep, func(tag rowTag, vals []event.Value) error {
		for c, v := range vals {
			set.Columns[c].Set(tag.i, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	n := len(spine.Times)
	set.Features, set.Columns = e.features, make([]query.Column, len(e.features))
	for c, f := range e.features {
		set.Columns[c].Reset(f.Type, n)
	}
	keys := make([][]event.Value, len(prep.Entities))
	rowKeys := func(i int) [][]event.Value {
		for ei, pe := range prep.Entities {
			k := len(pe.Entity.KeyTypes)
			keys[ei] = spine.Keys[ei][i*k : (i+1)*k]
		}
		return keys
	}
	for i := range n {
		for ei, key := range rowKeys(i) {
			e.AddKey(ei, key)
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(spine.Times[x], spine.Times[y]) })
	if n > 0 {
		if err := e.Start(ctx, spine.Times[order[n-1]]); err != nil {
			return nil, err
		}
	}
	for _, i := range order {
		if err := e.Row(spine.Times[i], rowKeys(i), rowTag{i: i}); err != nil {
			return nil, err
		}
	}
	set.Summary, err = e.Finish()
	if err != nil {
		return nil, err
	}
	set.Summary.Seconds = time.Since(start).Seconds()
	return set, nil
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

func (e *engine) progress() {
	if e.opts.Progress != nil {
		e.opts.Progress(e.done, e.total)
	}
}

// dateTicker counts the archive's dates as a scan moves through them.
type dateTicker struct {
	day int64
}

func (d *dateTicker) tick(e *engine, ts int64) {
	day := ts / (24 * 3600 * 1000)
	if ts < 0 {
		day--
	}
	if day != d.day {
		if d.day != minDay {
			e.done++
			e.progress()
		}
		d.day = day
	}
}

func (d *dateTicker) finish(e *engine) {
	if d.day != minDay {
		e.done++
		e.progress()
		d.day = minDay
	}
}

const minDay = -1 << 62

// eventMaxTime bounds a scan: 9999-12-31T23:59:59.999Z.
const eventMaxTime = 253402300799999

// cursor walks one source's archive, in event-time order, for the views
// it feeds, folding what the rows at a time see when asked (upTo).
//
// In event-time mode a row at t sees the events with an event time ≤ t,
// each folded at its own time. As served it sees the events that had
// arrived by t, folded at their arrival in the order the write path took
// them (arrival, then origin). The archive is read in event-time order. An
// accepted event is at most max_future_skew ahead of its arrival, so once
// the scan is past event time t + skew no event still to come arrived by
// t: the events held in a heap by arrival are folded up to t, and only
// events archived long after their event time wait longer.
type cursor struct {
	e     *engine
	index int // in engine.cursors
	ctx   context.Context
	src   *definition.Source
	views []*viewState
	mode  Mode
	skew  int64
	last  int64 // the last row's time
	// The archive's dates cover [first, end); back is the longest reach of
	// the views' windows before a row's time (all time: 0).
	first, end, back int64
	sc               *archive.Scanner
	next             *archive.Archived // scanned, not yet taken; nil at the end
	h                arrivals
	dt               dateTicker
	keyVals          []event.Value
	keyBuf           []byte
}

// advance moves the scan to its next event.
func (c *cursor) advance() error {
	if !c.sc.Next() {
		c.next = nil
		return c.sc.Err()
	}
	c.next = c.sc.Event()
	sum := &c.e.sum
	sum.EventsRead++
	c.dt.tick(c.e, c.next.Time)
	if sum.EventsRead%65536 == 0 {
		return c.ctx.Err()
	}
	return nil
}

// upTo folds every event a row at time t sees.
func (c *cursor) upTo(t int64) error {
	if c.mode == AsServed {
		return c.upToArrival(t)
	}
	for c.next != nil && c.next.Time <= t {
		if err := c.e.fold(c.index, c.next, c.next.Time); err != nil {
			return err
		}
		if err := c.advance(); err != nil {
			return err
		}
	}
	return nil
}

func (c *cursor) upToArrival(t int64) error {
	sum := &c.e.sum
	for c.next != nil && c.next.Time-c.skew <= t {
		a := c.next
		// No event still to be scanned arrived before a.Time − skew: the
		// held events that did are folded now, so that the heap holds
		// only the events of the skew, not all up to the row.
		if err := c.foldArrived(min(t, a.Time-c.skew-1)); err != nil {
			return err
		}
		switch {
		case a.Time < c.src.MinEventTime || a.Time > a.Arrival+c.skew:
			sum.Refused++
		case a.Arrival > c.last:
			// arrived after every row
		default:
			for _, vs := range c.views {
				if vs.find(a.Fields, &c.keyVals, &c.keyBuf) != nil {
					// Its own copy of the fields: a date's events stay in
					// memory as long as one of them is held.
					x := *a
					x.Fields = slices.Clone(a.Fields)
					heap.Push(&c.h, x)
					break
				}
			}
		}
		if err := c.advance(); err != nil {
			return err
		}
	}
	return c.foldArrived(t)
}

// foldArrived folds the held events that arrived by t, in arrival order.
func (c *cursor) foldArrived(t int64) error {
	for c.h.Len() > 0 && c.h[0].Arrival <= t {
		a := heap.Pop(&c.h).(archive.Archived)
		if err := c.e.fold(c.index, &a, a.Arrival); err != nil {
			return err
		}
	}
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
