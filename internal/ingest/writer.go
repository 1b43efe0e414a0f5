// Package ingest owns the write path: it takes decoded, validated events
// (package eventjson decodes them), routes each (view, entity) row to the
// partition that owns it, and runs one goroutine per partition that folds
// events into its rows in memory and makes them durable in group-committed
// micro-batches, one of three ways chosen at start from what the store can
// do (rowWriter): writing the rows (write-through), writing each row over
// the value last seen (conditional: Redis), or appending the events to the
// partition's log and writing rows back at checkpoints (write-behind: the
// embedded store; log.go).
//
// Push blocks until every event of the call is durable (or refused): a push
// that returns nil survives a crash, and a read after it (Writer.Get, the
// read path's source of rows) sees it.
// The caller supplies the clock (Options.Now), so tests drive time.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Options configure a Writer. The zero value of each field selects its
// documented default.
type Options struct {
	// Partitions is the number of single-writer partitions (goroutines).
	// Default 4.
	Partitions int
	// MaxBatchRows is the most dirty rows a partition folds before it
	// writes them. A partition also writes whenever it has no more queued
	// work, so under light load each push is written at once and under
	// heavy load writes grow into batches. Default 4096.
	MaxBatchRows int
	// MaxCachedRows is how many rows a partition keeps decoded in memory
	// between writes; beyond it, written rows are forgotten (and read back
	// from the store when next touched). Default 65536.
	MaxCachedRows int
	// QueueDepth is how many requests may wait for a partition. Default 256.
	QueueDepth int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the writer's log. Default: discard.
	Logger *slog.Logger
	// AfterWrite, if set, is called by a partition after each commit with
	// the rows it changed and the commit's error, before any push in it is
	// answered; a read cache sets the rows (or forgets them on error) here.
	// Calls for one row come in commit order. It must not keep batch.
	AfterWrite func(batch []store.KV, err error)
	// WriteLatency, if set, observes how long each write to the store
	// took, in seconds: a commit's rows, an append to the event log, or a
	// checkpoint.
	WriteLatency Observer
	// Changed, if set, is told about each row a commit changed while the
	// writer writes behind (below), and reports whether the read cache
	// holds it: only those rows are encoded and handed to AfterWrite. It
	// must keep reads of the row that began before the call from filling
	// the cache (rowcache.Cache.ChangedHashed does both). hash is
	// store.KeyHash(key).
	Changed func(key []byte, hash uint64) bool

	// Archive, if set, keeps every pushed event: Push hands it the events
	// with the push's clock as their arrival, and answers only once both
	// the rows and Archive have made them durable.
	Archive Archiver

	// WriteThrough writes every commit's rows to the store even when the
	// store can keep the write path's log (the embedded store), where by
	// default a commit appends its events to the log and rows are written
	// back at checkpoints (see docs/ingestion.md).
	WriteThrough bool
	// A partition writing behind checkpoints (writes its rows back and
	// deletes its log) once it holds CheckpointRows rows not written back
	// (default 65536), once its log since the last checkpoint reaches
	// CheckpointLogBytes (default 32 MiB: the most a restart replays per
	// partition), or at its first commit CheckpointInterval (default 1m)
	// after the last, whichever comes first, and when the writer closes.
	CheckpointRows     int
	CheckpointLogBytes int
	CheckpointInterval time.Duration
}

