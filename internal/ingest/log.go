package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Write-behind. On a store that can keep a log beside the rows
// (store.LogKeeper: the embedded store), a partition does not write its rows at every group
// commit. It appends the commit's events to its log in the store, synced,
// then folds them into its rows in memory, where readers find them (the
// overlay), and answers the requests; the rows are written to the store
// only at the next checkpoint, in the same atomic commit that deletes the
// log they now hold.
// So at any moment the store holds rows R and the log L of the events not
// in R, and R folded with L is the state every acknowledged push reached:
// after a crash, New replays L into R, writes the rows and deletes L in one
// commit, and starts from there. A hot row takes thousands of events
// between two checkpoints and is written once, and a commit costs one
// store key instead of one per row.

// writeBehind is the rowWriter that keeps the write path's event log in a
// store.LogKeeper and writes rows back at checkpoints.
type writeBehind struct {
	writer *Writer
	log    store.LogKeeper
}

func (*writeBehind) mode() string { return modeWriteBehind }

// start replays the log of the last run (recoverLog).
func (w *writeBehind) start() error {
	if err := w.recoverLog(); err != nil {
		return fmt.Errorf("ingest: replaying the event log of the last run: %w", err)
	}
	return nil
}

// apply loads r's rows and keeps r to fold once its events are in the log
// (commit): rows in the overlay hold nothing a crash could lose.
func (*writeBehind) apply(o *partition, r *request) {
	if err := o.loadRows(r, false); err != nil {
		r.done <- err
		return
	}
	o.waiting = append(o.waiting, r)
	o.queuedOps += len(r.ops)
}

// stop writes back what the partition holds. What it cannot write back
// stays in the log: the next start replays it.
func (w *writeBehind) stop(o *partition) error { return w.checkpoint(o, o.writer.Now(), true) }

// The log's keys: logPrefix, the partition as 2 big-endian bytes and the
// record's sequence number as 8. They begin with store.ReservedPrefix, as
// no row key does, so the log cannot meet a row.
var (
	logPrefix = []byte(store.ReservedPrefix + "kiln-log\x00")
	logEnd    = []byte(store.ReservedPrefix + "kiln-log\x01")
)

// logVersion is the first byte of every log record this build writes.
//
// Layout (integers are varints): the views of the project that wrote it
// (a count, then per view its name as a length and bytes, and its layout
// fingerprint as 4 little-endian bytes); then per request folded in the
// commit, its clock (zigzag Unix ms), its number of ops, and per op the
// index of its view in that list shifted left by one, its low bit set for
// an op of Writer.Replay (folded whatever the row's applied positions
// say), the length of its event and the event (tile.Plan.AppendEvent).
// Naming the views lets a run whose project changed replay the log: events
// of a view that is gone, or whose definition or generation changed (and
// whose rows start afresh), are passed over.
//
// Version 1 records, whose ops hold the bare view index, are still read.
const logVersion = 2

func logKey(dst []byte, part int, seq uint64) []byte {
	dst = append(dst, logPrefix...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(part))
	return binary.BigEndian.AppendUint64(dst, seq)
}

// partitionLog is the part of the log one partition writes.
func partitionLog(part int) store.Range {
	return store.Range{Start: logKey(nil, part, 0), End: logKey(nil, part+1, 0)[:len(logPrefix)+2]}
}

// errLogRecord is wrapped by the errors of decodeRecord.
var errLogRecord = errors.New("corrupt event log record")

// appendLogHeader appends the views part of a log record.
func (p *Writer) appendLogHeader(dst []byte) []byte {
	dst = append(dst, logVersion)
	dst = binary.AppendUvarint(dst, uint64(len(p.feedList)))
	for _, f := range p.feedList {
		dst = binary.AppendUvarint(dst, uint64(len(f.view.Name)))
		dst = append(dst, f.view.Name...)
		dst = binary.LittleEndian.AppendUint32(dst, f.plan.Fingerprint)
	}
	return dst
}

// appendRecord appends the log record of the requests.
func (p *Writer) appendRecord(dst []byte, reqs []*request) []byte {
	dst = append(dst, p.logHeader...)
	for _, r := range reqs {
		dst = binary.AppendVarint(dst, r.now)
		dst = binary.AppendUvarint(dst, uint64(len(r.ops)))
		for i := range r.ops {
			op := &r.ops[i]
			vi := uint64(op.feed.index) << 1
			if op.replay {
				vi |= 1
			}
			dst = binary.AppendUvarint(dst, vi)
			// The event's length, as one byte when it fits, which is the
			// rule; else the event is moved to make room.
			at := len(dst)
			dst = append(dst, 0)
			dst = op.feed.plan.AppendEvent(dst, op.ev)
			if n := len(dst) - at - 1; n < 0x80 {
				dst[at] = byte(n)
			} else {
				var lb [binary.MaxVarintLen64]byte
				w := binary.PutUvarint(lb[:], uint64(n))
				dst = append(dst, lb[:w-1]...)
				copy(dst[at+w:], dst[at+1:at+1+n])
				copy(dst[at:], lb[:w])
			}
		}
	}
	return dst
}

