package ingest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// partition is one partition of the write path: the rows whose keys route
// to it, held in memory, and the goroutine that is their single writer.
// Only that goroutine touches the rows, so the write path takes no lock per
// event.
type partition struct {
	id     int
	writer *Writer
	in     chan *request
	rows   rowMap // rows in memory; owned by run

	dirty   []*heldRow // rows changed since the last write
	waiting []*request // requests answered by the next write
	batch   []store.KV
	cbatch  []store.CondKV // conditional's
	buf     []byte
	missing []*heldRow // rows loadMissing reads
	keys    [][]byte   // their keys
	sink    uint64     // of loads made only to warm the cache
	sortBuf []sortKey
	// closeErr is rowWriter.stop's, read by Close after run returns.
	closeErr error

	// Write-behind's (see log.go).
	overlay        overlay
	unsaved        []*heldRow // rows committed since the last checkpoint
	queuedOps      int        // ops of o.waiting, not folded until their log record is written
	seq            uint64     // the last log record appended
	logBytes       int        // log appended since the last checkpoint
	lastCheckpoint int64      // Unix ms; 0: none yet
	rec, key       []byte

	rowsWritten, writes, writeErrors, rowsReset, conflicts, checkpoints atomic.Int64
}

// heldRow is a row a partition holds in memory: its key and the key's
// hash, the plan of its view and the decoded row, and what the partition
// knows of it (changed since the last write; not yet written back).
type heldRow struct {
	// The fields a fold uses come first, to share the first cache line.

	// mu (write-behind) is held while the row changes and while a reader
	// encodes it from the overlay.
	mu    sync.Mutex
	dirty bool
	// unsaved: committed to the log but not yet written back (write-behind);
	// such a row is in the overlay and stays in memory until the next
	// checkpoint.
	unsaved bool
	row     *tile.Row
	plan    *tile.Plan
	hash    uint64 // store.KeyHash(key)
	key     string
	stored  []byte // the row's value in the store as this partition knows it (conditional only); nil: none
}

// keyBytes returns the bytes of a row key held as a string, without a copy.
// They must not be modified: store writes and the read cache only read
// (and copy) the keys of a batch.
func keyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// run folds requests until the queue is closed. It drains whatever is
// queued, then makes the batch durable in one atomic store write (its rows,
// or with write-behind its log record) and answers every request in it: a
// group commit sized by the load. The writer's rowWriter does the
// folding and the writing.
func (o *partition) run() {
	defer o.writer.wg.Done()
	w := o.writer.rowWriter
	for {
		r, ok := <-o.in
		if !ok {
			o.closeErr = w.stop(o)
			return
		}
		w.apply(o, r)
	drain:
		for len(o.dirty)+o.queuedOps < o.writer.opts.MaxBatchRows {
			select {
			case r, ok := <-o.in:
				if !ok {
					break drain
				}
				w.apply(o, r)
			default:
				break drain
			}
		}
		if len(o.waiting) > 0 {
			w.commit(o)
		}
	}
}

// applyNow loads the rows r touches and folds its events into them at once
// (rowWriter.apply writing rows at every commit); keepStored is as for
// loadRows.
func (o *partition) applyNow(r *request, keepStored bool) {
	if err := o.loadRows(r, keepStored); err != nil {
		r.done <- err
		return
	}
	o.foldRequest(r, false)
	o.waiting = append(o.waiting, r)
}

// foldRequest folds every event of r into its row (see fold).
func (o *partition) foldRequest(r *request, locked bool) {
	for i := range r.ops {
		op := &r.ops[i]
		o.fold(op.row, op, r.now, locked)
	}
}

// fold applies one event to its row, unless the row has applied it before
// (a streamed event at or below the offset the row records for its stream)
// and the op is not a replay (Writer.Replay).
// With locked, it holds the row's lock while the row changes: writing
// behind, readers encode rows of the overlay under it.
func (o *partition) fold(e *heldRow, op *op, now int64, locked bool) {
	if !op.replay && e.row.Applied(op.ev.Origin) {
		o.writer.skipped.Add(1)
		return
	}
	if locked {
		e.mu.Lock()
	}
	op.late = op.feed.plan.Fold(e.row, op.ev, now) == tile.Late
	e.row.MarkApplied(op.ev.Origin)
	if locked {
		e.mu.Unlock()
	}
	if !e.dirty {
		e.dirty = true
		o.dirty = append(o.dirty, e)
	}
}

