package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// Options configure a Spool. Dir, Archive and Project are required; the
// zero value of every other field selects its documented default.
type Options struct {
	// Dir is the journal's directory, on local disk; it is created if
	// missing. One process at a time may use it.
	Dir string
	// Archive receives the journal's events.
	Archive *archive.Archive
	// Project declares the sources whose events are journaled, and their
	// archive retention (definition.Source.ArchiveRetain).
	Project *definition.Project
	// SegmentBytes closes a segment once it holds this much. Default 32
	// MiB: the flusher holds a segment's events in memory, at about 250
	// bytes an event (some 80 MiB for a full segment).
	SegmentBytes int64
	// FlushInterval closes a segment holding events once it is this old,
	// so events reach the archive at most about this long after their
	// push. Default 1 minute.
	FlushInterval time.Duration
	// CompactFiles is how many files a date of a source may gather before
	// they are compacted into one; a date that has ended is compacted as
	// soon as it has two. Default 32.
	CompactFiles int
	// MaintainInterval is how often the flusher compacts the archive's
	// dates and applies retention. Default 10 minutes.
	MaintainInterval time.Duration
	// Now is the clock of retention and of segments' ages. Default
	// time.Now.
	Now func() time.Time
	// Logger receives the spool's log. Default: discard.
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 32 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Minute
	}
	if o.CompactFiles < 2 {
		o.CompactFiles = 32
	}
	if o.MaintainInterval <= 0 {
		o.MaintainInterval = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("spool: closed")

// Spool is the journal of one process. Its methods are safe for concurrent
// use.
type Spool struct {
	opts       Options
	pushStream string
	sources    map[string]*definition.Source
	schemas    map[string]schema

	mu       sync.Mutex // guards the fields below
	names    map[uint64]string
	hi       map[string]uint64 // per stream, the highest position journaled
	pushNext uint64
	failed   error

	sendMu sync.RWMutex // held to send on queue; Close takes it to close queue
	closed bool         // guarded by sendMu

	// Counters for Stats.
	eventsJournaled, bytesJournaled  atomic.Int64
	segmentsArchived, eventsArchived atomic.Int64
	archiveFailures                  atomic.Int64
	lastArchived                     atomic.Int64 // Unix ms of the last segment archived

	queue   chan *pending
	rollReq chan chan uint64
	stopped chan struct{} // closed when the writer goroutine ends
	kill    chan struct{} // closed to stop the goroutines as a crash would (tests)

	// The flusher's side.
	fmu        sync.Mutex
	closedSegs []uint64      // closed, not yet archived, ascending
	archived   uint64        // every segment below it is archived
	progress   chan struct{} // closed and replaced when archived grows or a segment closes
	state      state         // as of the archived segments
	touched    map[dateKey]int
	flushStop  chan struct{}
	flushDone  chan struct{}
	flushErr   error // the last failure to archive, nil after a success
	writerSeg  uint64
	bufs       sync.Pool
}

// pending is one append waiting for the writer goroutine.
type pending struct {
	buf  *[]byte
	done chan error
}

// state is the journal's state file.
type state struct {
	ID       string `json:"id"`
	PushNext uint64 `json:"push_next"`
	// NextSegment numbers the next segment: a segment's number is part of
	// its archive batch ID, which must never be reused.
	NextSegment uint64            `json:"next_segment"`
	Streams     map[string]uint64 `json:"streams"`
}

type dateKey struct {
	source string
	date   string
}

const (
	stateFile = "state.json"
	segPrefix = "seg-"
	segSuffix = ".log"
)

func segName(seq uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, seq, segSuffix) }