func (o *Options) fill() {
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	if o.MaxBatchRows <= 0 {
		o.MaxBatchRows = 4096
	}
	if o.MaxCachedRows <= 0 {
		o.MaxCachedRows = 65536
	}
	if o.QueueDepth <= 0 {
		o.QueueDepth = 256
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckpointRows <= 0 {
		o.CheckpointRows = 65536
	}
	if o.CheckpointLogBytes <= 0 {
		o.CheckpointLogBytes = 32 << 20
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
}

// Archiver keeps the events the write path accepts (package spool's
// journal of the event archive).
type Archiver interface {
	// Append makes events of src, accepted at arrival (Unix ms), durable
	// and returns a function that waits until they are. The events do not
	// change until the wait returns.
	Append(src *definition.Source, arrival int64, events []event.Event) (wait func() error)
	// NameStream names the stream of the events whose
	// event.Origin.Stream is id.
	NameStream(id uint64, name string)
}

// ErrClosed is returned by Push after Close.
var ErrClosed = errors.New("ingest: writer closed")

// Result is the outcome of a push.
type Result struct {
	// Accepted counts events that reached at least one row (or all-time
	// feature).
	Accepted int `json:"accepted"`
	// DroppedLate counts events older than the retention of every view they
	// feed: no window can cover them any more.
	DroppedLate int `json:"dropped_late"`
	// LateByView counts, per view, the events it passed over because they
	// were older than its retention, whether or not another view took
	// them; views that passed over none are not in it. Nil when no view
	// passed over any.
	LateByView map[string]int `json:"late_by_view,omitempty"`
}

// Stats are cumulative counters of a writer.
type Stats struct {
	// WriteMode is how commits reach the store, chosen at start from what
	// the store can do and Options.WriteThrough: "write-through" (every
	// commit writes its rows), "conditional" (every commit writes its
	// rows, each over the value last seen: Redis) or "write-behind" (a
	// commit appends its events to a log, rows are written back at
	// checkpoints: the embedded store).
	WriteMode              string
	Accepted, DroppedLate  int64
	RowsWritten, Writes    int64
	WriteErrors, RowsReset int64
	// Replayed counts row updates passed over because the row had already
	// applied the streamed event (a replay after a restart or rebalance).
	Replayed int64
	// Conflicts counts rows another process changed between this one's
	// read and write, which were then read and folded again (Redis only).
	Conflicts int64
	// Checkpoints counts rows written back with the log deleted
	// (write-behind); Recovered counts log records replayed at start.
	Checkpoints, Recovered int64
	LateByView             map[string]int64
	// BySource counts each source's events pushed or streamed (not those
	// a rebuild replays).
	BySource map[string]SourceCounts
}

// Writer is the write path of one process: its partitions, each the single
// writer of its rows (Push), and the source of the rows they committed for
// the read path (Get), some of which may not be in the store yet. It is
// safe for concurrent use.
type Writer struct {
	opts     Options
	store    store.Store
	plans    map[*definition.View]*tile.Plan
	feeds    map[*definition.Source][]*feed
	feedList []*feed // every view's feed, by index
	// feedByName and logHeader serve the log (log.go).
	feedByName map[string]*feed
	logHeader  []byte
	partitions []*partition
	// rowWriter is how commits reach the store, chosen once by New.
	rowWriter rowWriter

	mu       sync.RWMutex // guards closed and sends on the partitions' queues
	closed   bool
	wg       sync.WaitGroup
	requests sync.Pool // of *request, answered and free for Push to reuse

	accepted, droppedLate atomic.Int64
	// bySource counts the events of each source pushed or streamed (not
	// replayed by a rebuild); made by New, read-only after.
	bySource  map[*definition.Source]*sourceCounts
	skipped   atomic.Int64
	lastNow   atomic.Int64
	recovered atomic.Int64
}

// Observer takes a measurement (a prometheus.Observer).
type Observer interface{ Observe(float64) }

// sourceCounts are the counters of one source's events.
type sourceCounts struct {
	accepted, late atomic.Int64
}

// SourceCounts are the events of one source the write path took.
type SourceCounts struct {
	Accepted, DroppedLate int64
}

// feed is one view a source feeds, with where its entity key lives.
type feed struct {
	view  *definition.View
	plan  *tile.Plan
	keys  []int // field indices of the entity key
	index int   // in Writer.feedList, and in the log
	late  atomic.Int64
	// foreign is set once a row of another layout or generation of the
	// view was met, so that it is logged once, not once per row.
	foreign atomic.Bool
}

// maxPartitions bounds Options.Partitions (the log numbers partitions in
// two bytes).
const maxPartitions = 4096

// New starts a writer writing the project's views to st. On a store that
// keeps the write path's log (the embedded store) it first replays what the
// log holds from the last run.
func New(p *definition.Project, plans map[*definition.View]*tile.Plan, st store.Store, opts Options) (*Writer, error) {
	opts.fill()
	if opts.Partitions > maxPartitions {
		return nil, fmt.Errorf("ingest: %d partitions; at most %d", opts.Partitions, maxPartitions)
	}
	w := &Writer{opts: opts, store: st, plans: plans, feeds: map[*definition.Source][]*feed{}, bySource: map[*definition.Source]*sourceCounts{}}
	for _, src := range p.Sources {
		w.bySource[src] = new(sourceCounts)
	}
	for i, v := range p.Views {
		f := &feed{view: v, plan: plans[v], index: i}
		if f.plan == nil {
			return nil, fmt.Errorf("ingest: no plan for view %s", v.Name)
		}
		for _, k := range v.Entity.Keys {
			i := v.Source.FieldIndex(k)
			if i < 0 {
				return nil, fmt.Errorf("ingest: view %s: key field %s is not in source %s", v.Name, k, v.Source.Name)
			}
			f.keys = append(f.keys, i)
		}
		w.feeds[v.Source] = append(w.feeds[v.Source], f)
		w.feedList = append(w.feedList, f)
	}
	w.feedByName = map[string]*feed{}
	for _, f := range w.feedList {
		w.feedByName[f.view.Name] = f
	}
	w.logHeader = w.appendLogHeader(nil)
	w.rowWriter = chooseRowWriter(w, st, opts)
	for i := range opts.Partitions {
		o := &partition{
			id: i, writer: w, in: make(chan *request, opts.QueueDepth),
			rows:    newRowMap(),
			overlay: overlay{rows: newRowMap()},
		}
		w.partitions = append(w.partitions, o)
	}
	if err := w.rowWriter.start(); err != nil {
		return nil, err
	}
	opts.Logger.Info("write path started", "mode", w.rowWriter.mode(), "partitions", opts.Partitions)
	for _, o := range w.partitions {
		w.wg.Add(1)
		go o.run()
	}
	return w, nil
}

// route returns the partition of a row key and the key's hash, by which
// the partition finds the row in memory and the read cache its entry.
func (p *Writer) route(key []byte) (part int, hash uint64) {
	hash = store.KeyHash(key)
	return int(hash % uint64(len(p.partitions))), hash
}

// Now returns the writer's clock in Unix milliseconds. It never goes
// back, even if the wall clock does.
func (p *Writer) Now() int64 {
	now := p.opts.Now().UnixMilli()
	for {
		last := p.lastNow.Load()
		if now <= last {
			return last
		}
		if p.lastNow.CompareAndSwap(last, now) {
			return now
		}
	}
}

// request is the part of one push that one partition owns.
type request struct {
	ops  []op
	keys []byte // the ops' row keys, back to back
	now  int64
	done chan error
	next []*request // more requests of the partition read from one log record
}

// newRequest returns an empty request for Push, with room for n ops and
// keys of keyBytes: one a Push freed, or a new one.
func (p *Writer) newRequest(now int64, n, keyBytes int) *request {
	r, _ := p.requests.Get().(*request)
	if r == nil {
		r = &request{done: make(chan error, 1)}
	}
	r.now = now
	r.ops = slices.Grow(r.ops[:0], n)
	r.keys = slices.Grow(r.keys[:0], keyBytes)
	return r
}

// freeRequest gives an answered request of Push back for reuse, holding
// no pointer to the push's events or rows.
func (p *Writer) freeRequest(r *request) {
	clear(r.ops)
	r.ops = r.ops[:0]
	p.requests.Put(r)
}

// add appends an op folding ev into the row of f under key, whose hash
// is h; with replay, whether or not the row applied ev's origin (Replay).
func (r *request) add(f *feed, key []byte, h uint64, ev *event.Event, replay bool) {
	r.addAt(f, key, h, ev, replay, 0)
}

// addAt is add for the event at index i of a push.
func (r *request) addAt(f *feed, key []byte, h uint64, ev *event.Event, replay bool, i int) {
	from := len(r.keys)
	r.keys = append(r.keys, key...)
	r.ops = append(r.ops, op{feed: f, from: from, to: len(r.keys), hash: h, ev: ev, replay: replay, event: int32(i)})
}

type op struct {
	feed     *feed
	from, to int    // the row key: keys[from:to]
	hash     uint64 // store.KeyHash of the row key
	ev       *event.Event
	row      *heldRow // set by the partition (loadRows)
	// replay: fold even if the row has applied ev's origin (Writer.Replay).
	replay bool
	// late is set by the partition when the row passed over the event as
	// older than its tiles: the row's clock, moved by events from up to
	// the source's skew ahead, can be later than the push's.
	late bool
	// event is ev's index in the push.
	event int32
}

// Push folds events of src (validated, e.g. by eventjson.Decoder.DecodePush) into
// their rows and returns once they are durable in the store. The events
// must not be modified until Push returns. On error, some partitions may
// have written their part: pushing the same events again can count those
// twice (see docs/api.md).
func (p *Writer) Push(ctx context.Context, src *definition.Source, events []event.Event) (Result, error) {
	return p.push(ctx, src, p.feeds[src], events, false)
}

// Replay folds events of v's source into the rows of v alone, as Push
// does, for a rebuild of the view from the event archive. Unlike Push it
// folds a streamed event even when the row has applied its stream past the
// event's offset (tile.Row.Applied): the archive is in event-time order,
// not offset order. It still records the offsets (tile.Row.MarkApplied
// keeps the greatest), so a stream that delivers the events again after
// the rebuild is passed over. The caller must replay each event once, and
// only events the live write path will not fold: those it accepted before
// the view's rows started afresh.
func (p *Writer) Replay(ctx context.Context, v *definition.View, events []event.Event) (Result, error) {
	f := p.feedByName[v.Name]
	if f == nil || f.view != v {
		return Result{}, fmt.Errorf("ingest: view %s is not written by this writer", v.Name)
	}
	return p.push(ctx, v.Source, []*feed{f}, events, true)
}

// push folds events of src into the rows of feeds; with replay, ignoring
// the rows' applied positions, and not archiving them (Replay: they come
// from the archive).
func (p *Writer) push(ctx context.Context, src *definition.Source, feeds []*feed, events []event.Event, replay bool) (Result, error) {
	now := p.Now()
	reqs := make([]*request, len(p.partitions))
	var res Result
	var key []byte
	// The time below which an event is late for each feed's view.
	var lateBuf [8]int64
	late := lateBuf[:0]
	for _, f := range feeds {
		late = append(late, f.plan.LateBefore(now))
	}
	for i := range events {
		ev := &events[i]
		reached := false
		for fi := range feeds {
			f := feeds[fi]
			if ev.TS < late[fi] {
				if res.LateByView == nil {
					res.LateByView = make(map[string]int, len(feeds))
				}
				res.LateByView[f.view.Name]++
				continue
			}
			reached = true
			key = appendRowKey(key[:0], f, ev)
			part, h := p.route(key)
			r := reqs[part]
			if r == nil {
				// Sized for an even share of the push: growing the slices
				// of a large push op by op costs more than folding it.
				n := len(events)*len(feeds)/len(p.partitions)*5/4 + 4
				r = p.newRequest(now, n, n*len(key))
				reqs[part] = r
			}
			r.addAt(f, key, h, ev, replay, i)
		}
		if reached {
			res.Accepted++
		} else {
			res.DroppedLate++
		}
	}
	var firstErr error
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return Result{}, ErrClosed
	}
	// Every valid event is archived, late ones too: a definition with
	// longer windows may count them.
	var archived func() error
	if p.opts.Archive != nil && !replay {
		archived = p.opts.Archive.Append(src, now, events)
	}
	for i, r := range reqs {
		if r == nil {
			continue
		}
		select {
		case p.partitions[i].in <- r:
		case <-ctx.Done():
			reqs[i] = nil
			if firstErr == nil {
				firstErr = ctx.Err()
			}
		}
	}
	p.mu.RUnlock()
	for _, r := range reqs {
		// The partition answers every request it received. Waiting for it even
		// after ctx ends means no event is applied after Push returns.
		if r == nil {
			continue
		}
		if err := <-r.done; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		res.countFoldedLate(reqs, len(events))
	}
	for _, r := range reqs {
		if r != nil {
			// Answered: the partition holds it no more.
			p.freeRequest(r)
		}
	}
	if archived != nil {
		if err := archived(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return Result{}, firstErr
	}
	p.accepted.Add(int64(res.Accepted))
	p.droppedLate.Add(int64(res.DroppedLate))
	for _, f := range feeds {
		if n := res.LateByView[f.view.Name]; n > 0 {
			f.late.Add(int64(n))
		}
	}
	if c := p.bySource[src]; c != nil && !replay {
		c.accepted.Add(int64(res.Accepted))
		c.late.Add(int64(res.DroppedLate))
	}
	return res, nil
}

// countFoldedLate adds to res the events the rows of the answered requests
// passed over as late (op.late): to LateByView per view, and an event all
// of whose views passed it over moves from Accepted to DroppedLate. Events
// holds n events.
func (res *Result) countFoldedLate(reqs []*request, n int) {
	var ops []int32 // per event, its ops not passed over; made at the first late op
	for _, r := range reqs {
		if r == nil {
			continue
		}
		for i := range r.ops {
			if !r.ops[i].late {
				continue
			}
			if ops == nil {
				ops = make([]int32, n)
				for _, r := range reqs {
					if r != nil {
						for j := range r.ops {
							ops[r.ops[j].event]++
						}
					}
				}
			}
			if res.LateByView == nil {
				res.LateByView = make(map[string]int)
			}
			res.LateByView[r.ops[i].feed.view.Name]++
			if ops[r.ops[i].event]--; ops[r.ops[i].event] == 0 {
				res.Accepted--
				res.DroppedLate++
			}
		}
	}
}

// TooOld reports whether an event of src stamped ts (Unix ms) is older than
// the retention of every view src feeds, so that no window can cover it any
// more and Push would drop it. It is false for a source that feeds no view.
func (p *Writer) TooOld(src *definition.Source, ts int64) bool {
	now := p.Now()
	feeds := p.feeds[src]
	for _, f := range feeds {
		if !f.plan.Late(ts, now) {
			return false
		}
	}
	return len(feeds) > 0
}

func appendRowKey(dst []byte, f *feed, ev *event.Event) []byte {
	var buf [4]event.Value
	key := buf[:0]
	for _, k := range f.keys {
		key = append(key, ev.Fields[k])
	}
	return tile.AppendKey(dst, f.view.Name, key)
}

// NameStream names the stream of events whose event.Origin.Stream is id,
// for the archive. It does nothing without one.
func (p *Writer) NameStream(id uint64, name string) {
	if p.opts.Archive != nil {
		p.opts.Archive.NameStream(id, name)
	}
}

// Get reads rows as the write path has committed them: every row an
// acknowledged push changed, whether or not it is in the store yet. It has
// the store's contract (store.Store.Get) except that fn is not called in
// key order. The read path reads rows this way.
func (p *Writer) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return p.rowWriter.get(ctx, keys, fn)
}

// Stats returns the writer's counters.
func (p *Writer) Stats() Stats {
	s := Stats{WriteMode: p.rowWriter.mode(), Accepted: p.accepted.Load(), DroppedLate: p.droppedLate.Load(), Replayed: p.skipped.Load(),
		LateByView: map[string]int64{}, BySource: make(map[string]SourceCounts, len(p.bySource))}
	for src, c := range p.bySource {
		s.BySource[src.Name] = SourceCounts{Accepted: c.accepted.Load(), DroppedLate: c.late.Load()}
	}
	for _, fs := range p.feeds {
		for i := range fs {
			s.LateByView[fs[i].view.Name] += fs[i].late.Load()
		}
	}
	for _, o := range p.partitions {
		s.RowsWritten += o.rowsWritten.Load()
		s.Writes += o.writes.Load()
		s.WriteErrors += o.writeErrors.Load()
		s.RowsReset += o.rowsReset.Load()
		s.Conflicts += o.conflicts.Load()
		s.Checkpoints += o.checkpoints.Load()
	}
	s.Recovered = p.recovered.Load()
	return s
}

// Close stops accepting pushes, writes what the partitions hold (on the
// embedded store, a last checkpoint) and waits for them to stop. It does
// not close the store.
func (p *Writer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, o := range p.partitions {
		close(o.in)
	}
	p.mu.Unlock()
	p.wg.Wait()
	var errs []error
	for _, o := range p.partitions {
		if o.closeErr != nil {
			errs = append(errs, fmt.Errorf("ingest: partition %d: %w (its event log keeps the rows: the next start replays it)", o.id, o.closeErr))
		}
	}
	return errors.Join(errs...)
}
