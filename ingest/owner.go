package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/kiln-dev/kiln/store"
	"github.com/kiln-dev/kiln/tile"
)

// owner is the single writer of one partition: only its goroutine touches
// rows, so the write path takes no lock per event.
type owner struct {
	id   int
	p    *Pipeline
	in   chan *request
	rows map[string]*entry // rows in memory, by row key; owned by run

	dirty   []*entry   // rows changed since the last write
	waiting []*request // requests answered by the next write
	batch   []store.KV
	buf     []byte
	missing [][]byte
	load    []int

	rowsWritten, writes, writeErrors, rowsReset atomic.Int64
}

type entry struct {
	key   string
	plan  *tile.Plan
	row   *tile.Row
	dirty bool
}

// run folds requests until the queue is closed. It drains whatever is
// queued, then writes the batch in one atomic store write and answers every
// request in it: a group commit sized by the load.
func (o *owner) run() {
	defer o.p.wg.Done()
	for {
		r, ok := <-o.in
		if !ok {
			return
		}
		o.apply(r)
	drain:
		for len(o.dirty) < o.p.opts.MaxBatchRows {
			select {
			case r, ok := <-o.in:
				if !ok {
					break drain
				}
				o.apply(r)
			default:
				break drain
			}
		}
		o.flush()
	}
}

// apply folds one request's events into rows, loading rows it lacks from
// the store in one batch read. A request that cannot be applied is answered
// at once with the error.
func (o *owner) apply(r *request) {
	if err := o.loadRows(r); err != nil {
		r.done <- err
		return
	}
	for _, op := range r.ops {
		e := o.rows[string(r.keys[op.from:op.to])]
		if out := op.feed.plan.Fold(e.row, op.ev, r.now); out == tile.Late {
			op.feed.late.Add(1)
		}
		if !e.dirty {
			e.dirty = true
			o.dirty = append(o.dirty, e)
		}
	}
	o.waiting = append(o.waiting, r)
}

// loadRows makes sure every row the request touches is in memory.
func (o *owner) loadRows(r *request) error {
	o.missing = o.missing[:0]
	o.load = o.load[:0]
	for i, op := range r.ops {
		k := r.keys[op.from:op.to]
		if _, ok := o.rows[string(k)]; ok {
			continue
		}
		// A key may repeat within a request; load it once.
		o.rows[string(k)] = nil
		o.missing = append(o.missing, k)
		o.load = append(o.load, i)
	}
	if len(o.missing) == 0 {
		return nil
	}
	var decodeErr error
	err := o.p.store.Get(context.Background(), o.missing, func(i int, value []byte, found bool) {
		op := r.ops[o.load[i]]
		e := &entry{key: string(o.missing[i]), plan: op.feed.plan, row: op.feed.plan.NewRow()}
		if found {
			if err := e.plan.DecodeRow(value, e.row); err != nil {
				if !errors.Is(err, tile.ErrLayout) {
					if decodeErr == nil {
						decodeErr = fmt.Errorf("row of view %s in the store: %w", op.feed.view.Name, err)
					}
					return
				}
				// The view's definition changed: its old tiles mean something
				// else now, so the row starts again.
				o.rowsReset.Add(1)
				o.p.opts.Logger.Warn("row written for an older definition of the view; starting it afresh",
					"view", op.feed.view.Name)
				e.plan.Reset(e.row)
			}
		}
		o.rows[e.key] = e
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		for _, k := range o.missing {
			if e := o.rows[string(k)]; e == nil {
				delete(o.rows, string(k))
			}
		}
		return fmt.Errorf("reading rows from the store: %w", err)
	}
	return nil
}

// flush writes the dirty rows in one store write and answers the requests
// folded into them. If the write fails, the rows are dropped from memory
// (the store still has their previous state) and every request gets the
// error: nothing it carried is acknowledged.
func (o *owner) flush() {
	if len(o.waiting) == 0 {
		return
	}
	var err error
	if len(o.dirty) > 0 {
		o.batch = o.batch[:0]
		o.buf = o.buf[:0]
		now := o.waiting[len(o.waiting)-1].now
		offs := make([]int, 0, len(o.dirty)+1)
		for _, e := range o.dirty {
			e.plan.Advance(e.row, now)
			offs = append(offs, len(o.buf))
			o.buf = e.plan.AppendRow(o.buf, e.row)
		}
		offs = append(offs, len(o.buf))
		for i, e := range o.dirty {
			o.batch = append(o.batch, store.KV{Key: []byte(e.key), Value: o.buf[offs[i]:offs[i+1]]})
		}
		err = o.p.store.Write(context.Background(), o.batch)
		o.writes.Add(1)
		if o.p.opts.AfterWrite != nil {
			o.p.opts.AfterWrite(o.batch, err)
		}
		if err != nil {
			o.writeErrors.Add(1)
			o.p.opts.Logger.Error("writing rows failed", "partition", o.id, "rows", len(o.dirty), "err", err)
			err = fmt.Errorf("writing %d rows to the store: %w", len(o.dirty), err)
			for _, e := range o.dirty {
				delete(o.rows, e.key)
			}
		} else {
			o.rowsWritten.Add(int64(len(o.dirty)))
			for _, e := range o.dirty {
				e.dirty = false
			}
		}
		clear(o.dirty)
		o.dirty = o.dirty[:0]
	}
	for _, r := range o.waiting {
		r.done <- err
	}
	clear(o.waiting)
	o.waiting = o.waiting[:0]
	o.evict()
}

// evict forgets clean rows beyond MaxCachedRows.
func (o *owner) evict() {
	over := len(o.rows) - o.p.opts.MaxCachedRows
	if over <= 0 {
		return
	}
	for k, e := range o.rows {
		if over == 0 {
			break
		}
		if !e.dirty {
			delete(o.rows, k)
			over--
		}
	}
}