// Open opens (or creates) the journal in opts.Dir, archives what earlier
// runs left in it — so that on return every event any earlier run
// acknowledged is in the archive — and starts the journal's writer and
// flusher.
func Open(opts Options) (*Spool, error) {
	opts.fill()
	if opts.Dir == "" || opts.Archive == nil || opts.Project == nil {
		return nil, errors.New("spool: Options needs Dir, Archive and Project")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("archive journal: %w", err)
	}
	s := &Spool{
		opts: opts, sources: map[string]*definition.Source{}, schemas: map[string]schema{},
		names: map[uint64]string{}, hi: map[string]uint64{},
		queue: make(chan *pending, 1024), rollReq: make(chan chan uint64), stopped: make(chan struct{}), kill: make(chan struct{}),
		progress: make(chan struct{}), touched: map[dateKey]int{},
		flushStop: make(chan struct{}), flushDone: make(chan struct{}),
	}
	for _, src := range opts.Project.Sources {
		s.sources[src.Name] = src
		s.schemas[src.Name] = schemaOf(src)
	}
	if err := s.readState(); err != nil {
		return nil, err
	}
	s.pushStream = "push/" + s.state.ID
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	for i, seq := range segs {
		if err := s.recoverSegment(seq, i == len(segs)-1); err != nil {
			return nil, err
		}
	}
	// Archive what the segments hold before anything new is journaled;
	// the state then counts it for deduplication.
	for _, seq := range segs {
		if err := s.archiveSegment(context.Background(), seq); err != nil {
			return nil, fmt.Errorf("archiving the events the journal in %s kept from the last run: %w (the events stay in the journal; fix the archive and start again)", opts.Dir, err)
		}
	}
	s.hi = maps(s.state.Streams)
	s.pushNext = s.state.PushNext
	s.writerSeg = s.state.NextSegment
	if len(segs) > 0 {
		opts.Logger.Info("archived the journal of the last run", "segments", len(segs), "dir", opts.Dir)
	}
	s.archived = s.writerSeg
	go s.writeLoop()
	go s.flushLoop()
	return s, nil
}