// decodeRecord decodes a log record into one request per partition its
// ops route to (nil for the others), as Push (or Replay) would have made
// them, and counts the ops it passed over (views gone, redefined or of
// another generation). It refuses
// anything appendRecord did not write with an error wrapping errLogRecord,
// and never panics.
func (p *Writer) decodeRecord(data []byte) (reqs []*request, skipped int, err error) {
	fail := func(what string) ([]*request, int, error) {
		return nil, 0, fmt.Errorf("%w: %s", errLogRecord, what)
	}
	if len(data) == 0 || (data[0] != 1 && data[0] != logVersion) {
		return fail("unknown version")
	}
	version := data[0]
	data = data[1:]
	nviews, n := binary.Uvarint(data)
	if n <= 0 || nviews > uint64(len(data)) {
		return fail("bad view count")
	}
	data = data[n:]
	feeds := make([]*feed, nviews) // nil: pass the view's ops over
	for i := range feeds {
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) || len(data)-n-int(l) < 4 {
			return fail("bad view name")
		}
		name := string(data[n : n+int(l)])
		fp := binary.LittleEndian.Uint32(data[n+int(l):])
		data = data[n+int(l)+4:]
		if f := p.feedByName[name]; f != nil && f.plan.Fingerprint == fp {
			feeds[i] = f
		}
	}
	reqs = make([]*request, len(p.partitions))
	var key []byte
	for len(data) > 0 {
		now, n := binary.Varint(data)
		if n <= 0 {
			return fail("bad clock")
		}
		data = data[n:]
		nops, n := binary.Uvarint(data)
		if n <= 0 || nops > uint64(len(data)) {
			return fail("bad op count")
		}
		data = data[n:]
		evs := make([]event.Event, nops)
		group := make([]*request, len(p.partitions))
		for i := range evs {
			vi, n := binary.Uvarint(data)
			replay := false
			if version >= 2 {
				replay = vi&1 == 1
				vi >>= 1
			}
			if n <= 0 || vi >= uint64(len(feeds)) {
				return fail("bad view index")
			}
			data = data[n:]
			l, n := binary.Uvarint(data)
			if n <= 0 || l > uint64(len(data)-n) {
				return fail("bad event length")
			}
			evb := data[n : n+int(l)]
			data = data[n+int(l):]
			f := feeds[vi]
			if f == nil {
				skipped++
				continue
			}
			rest, err := f.plan.DecodeEvent(evb, &evs[i])
			if err != nil {
				return nil, 0, fmt.Errorf("%w: %w", errLogRecord, err)
			}
			if len(rest) != 0 {
				return fail("bytes after an event")
			}
			key = appendRowKey(key[:0], f, &evs[i])
			part, h := p.route(key)
			if group[part] == nil {
				group[part] = &request{now: now}
			}
			group[part].add(f, key, h, &evs[i], replay)
		}
		for i, g := range group {
			if g == nil {
				continue
			}
			if reqs[i] == nil {
				reqs[i] = g
				continue
			}
			// A record holds several requests of one partition, each with
			// its own clock: keep them apart.
			reqs[i].next = append(reqs[i].next, g)
		}
	}
	return reqs, skipped, nil
}

// overlay holds the rows a partition has committed since its last
// checkpoint, by row key: readers find them here before the store. The
// partition adds and removes rows under the lock; readers look them up under
// the read lock and encode a row under the row's own lock (heldRow.mu).
type overlay struct {
	mu   sync.RWMutex
	rows rowMap // exactly the rows in the partition's unsaved
}

// get encodes the overlay's row of key into *buf and calls fn with it, and
// reports whether the overlay has the row.
func (ov *overlay) get(key []byte, h uint64, i int, fn func(int, []byte, bool), buf *[]byte) bool {
	ov.mu.RLock()
	e := ov.rows.get(h, key)
	ov.mu.RUnlock()
	if e == nil {
		return false
	}
	// The row may have left the overlay since (a checkpoint wrote it to the
	// store): it is still the partition's latest, and its lock still keeps
	// the partition out while it is encoded.
	e.mu.Lock()
	*buf = e.plan.AppendRow((*buf)[:0], e.row)
	e.mu.Unlock()
	fn(i, *buf, true)
	return true
}