// loadRows makes sure every row the request touches is in memory, and
// points each op at its row. It looks rows up a group at a time, in passes
// whose cache misses overlap: the group's slots in o.rows, then their
// held rows (see rowMap). With keepStored (conditional writes), each row
// read from the store keeps a copy of its stored value.
func (o *partition) loadRows(r *request, keepStored bool) error {
	const group = 64
	o.missing = o.missing[:0]
	for at := 0; at < len(r.ops); at += group {
		ops := r.ops[at:min(at+group, len(r.ops))]
		for i := range ops {
			o.sink += o.rows.touch(ops[i].hash)
		}
		for i := range ops {
			ops[i].row = o.rows.find(ops[i].hash) // a candidate: its key is not checked yet
		}
		for i := range ops {
			op := &ops[i]
			k := r.keys[op.from:op.to]
			if op.row == nil || op.row.key != string(k) {
				op.row = o.rowOf(op, k)
			}
		}
	}
	return o.loadMissing(keepStored)
}

// rowOf returns the held row of op's row, whose key is k: the one in
// memory, or a new one, added to o.rows and queued in o.missing for
// loadMissing to read. A key that repeats before loadMissing runs finds the
// new one, so
// its row is read once.
func (o *partition) rowOf(op *op, k []byte) *heldRow {
	e := o.rows.get(op.hash, k)
	if e == nil {
		e = newHeldRow(k, op.hash, op.feed.plan)
		o.rows.put(e)
		o.missing = append(o.missing, e)
	}
	return e
}

