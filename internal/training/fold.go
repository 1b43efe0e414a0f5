package training

import (
	"runtime"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/event"
)

// The engine's folds and evaluations run on workers, each owning some of
// the views: the rows of tiles of a view are touched by one goroutine
// only, and the views' work, most of a build, is spread over the cores.
// The engine hands them batches of steps in the order a serial build would
// take them — fold this event, read that row — and each worker takes every
// step for its views, so each view sees its events and rows in the same
// order as a serial build: the values are the same, bit for bit.

// step is one thing a batch asks of every worker: fold an event into its
// views of a source, or read a row.
type step struct {
	row  bool
	slot int   // a row: its place in the batch's rows
	cur  int   // a fold: its source's cursor
	now  int64 // a fold: the time it is folded at; a row: its time
	ev   archive.Archived
}

// batch of steps, and what the workers computed for its rows.
type stepBatch struct {
	steps []step
	keys  [][][]event.Value // per row slot: keys per entity
	tags  []rowTag
	vals  [][]event.Value // per row slot: a value per feature
	found [][]bool        // per row slot: per view, its row has events
}

// rowTag is where a row's values go: row i of a table (BuildFile) or of
// the spine (Build, with tab nil).
type rowTag struct {
	tab *Table
	i   int
}

// batchRows and batchSteps bound a batch.
const (
	batchRows  = 1024
	batchSteps = 16384
)

// worker folds and reads some of the views.
type worker struct {
	e        *engine
	views    []*viewState
	byCursor [][]*viewState
	in       chan *stepBatch
	folded   int64
}

// startWorkers gives the views to min(GOMAXPROCS, views) workers.
func (e *engine) startWorkers() {
	n := max(1, min(runtime.GOMAXPROCS(0), len(e.views)))
	e.workers = make([]*worker, n)
	for i := range e.workers {
		e.workers[i] = &worker{e: e, byCursor: make([][]*viewState, len(e.cursors))}
	}
	for vi, vs := range e.views {
		w := e.workers[vi%n]
		w.views = append(w.views, vs)
		w.byCursor[vs.cursor] = append(w.byCursor[vs.cursor], vs)
	}
	if n == 1 {
		return // the engine runs its one worker itself
	}
	for _, w := range e.workers {
		w.in = make(chan *stepBatch)
		go func() {
			for b := range w.in {
				w.run(b)
				e.wg.Done()
			}
		}()
	}
	e.batches[1] = e.newBatch()
}

func (e *engine) newBatch() *stepBatch {
	b := &stepBatch{}
	for range batchRows {
		b.vals = append(b.vals, make([]event.Value, len(e.features)))
		b.found = append(b.found, make([]bool, len(e.views)))
		b.keys = append(b.keys, make([][]event.Value, len(e.prep.Entities)))
	}
	return b
}

// run takes every step of the batch for the worker's views.
func (w *worker) run(b *stepBatch) {
	var ev event.Event
	for i := range b.steps {
		st := &b.steps[i]
		if st.row {
			keys, vals, found := b.keys[st.slot], b.vals[st.slot], b.found[st.slot]
			for _, vs := range w.views {
				r := vs.row(keys[vs.entity])
				if r == nil || r.Empty() {
					vs.plan.Eval(nil, st.now, vs.vals)
					found[vs.index] = false
				} else {
					vs.plan.Eval(r, st.now, vs.vals)
					found[vs.index] = true
				}
				for _, tg := range vs.targets {
					vals[tg.column] = vs.vals[tg.output]
				}
			}
			continue
		}
		a := &st.ev
		ev = event.Event{TS: a.Time, Fields: a.Fields}
		for _, vs := range w.byCursor[st.cur] {
			// As served, as the write path does (ingest.Writer.Push): an
			// event late for every window of the view at its arrival never
			// reaches the row (not even to move its clock); the others are
			// folded at their arrival, and one from the future waits in the
			// row until its time.
			if w.e.opts.Mode == AsServed && a.Time < vs.plan.LateBefore(st.now) {
				continue
			}
			if r := vs.lookup(a.Fields); r != nil {
				vs.plan.Fold(r, &ev, st.now)
				w.folded++
			}
		}
	}
}

// fold asks the workers to fold an event of cursor cur at now.
func (e *engine) fold(cur int, a *archive.Archived, now int64) error {
	b := e.batches[0]
	b.steps = append(b.steps, step{cur: cur, now: now, ev: *a})
	if len(b.steps) >= batchSteps {
		return e.flush()
	}
	return nil
}

// read asks the workers to read a row at t.
func (e *engine) read(t int64, keys [][]event.Value, tag rowTag) error {
	b := e.batches[0]
	slot := len(b.tags)
	copy(b.keys[slot], keys)
	b.tags = append(b.tags, tag)
	b.steps = append(b.steps, step{row: true, slot: slot, now: t})
	if len(b.tags) == batchRows || len(b.steps) >= batchSteps {
		return e.flush()
	}
	return nil
}

// flush has the workers take the batch being filled. With several
// workers they take it while the engine fills the next one and hands out
// the rows of the one before.
func (e *engine) flush() error {
	b := e.batches[0]
	if len(e.workers) == 1 {
		e.workers[0].run(b)
		return e.deliver(b)
	}
	e.wg.Wait()
	prev := e.batches[1]
	e.wg.Add(len(e.workers))
	for _, w := range e.workers {
		w.in <- b
	}
	e.batches[0], e.batches[1] = prev, b
	return e.deliver(prev)
}

// drain waits for the workers and hands out every row still held.
func (e *engine) drain() error {
	if err := e.flush(); err != nil {
		return err
	}
	if len(e.workers) > 1 {
		e.wg.Wait()
		return e.deliver(e.batches[1])
	}
	return nil
}

// deliver hands out the rows of a batch the workers took and empties it.
func (e *engine) deliver(b *stepBatch) error {
	for slot, tag := range b.tags {
		vals, found := b.vals[slot], b.found[slot]
		for ei, views := range e.byEntity {
			present := false
			for _, vs := range views {
				present = present || found[vs.index]
			}
			if !present {
				// A key none of whose views has an event is absent:
				// every value of it is null, as the read API answers it.
				clear(vals[e.first[ei] : e.first[ei]+len(e.prep.Entities[ei].Features)])
			}
		}
		if err := e.out(tag, vals); err != nil {
			return err
		}
	}
	b.steps, b.tags = b.steps[:0], b.tags[:0]
	return nil
}

// stopWorkers ends the workers' goroutines.
func (e *engine) stopWorkers() {
	if len(e.workers) > 1 {
		e.wg.Wait()
		for _, w := range e.workers {
			close(w.in)
		}
	}
	e.workers = nil
}