func maps(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ID returns the journal's identity: pushed events are archived with the
// origin stream "push/<ID>".
func (s *Spool) ID() string { return s.state.ID }

func (s *Spool) readState() error {
	data, err := os.ReadFile(filepath.Join(s.opts.Dir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		s.state = state{ID: hex.EncodeToString(b[:]), Streams: map[string]uint64{}}
		return s.writeState()
	case err != nil:
		return fmt.Errorf("archive journal: %w", err)
	}
	if err := json.Unmarshal(data, &s.state); err != nil || s.state.ID == "" {
		return fmt.Errorf("archive journal: %s is not a journal state file (%v): restore it, or move the directory aside to start a new journal", filepath.Join(s.opts.Dir, stateFile), err)
	}
	if s.state.Streams == nil {
		s.state.Streams = map[string]uint64{}
	}
	return nil
}

// writeState replaces the state file atomically.
func (s *Spool) writeState() error {
	data, err := json.Marshal(s.state)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.opts.Dir, ".tmp-"+stateFile)
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.opts.Dir, stateFile))
	}
	if err == nil {
		err = syncDir(s.opts.Dir)
	}
	if err != nil {
		return fmt.Errorf("archive journal: writing its state: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// segments lists the journal's segment numbers, ascending.
func (s *Spool) segments() ([]uint64, error) {
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("archive journal: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, segPrefix) || !strings.HasSuffix(n, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, segPrefix), segSuffix), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, seq)
	}
	slices.Sort(out)
	return out, nil
}

// recoverSegment checks a segment left by an earlier run. The newest may
// end in a torn record, never acknowledged: it is cut off. Any other damage
// stops the start, as the segment may hold acknowledged events.
func (s *Spool) recoverSegment(seq uint64, newest bool) error {
	path := filepath.Join(s.opts.Dir, segName(seq))
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("archive journal: %w", err)
	}
	good := 0
	for b := data; len(b) > 0; {
		payload, rest, err := nextRecord(b)
		if err == nil {
			_, err = decodeRecord(payload, s.schemaOf)
		}
		if err != nil {
			if newest && errors.Is(err, errTorn) {
				s.opts.Logger.Warn("cut off the journal's last record, written only in part when the process stopped (it was never acknowledged)",
					"segment", path, "at", good, "bytes", len(data)-good)
				if err := os.Truncate(path, int64(good)); err != nil {
					return fmt.Errorf("archive journal: %w", err)
				}
				break
			}
			return fmt.Errorf("archive journal: %s at byte %d: %w: move the file aside to start without the events it holds", path, good, err)
		}
		good += len(b) - len(rest)
		b = rest
	}
	return nil
}

func (s *Spool) schemaOf(source string) (schema, bool) {
	sc, ok := s.schemas[source]
	return sc, ok
}

// NameStream names the stream whose events carry event.Origin.Stream id
// (package stream's StreamID of the name); the archive records the name.
// Events of an unnamed stream are archived as "stream-<id in hex>".
func (s *Spool) NameStream(id uint64, name string) {
	s.mu.Lock()
	s.names[id] = name
	s.mu.Unlock()
}

// Append journals events of src, accepted at arrival (Unix ms), and
// returns a function that waits until they are durable. Events of a stream
// at or below the highest position journaled for it are passed over. The
// events must not change until the wait returns.
func (s *Spool) Append(src *definition.Source, arrival int64, events []event.Event) (wait func() error) {
	if len(events) == 0 {
		return func() error { return nil }
	}
	streamOf := make([]int, len(events))
	pos := make([]uint64, len(events))
	streams := []string{s.pushStream}
	s.mu.Lock()
	if err := s.failed; err != nil {
		s.mu.Unlock()
		return func() error { return err }
	}
	kept := 0
	var lastID uint64
	lastIdx := -1
	for i := range events {
		o := events[i].Origin
		if o.Stream == 0 {
			streamOf[i], pos[i] = 0, s.pushNext
			s.pushNext++
			kept++
			continue
		}
		if o.Stream != lastID || lastIdx < 0 {
			name, ok := s.names[o.Stream]
			if !ok {
				name = fmt.Sprintf("stream-%016x", o.Stream)
			}
			lastID = o.Stream
			lastIdx = slices.Index(streams, name)
			if lastIdx < 0 {
				streams = append(streams, name)
				lastIdx = len(streams) - 1
			}
		}
		name := streams[lastIdx]
		if h, ok := s.hi[name]; ok && o.Offset <= h {
			streamOf[i] = -1
			continue
		}
		s.hi[name] = o.Offset
		streamOf[i], pos[i] = lastIdx, o.Offset
		kept++
	}
	s.mu.Unlock()
	if kept == 0 {
		return func() error { return nil }
	}
	s.eventsJournaled.Add(int64(kept))
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = appendRecord((*bp)[:0], src.Name, s.schemas[src.Name].hash, arrival, streams, events, streamOf, pos)
	p := &pending{buf: bp, done: make(chan error, 1)}
	s.sendMu.RLock()
	if s.closed {
		s.sendMu.RUnlock()
		s.bufs.Put(bp)
		return func() error { return ErrClosed }
	}
	s.queue <- p
	s.sendMu.RUnlock()
	return func() error {
		err := <-p.done
		s.bufs.Put(p.buf)
		return err
	}
}

// Stats are the journal's counters since Open.
type Stats struct {
	// EventsJournaled and BytesJournaled count what appends handed the
	// journal (bytes: those written and synced).
	EventsJournaled, BytesJournaled int64
	// SegmentsArchived and EventsArchived count what reached the archive;
	// SegmentsPending is the closed segments waiting for it.
	SegmentsArchived, EventsArchived, SegmentsPending int64
	// ArchiveFailures counts failed attempts to archive a segment (each is
	// retried).
	ArchiveFailures int64
	// LastArchived is when a segment was last archived; zero before the
	// first.
	LastArchived time.Time
}

// Stats returns the journal's counters.
func (s *Spool) Stats() Stats {
	st := Stats{
		EventsJournaled: s.eventsJournaled.Load(), BytesJournaled: s.bytesJournaled.Load(),
		SegmentsArchived: s.segmentsArchived.Load(), EventsArchived: s.eventsArchived.Load(),
		ArchiveFailures: s.archiveFailures.Load(),
	}
	if ms := s.lastArchived.Load(); ms != 0 {
		st.LastArchived = time.UnixMilli(ms)
	}
	s.fmu.Lock()
	st.SegmentsPending = int64(len(s.closedSegs))
	s.fmu.Unlock()
	return st
}

// Err returns the failure that makes the journal refuse appends (a write
// or sync that failed), or nil.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// fail makes every later append refuse with err.
func (s *Spool) fail(err error) {
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
}

// writeLoop appends queued records to the newest segment, one write and
// one fsync for all that are waiting, and closes segments.
func (s *Spool) writeLoop() {
	defer close(s.stopped)
	var (
		f       *os.File
		size    int64
		opened  time.Time
		wbuf    []byte
		batch   []*pending
		werr    error
		tick    = time.NewTicker(min(s.opts.FlushInterval/4, time.Second))
		nowTime = s.opts.Now
	)
	defer tick.Stop()
	roll := func() {
		if f == nil {
			return
		}
		if err := f.Close(); err != nil && werr == nil {
			werr = err
			s.fail(fmt.Errorf("archive journal: %w", err))
		}
		f = nil
		s.segmentClosed(s.writerSeg)
		s.writerSeg++
		size = 0
	}
	for {
		select {
		case p, ok := <-s.queue:
			if !ok {
				roll()
				return
			}
			batch = append(batch[:0], p)
		drain:
			for len(batch) < 1024 {
				select {
				case p, ok := <-s.queue:
					if !ok {
						break drain
					}
					batch = append(batch, p)
				default:
					break drain
				}
			}
			wbuf = wbuf[:0]
			for _, p := range batch {
				wbuf = append(wbuf, *p.buf...)
			}
			err := werr
			if err == nil && f == nil {
				f, err = os.OpenFile(filepath.Join(s.opts.Dir, segName(s.writerSeg)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err == nil {
					err = syncDir(s.opts.Dir)
				}
				opened = nowTime()
			}
			if err == nil {
				_, err = f.Write(wbuf)
			}
			if err == nil {
				err = f.Sync()
			}
			if err != nil && werr == nil {
				werr = fmt.Errorf("archive journal: %w (restart to recover what is on disk)", err)
				s.fail(werr)
			}
			if err != nil {
				err = werr
			}
			for _, p := range batch {
				p.done <- err
			}
			clear(batch)
			if err == nil {
				s.bytesJournaled.Add(int64(len(wbuf)))
			}
			size += int64(len(wbuf))
			if size >= s.opts.SegmentBytes {
				roll()
			}
		case <-tick.C:
			if f != nil && nowTime().Sub(opened) >= s.opts.FlushInterval {
				roll()
			}
		case reply := <-s.rollReq:
			roll()
			reply <- s.writerSeg
		case <-s.kill:
			if f != nil {
				f.Close()
			}
			return
		}
	}
}

// segmentClosed hands a closed segment to the flusher.
func (s *Spool) segmentClosed(seq uint64) {
	s.fmu.Lock()
	s.closedSegs = append(s.closedSegs, seq)
	close(s.progress)
	s.progress = make(chan struct{})
	s.fmu.Unlock()
}

// Flush closes the newest segment and waits until every event journaled
// before the call is in the archive, or ctx ends.
func (s *Spool) Flush(ctx context.Context) error {
	reply := make(chan uint64, 1)
	select {
	case s.rollReq <- reply:
	case <-s.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	upTo := <-reply
	for {
		s.fmu.Lock()
		done, err, ch := s.archived >= upTo, s.flushErr, s.progress
		s.fmu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		}
	}
}

// Close stops taking appends, closes the newest segment and waits (up to
// ctx) until the flusher has archived every segment. What it cannot archive
// stays in the journal for the next Open.
func (s *Spool) Close(ctx context.Context) error {
	s.sendMu.Lock()
	if s.closed {
		s.sendMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.sendMu.Unlock()
	<-s.stopped
	err := s.waitArchived(ctx)
	close(s.flushStop)
	<-s.flushDone
	return err
}

func (s *Spool) waitArchived(ctx context.Context) error {
	for {
		s.fmu.Lock()
		done, err, ch := len(s.closedSegs) == 0, s.flushErr, s.progress
		s.fmu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("archive journal: segments left to archive at the next start: %w (last error: %v)", ctx.Err(), err)
		}
	}
}
