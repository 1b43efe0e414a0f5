package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/internal/store"
)

// rowWriter is the way a partition's group commits reach the store. There
// are three, and New picks one for the writer's life (chooseRowWriter) from
// the abilities the store declares and Options.WriteThrough:
//
//   - writeThrough: every commit writes the rows it changed
//     (store.Store.Write).
//   - conditional: every commit writes the rows it changed, each only over
//     the value the partition last saw (store.ConditionalWriter: Redis,
//     which other processes may write too); a row another process changed
//     meanwhile is read and folded again.
//   - writeBehind: a commit appends its events to the partition's log in
//     the store, and rows are written back at checkpoints
//     (store.LogKeeper: the embedded store; see log.go).
//
// Its methods run on the partition's goroutine (apply, commit, stop) or
// before any partition starts (start); get runs on readers' goroutines.
type rowWriter interface {
	// mode names the way, for the log and Stats.WriteMode.
	mode() string
	// start runs before any partition does: writeBehind replays the log
	// of the last run.
	start() error
	// apply loads the rows request r touches, then folds its events into
	// them or keeps it to fold once they are durable. A request it cannot
	// apply is answered at once with the error.
	apply(o *partition, r *request)
	// commit makes what apply took durable and answers the waiting
	// requests; o.waiting is not empty.
	commit(o *partition)
	// stop makes durable what the partition holds when it stops.
	stop(o *partition) error
	// get reads rows as the write path has committed them (Writer.Get).
	get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
}

// The names of the ways rows reach the store (Stats.WriteMode).
const (
	modeWriteThrough = "write-through"
	modeConditional  = "conditional"
	modeWriteBehind  = "write-behind"
)

// chooseRowWriter picks how w's commits reach st: write-behind on a store
// that keeps a log beside its rows, unless opts.WriteThrough; conditional
// writes on a store that others may write too; else write-through.
func chooseRowWriter(w *Writer, st store.Store, opts Options) rowWriter {
	if lk, ok := st.(store.LogKeeper); ok && !opts.WriteThrough {
		return &writeBehind{writer: w, log: lk}
	}
	if cw, ok := st.(store.ConditionalWriter); ok {
		return conditional{writeThrough: writeThrough{store: st}, cond: cw}
	}
	return writeThrough{store: st}
}

// writeThrough writes every commit's rows with store.Store.Write.
type writeThrough struct{ store store.Store }

func (writeThrough) mode() string { return modeWriteThrough }
func (writeThrough) start() error { return nil }

func (writeThrough) apply(o *partition, r *request) { o.applyNow(r, false) }

// commit writes the dirty rows in one store write and answers the requests
// folded into them. If the write fails, the rows are dropped from memory
// (the store still has their previous state) and every request gets the
// error: nothing it carried is acknowledged.
func (w writeThrough) commit(o *partition) {
	now := o.waiting[len(o.waiting)-1].now
	var err error
	if len(o.dirty) > 0 {
		o.sortByKey(o.dirty)
		o.encodeDirty(now)
		start := time.Now()
		err = w.store.Write(context.Background(), o.batch)
		o.wrote(start)
		if o.writer.opts.AfterWrite != nil {
			o.writer.opts.AfterWrite(o.batch, err)
		}
		if err != nil {
			err = o.writeFailed(err)
		} else {
			o.rowsWritten.Add(int64(len(o.batch)))
			for _, e := range o.dirty {
				e.dirty = false
			}
		}
	}
	o.endCommit(err)
}

func (writeThrough) stop(*partition) error { return nil }

func (w writeThrough) get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return w.store.Get(ctx, keys, fn)
}

// conditional writes every commit's rows with
// store.ConditionalWriter.WriteIf, each over the value the partition last
// saw (heldRow.stored). It reads, starts and stops as writeThrough does.
type conditional struct {
	writeThrough
	cond store.ConditionalWriter
}

// maxConflictRounds bounds how often one commit folds rows again after
// other writers changed them.
const maxConflictRounds = 100

func (conditional) mode() string { return modeConditional }

// apply keeps the stored value of each row it reads, to write over.
func (conditional) apply(o *partition, r *request) { o.applyNow(r, true) }

// commit is writeThrough's, except that each row is written only over the
// value this partition last saw; a row another process changed meanwhile
// is read again and the requests' events for it folded again (streamed
// events the other writer already applied are passed over by their
// positions), until every row is written.
func (c conditional) commit(o *partition) {
	var err error
	now := o.waiting[len(o.waiting)-1].now
	for round := 0; len(o.dirty) > 0; round++ {
		var conflicts []*heldRow
		conflicts, err = c.write(o, now)
		if err != nil || len(conflicts) == 0 {
			break
		}
		o.conflicts.Add(int64(len(conflicts)))
		if round == maxConflictRounds {
			err = fmt.Errorf("%d rows kept changing under other writers: %w", len(conflicts), store.ErrConflict)
			for _, e := range conflicts {
				o.rows.del(e)
			}
			break
		}
		err = o.refold(conflicts)
		if err != nil {
			break
		}
	}
	o.endCommit(err)
}

// write encodes and writes the dirty rows. It returns the rows another
// writer changed since this partition read them; they were not written.
// Every other row is written and clean, or, on error, dropped from memory.
func (c conditional) write(o *partition, now int64) (conflicts []*heldRow, err error) {
	o.sortByKey(o.dirty)
	o.encodeDirty(now)
	o.cbatch = o.cbatch[:0]
	for i, e := range o.dirty {
		o.cbatch = append(o.cbatch, store.CondKV{Key: o.batch[i].Key, Value: o.batch[i].Value, Old: e.stored})
	}
	var conflicted []bool
	start := time.Now()
	err = c.cond.WriteIf(context.Background(), o.cbatch, func(i int) {
		if conflicted == nil {
			conflicted = make([]bool, len(o.dirty))
		}
		conflicted[i] = true
	})
	o.wrote(start)
	written := o.batch
	if conflicted != nil && err == nil {
		written = written[:0:0]
		for i, e := range o.dirty {
			if conflicted[i] {
				conflicts = append(conflicts, e)
			} else {
				written = append(written, o.batch[i])
			}
		}
	}
	if o.writer.opts.AfterWrite != nil {
		o.writer.opts.AfterWrite(written, err)
	}
	if err != nil {
		return nil, o.writeFailed(err)
	}
	o.rowsWritten.Add(int64(len(written)))
	for i, e := range o.dirty {
		if conflicted != nil && conflicted[i] {
			continue
		}
		e.dirty = false
		e.stored = append(e.stored[:0], o.batch[i].Value...)
	}
	return conflicts, nil
}