// get reads each row from the overlay of its partition, and the others
// from the store.
func (w *writeBehind) get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	p := w.writer
	var missIdx []int
	var missKeys [][]byte
	var buf []byte
	for i, k := range keys {
		part, h := p.route(k)
		if !p.partitions[part].overlay.get(k, h, i, fn, &buf) {
			missIdx = append(missIdx, i)
			missKeys = append(missKeys, k)
		}
	}
	if len(missKeys) == 0 {
		return nil
	}
	return p.store.Get(ctx, missKeys, func(j int, value []byte, found bool) { fn(missIdx[j], value, found) })
}

// commit appends the waiting requests' events to the log, then folds them
// into their rows, puts the rows in the overlay and answers the requests;
// it checkpoints when one is due. Rows change only once their events are
// durable, so a failed append leaves nothing to undo.
func (w *writeBehind) commit(o *partition) {
	now := o.waiting[len(o.waiting)-1].now
	o.rec = o.writer.appendRecord(o.rec[:0], o.waiting)
	o.seq++ // even if the append fails: it may have been written
	o.key = logKey(o.key[:0], o.id, o.seq)
	start := time.Now()
	err := w.log.Apply(context.Background(), []store.KV{{Key: o.key, Value: o.rec}}, store.Range{}, true)
	o.wrote(start)
	o.queuedOps = 0
	if err != nil {
		o.writeErrors.Add(1)
		o.writer.opts.Logger.Error("appending to the event log failed", "partition", o.id, "err", err)
		o.answer(fmt.Errorf("appending %d bytes to the event log: %w", len(o.rec), err))
		return
	}
	o.logBytes += len(o.rec)
	o.foldWaiting()
	o.commitRows()
	o.answer(nil)
	opts := &o.writer.opts
	if o.lastCheckpoint == 0 {
		// The partitions' checkpoints by time are spread over the
		// interval, not taken together: each writes back its rows in one
		// commit, which takes the CPUs for a while (tens of milliseconds
		// a minute into a live stream), and reads wait behind all of them
		// at once otherwise.
		o.lastCheckpoint = now - opts.CheckpointInterval.Milliseconds()*int64(o.id)/int64(len(o.writer.partitions))
	}
	if len(o.unsaved) >= opts.CheckpointRows || o.logBytes >= opts.CheckpointLogBytes ||
		now-o.lastCheckpoint >= opts.CheckpointInterval.Milliseconds() {
		w.checkpoint(o, now, false)
	}
	o.evict()
}

// commitRows puts the dirty rows in the overlay, as unsaved, and tells the
// read cache: rows it holds (Options.Changed) are encoded and handed to
// AfterWrite. No other row is encoded before the checkpoint.
func (o *partition) commitRows() {
	ov := &o.overlay
	ov.mu.Lock()
	for _, e := range o.dirty {
		if !e.unsaved {
			e.unsaved = true
			o.unsaved = append(o.unsaved, e)
			ov.rows.put(e)
		}
	}
	ov.mu.Unlock()
	if after := o.writer.opts.AfterWrite; after != nil {
		var skip func(e *heldRow) bool
		if changed := o.writer.opts.Changed; changed != nil {
			skip = func(e *heldRow) bool { return !changed(keyBytes(e.key), e.hash) }
		}
		o.encodeRows(o.dirty, skip)
		if len(o.batch) > 0 {
			after(o.batch, nil)
		}
	}
	for _, e := range o.dirty {
		e.dirty = false
	}
	clear(o.dirty)
	o.dirty = o.dirty[:0]
}

// answer answers every waiting request with err.
func (o *partition) answer(err error) {
	for _, r := range o.waiting {
		r.done <- err
	}
	clear(o.waiting)
	o.waiting = o.waiting[:0]
}

// checkpoint writes the rows committed since the last checkpoint and
// deletes the partition's log, in one commit, then takes the rows out of
// the overlay. A failure leaves all of it as it was, to be tried again at
// the next checkpoint.
func (w *writeBehind) checkpoint(o *partition, now int64, sync bool) error {
	if len(o.unsaved) == 0 && o.logBytes == 0 {
		return nil
	}
	// Only the partition changes rows, so it reads them without their locks.
	o.sortByKey(o.unsaved)
	o.encodeRows(o.unsaved, nil)
	start := time.Now()
	err := w.log.Apply(context.Background(), o.batch, partitionLog(o.id), sync)
	o.wrote(start)
	if err != nil {
		o.writeErrors.Add(1)
		o.writer.opts.Logger.Error("writing rows back to the store failed; the event log keeps them", "partition", o.id, "rows", len(o.unsaved), "err", err)
		return fmt.Errorf("writing %d rows back to the store: %w", len(o.unsaved), err)
	}
	o.rowsWritten.Add(int64(len(o.batch)))
	o.checkpoints.Add(1)
	o.overlay.mu.Lock()
	o.overlay.rows.clear() // it held the unsaved rows, and only them
	o.overlay.mu.Unlock()
	for _, e := range o.unsaved {
		e.unsaved = false
	}
	clear(o.unsaved)
	o.unsaved = o.unsaved[:0]
	o.logBytes = 0
	o.lastCheckpoint = now
	return nil
}