// loadMissing reads the rows of the held rows in o.missing, just added to
// o.rows with empty rows, from the store. On error it takes them out of
// o.rows again. With keepStored, each row keeps a copy of its stored
// value.
func (o *partition) loadMissing(keepStored bool) error {
	if len(o.missing) == 0 {
		return nil
	}
	o.keys = o.keys[:0]
	for _, e := range o.missing {
		o.keys = append(o.keys, keyBytes(e.key))
	}
	var decodeErr error
	err := o.writer.store.Get(context.Background(), o.keys, func(i int, value []byte, found bool) {
		e := o.missing[i]
		if !found {
			return
		}
		if keepStored {
			e.stored = bytes.Clone(value)
		}
		if err := e.plan.DecodeRow(value, e.row); err != nil {
			if !errors.Is(err, tile.ErrLayout) {
				if decodeErr == nil {
					decodeErr = fmt.Errorf("row of view %s in the store: %w", e.plan.View.Name, err)
				}
				return
			}
			// A row of another definition or generation of the view (the
			// view was reset or rebuilt): as good as absent, so the row
			// starts afresh. Expected after every reset, so it is logged
			// once per view, not per row.
			o.rowsReset.Add(1)
			if f := o.writer.feedByName[e.plan.View.Name]; f != nil && !f.foreign.Swap(true) {
				o.writer.opts.Logger.Info("rows of an earlier definition or generation of the view are taken as absent and started afresh when written",
					"view", e.plan.View.Name, "generation", e.plan.Generation())
			}
			e.plan.Reset(e.row)
		}
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		for _, e := range o.missing {
			o.rows.del(e)
		}
		return fmt.Errorf("reading rows from the store: %w", err)
	}
	return nil
}

// wrote counts a write to the store that started at start.
func (o *partition) wrote(start time.Time) {
	o.writes.Add(1)
	if obs := o.writer.opts.WriteLatency; obs != nil {
		obs.Observe(time.Since(start).Seconds())
	}
}

// writeFailed counts and logs a failed write of the dirty rows, drops them
// from memory (the store still has their previous state, or part of the
// batch: they are read again when next touched) and returns the error to
// answer the commit's requests with.
func (o *partition) writeFailed(err error) error {
	o.writeErrors.Add(1)
	o.writer.opts.Logger.Error("writing rows failed", "partition", o.id, "rows", len(o.dirty), "err", err)
	for _, e := range o.dirty {
		o.rows.del(e)
	}
	return fmt.Errorf("writing %d rows to the store: %w", len(o.dirty), err)
}

// endCommit ends a commit that wrote rows: it forgets the dirty list,
// answers the waiting requests with err and evicts rows beyond the bound.
func (o *partition) endCommit(err error) {
	clear(o.dirty)
	o.dirty = o.dirty[:0]
	o.answer(err)
	o.evict()
}

// encodeDirty brings the dirty rows' clocks to now and encodes them into
// o.batch, in o.dirty's order.
func (o *partition) encodeDirty(now int64) {
	for _, e := range o.dirty {
		e.plan.Advance(e.row, now)
	}
	o.encodeRows(o.dirty, nil)
}

// sortByKey sorts rows by key: the store's memtable inserts a sorted batch
// close to where the previous key went, instead of searching from the top.
// It compares the keys' first 32 bytes as numbers, copied beside each row,
// and reads the keys themselves only to break ties: comparing the keys in
// the rows' memory missed the cache at almost every comparison.
func (o *partition) sortByKey(rows []*heldRow) {
	buf := o.sortBuf[:0]
	for _, e := range rows {
		k := sortKey{e: e}
		var b [8 * len(k.prefix)]byte
		copy(b[:], e.key)
		for j := range k.prefix {
			k.prefix[j] = binary.BigEndian.Uint64(b[8*j:])
		}
		buf = append(buf, k)
	}
	slices.SortFunc(buf, func(a, b sortKey) int {
		// Big-endian words of zero-padded keys order as the keys do, but
		// for keys equal in their first 32 bytes, or equal but for
		// trailing zero bytes there.
		for j := range a.prefix {
			if c := cmp.Compare(a.prefix[j], b.prefix[j]); c != 0 {
				return c
			}
		}
		return strings.Compare(a.e.key, b.e.key)
	})
	for i := range buf {
		rows[i] = buf[i].e
	}
	clear(buf)
	o.sortBuf = buf[:0]
}

type sortKey struct {
	prefix [4]uint64
	e      *heldRow
}

// encodeRows encodes rows, in order, into o.batch (their values back to
// back in o.buf), leaving out those skip reports.
func (o *partition) encodeRows(rows []*heldRow, skip func(e *heldRow) bool) {
	o.batch = o.batch[:0]
	o.buf = o.buf[:0]
	for _, e := range rows {
		if skip != nil && skip(e) {
			continue
		}
		from := len(o.buf)
		o.buf = e.plan.AppendRow(o.buf, e.row)
		o.batch = append(o.batch, store.KV{Key: keyBytes(e.key), Value: o.buf[from:len(o.buf):len(o.buf)]})
	}
	// An append may have moved o.buf after a value was sliced from it.
	at := 0
	for i := range o.batch {
		n := len(o.batch[i].Value)
		o.batch[i].Value = o.buf[at : at+n : at+n]
		at += n
	}
}

// refold (conditional) reads the conflicting rows again and folds into them, in order,
// every event of the waiting requests that touches them. They become the
// dirty rows.
func (o *partition) refold(conflicts []*heldRow) error {
	clear(o.dirty)
	o.dirty = o.dirty[:0]
	redo := make(map[string]bool, len(conflicts))
	for _, e := range conflicts {
		o.rows.del(e)
		redo[e.key] = true
	}
	o.missing = o.missing[:0]
	for _, r := range o.waiting {
		for i := range r.ops {
			op := &r.ops[i]
			k := r.keys[op.from:op.to]
			if redo[string(k)] {
				op.row = o.rowOf(op, k)
			}
		}
	}
	if err := o.loadMissing(true); err != nil {
		return err
	}
	for _, r := range o.waiting {
		for i := range r.ops {
			op := &r.ops[i]
			if redo[string(r.keys[op.from:op.to])] {
				o.fold(op.row, op, r.now, false)
			}
		}
	}
	return nil
}

// evict forgets clean rows beyond MaxCachedRows, and a sixteenth more so
// that the next commits have room. Rows not yet written back stay, even
// beyond it: when there are no clean rows, evict does not look for them.
func (o *partition) evict() {
	limit := o.writer.opts.MaxCachedRows
	over := o.rows.len() - limit
	if over <= 0 {
		return
	}
	// Every dirty row is unsaved, or (writing through) written, by now.
	clean := o.rows.len() - len(o.unsaved)
	if n := min(over+limit/16, clean); n > 0 {
		o.rows.evict(n, func(e *heldRow) bool { return !e.dirty && !e.unsaved })
	}
}