// applyLogged folds a request read back from the log, and the requests
// chained to it, without answering them.
func (o *partition) applyLogged(r *request) error {
	for _, r := range append([]*request{r}, r.next...) {
		if err := o.loadRows(r, false); err != nil {
			return err
		}
		o.foldRequest(r, true)
	}
	return nil
}

// recoverLog folds the whole log into the rows, then writes them and
// deletes the log in one commit, before any partition starts. The log may
// have been written with another number of partitions: its ops are routed
// again.
func (w *writeBehind) recoverLog() error {
	p := w.writer
	all := store.Range{Start: logPrefix, End: logEnd}
	// Read the records first: folding reads rows from the store, which
	// Scan's callback must not.
	var recs [][]byte
	err := w.log.Scan(context.Background(), all, func(key, value []byte) error {
		recs = append(recs, append([]byte(nil), value...))
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the event log: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	var last int64
	skipped := 0
	for i, rec := range recs {
		reqs, n, err := p.decodeRecord(rec)
		if err != nil {
			return fmt.Errorf("event log record %d of %d: %w (the data directory is damaged: restore it from a backup)", i+1, len(recs), err)
		}
		skipped += n
		for part, r := range reqs {
			if r == nil {
				continue
			}
			for _, q := range r.next {
				last = max(last, q.now)
			}
			last = max(last, r.now)
			if err := p.partitions[part].applyLogged(r); err != nil {
				return err
			}
		}
		p.recovered.Add(1)
	}
	if skipped > 0 {
		p.opts.Logger.Warn("passed over logged events of views that are gone or whose definition changed (their rows start afresh)", "ops", skipped)
	}
	var batch []store.KV
	for _, o := range p.partitions {
		o.encodeDirty(last)
		batch = append(batch, o.batch...)
	}
	if err := w.log.Apply(context.Background(), batch, all, true); err != nil {
		return fmt.Errorf("writing the rows of the event log: %w", err)
	}
	for _, o := range p.partitions {
		o.rowsWritten.Add(int64(len(o.dirty)))
		for _, e := range o.dirty {
			e.dirty = false
		}
		clear(o.dirty)
		o.dirty = o.dirty[:0]
	}
	p.opts.Logger.Info("replayed the event log", "records", p.recovered.Load(), "rows", len(batch))
	return nil
}

// warmGroup is how many ops foldWaiting warms up at once.
const warmGroup = 32

// foldWaiting folds the waiting requests' ops, in order, a group at a time:
// the group's held rows, then its events and rows (warmRows), are loaded in
// passes before any is folded, so their cache misses overlap.
func (o *partition) foldWaiting() {
	var rows [warmGroup]*tile.Row
	var ops [warmGroup]*op
	var nows [warmGroup]int64
	n := 0
	run := func() {
		// The events were decoded on other goroutines, often on the other
		// core, and have waited in the queue since: load their fields too.
		for _, op := range ops[:n] {
			for j := range op.ev.Fields {
				o.sink += uint64(op.ev.Fields[j].Kind)
			}
		}
		o.sink += warmRows(rows[:n])
		for i := range n {
			o.fold(ops[i].row, ops[i], nows[i], true)
		}
		n = 0
	}
	for _, r := range o.waiting {
		for i := range r.ops {
			op := &r.ops[i]
			rows[n], ops[n], nows[n] = op.row.row, op, r.now
			n++
			if n == warmGroup {
				run()
			}
		}
	}
	run()
}

// warmRows loads, for each row, the memory a fold into it reads first: the
// row and the newest tile of each level. It changes nothing. Folding rows
// one after the other waits on each row's cache misses in turn; warmRows
// issues the misses of a group of rows in passes whose loads do not depend
// on each other, so that the processor overlaps them. Its result only
// keeps the loads from being optimised away.
func warmRows(rows []*tile.Row) (sink uint64) {
	for _, r := range rows {
		// The row's own fields, which may span several cache lines.
		tiles, ends, lasts := r.Parts()
		sink += uint64(r.Clock) + uint64(len(tiles)) + uint64(len(ends)) +
			uint64(len(lasts)) + uint64(len(r.Positions()))
	}
	for _, r := range rows {
		// A level's newest tile is first; most tiles are at most 8 floats,
		// so its first and eighth float cover it.
		tiles, ends, lasts := r.Parts()
		lo := 0
		for _, e := range ends {
			if hi := int(e); hi > lo {
				sink += math.Float64bits(tiles[lo]) + math.Float64bits(tiles[min(lo+7, hi-1)])
				lo = hi
			}
		}
		for i := range lasts {
			sink += uint64(lasts[i].TS)
		}
	}
	return sink
}
