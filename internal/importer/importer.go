// Package importer owns loading a source's history from files (Parquet,
// CSV, JSON lines; package eventfile reads them) into a project: every row
// is checked before any is applied — or, when asked, bad rows are set aside
// in a reject file with their reasons and the rest applied — and the events
// go through the write path into the archive and into the rows of the views
// whose windows can still cover them.
//
// Each event carries its place in its file as its origin: the stream
// "import/<hash of the file's content>" and its row number. The rows of the
// views and the archive's journal pass over what they hold already, so
// importing the same file twice, or again after an interrupted import,
// counts each row once.
package importer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventfile"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Pusher is where imported events go: the write path of a data directory
// (ingest.Writer) or a running server's push API.
type Pusher interface {
	// PushFrom pushes events of src read from the file whose origin stream
	// is stream; events[i] is at offset first+i there. It returns once
	// they are durable.
	PushFrom(ctx context.Context, src *definition.Source, stream string, first uint64, events []event.Event) (ingest.Result, error)
}

// Options configure an import.
type Options struct {
	Project *definition.Project
	// Plans are the project's tile plans, to count the rows an import
	// touches.
	Plans  map[*definition.View]*tile.Plan
	Source *definition.Source
	Files  []string
	// Reject, if set, is the path of a file that receives the bad rows
	// (one JSON object per line: file, row, problems); the good rows are
	// applied. Without it, one bad row stops the import before anything is
	// applied.
	Reject string
	// Now is the clock, Unix ms: event times are checked against it (future
	// skew), and late events are counted by it.
	Now int64
	// BatchEvents is the most events pushed at once. Default 50,000.
	BatchEvents int
	// MaxProblems is how many problems an error lists (all are counted).
	// Default 50.
	MaxProblems int
	// Progress, if set, is told how far the import is: each phase
	// ("checking", "importing") with done and total bytes over every file.
	Progress func(phase string, done, total int64)
}

// Summary is what an import did.
type Summary struct {
	Files int `json:"files"`
	// Rows counts the rows read; Rejected those set aside.
	Rows     int64 `json:"rows"`
	Rejected int64 `json:"rejected"`
	// Accepted counts events that reached a row of a view; DroppedLate
	// those too old for every view's windows (they are archived all the
	// same). Archived-only events of a source that feeds no view count in
	// neither.
	Accepted    int64 `json:"accepted"`
	DroppedLate int64 `json:"dropped_late"`
	// RowsTouched counts the distinct rows (view and entity) the accepted
	// events reached.
	RowsTouched int64   `json:"rows_touched"`
	Seconds     float64 `json:"seconds"`
}

// ProblemsError refuses an import: rows of the files are bad, and nothing
// was applied.
type ProblemsError struct {
	Problems []eventfile.Problem // the first Options.MaxProblems
	Count    int64               // all of them
	Rows     int64               // rows with a problem
}

func (e *ProblemsError) Error() string {
	msg := fmt.Sprintf("%d rows have problems (%d in all); nothing was imported", e.Rows, e.Count)
	for _, p := range e.Problems {
		msg += "\n  " + p.Error()
	}
	if int64(len(e.Problems)) < e.Count {
		msg += fmt.Sprintf("\n  … and %d more", e.Count-int64(len(e.Problems)))
	}
	return msg + "\nfix the rows, or give --reject FILE to import the good rows and write the bad ones there"
}

// file is one file of an import.
type file struct {
	path   string
	stream string // the origin stream of its events
	size   int64
}

// streamOf returns the origin stream of the events of a file with the
// given content hash (sha256).
func streamOf(sum []byte) string { return "import/" + hex.EncodeToString(sum[:16]) }

// Run imports opts.Files into p.
func Run(ctx context.Context, p Pusher, opts Options) (Summary, error) {
	start := time.Now()
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = 50_000
	}
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 50
	}
	if opts.Progress == nil {
		opts.Progress = func(string, int64, int64) {}
	}
	var sum Summary
	files := make([]file, 0, len(opts.Files))
	var total int64
	for _, path := range opts.Files {
		if _, err := eventfile.FormatOf(path); err != nil {
			return sum, err
		}
		f, err := hashFile(path)
		if err != nil {
			return sum, err
		}
		files = append(files, f)
		total += f.size
	}
	sum.Files = len(files)
	dec := eventjson.NewDecoder(opts.Project)
	rd := eventfile.Options{Now: opts.Now}

	if opts.Reject == "" {
		// Check every row before any is applied.
		perr := &ProblemsError{}
		var base int64
		for _, f := range files {
			rd.Progress = func(done, _ int64) { opts.Progress("checking", base+done, total) }
			err := eventfile.Read(ctx, f.path, dec, opts.Source, rd, func(row int, ev *event.Event, problems []eventfile.Problem) error {
				if len(problems) > 0 {
					perr.Rows++
					for _, pr := range problems {
						perr.Count++
						if len(perr.Problems) < opts.MaxProblems {
							perr.Problems = append(perr.Problems, pr)
						}
					}
				}
				return nil
			})
			if err != nil {
				return sum, err
			}
			base += f.size
		}
		if perr.Count > 0 {
			return sum, perr
		}
	}

	var reject *rejectFile
	if opts.Reject != "" {
		var err error
		if reject, err = createReject(opts.Reject); err != nil {
			return sum, err
		}
		defer reject.close()
	}
	// Reading the next batch overlaps pushing the last one.
	pl := startPipeline(ctx, p, opts.Source, newRowCounter(opts))
	defer pl.stop()
	var base int64
	for _, f := range files {
		rd.Progress = func(done, _ int64) { opts.Progress("importing", base+done, total) }
		b := batcher{pl: pl, stream: f.stream, max: opts.BatchEvents, cur: <-pl.free}
		err := eventfile.Read(ctx, f.path, dec, opts.Source, rd, func(row int, ev *event.Event, problems []eventfile.Problem) error {
			sum.Rows++
			if len(problems) > 0 {
				sum.Rejected++
				if reject == nil {
					// The file changed since it was checked.
					return fmt.Errorf("%w (the file changed while it was imported: import it again)", problems[0])
				}
				if err := b.flush(); err != nil {
					return err
				}
				return reject.write(f.path, row, problems)
			}
			return b.add(uint64(row), ev)
		})
		if err == nil {
			err = b.flush()
		}
		pl.free <- b.cur
		if err != nil {
			pl.stop()
			pl.addTo(&sum)
			return sum, err
		}
		base += f.size
	}
	err := pl.stop()
	pl.addTo(&sum)
	if err != nil {
		return sum, err
	}
	if reject != nil {
		if err := reject.close(); err != nil {
			return sum, err
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// hashFile reads a file once for its content hash, which names its origin
// stream.
func hashFile(path string) (file, error) {
	f, err := os.Open(path)
	if err != nil {
		return file{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return file{}, fmt.Errorf("%s: %w", path, err)
	}
	return file{path: path, stream: streamOf(h.Sum(nil)), size: n}, nil
}

// batch is one push of consecutive rows of a file.
type batch struct {
	stream string
	first  uint64
	events []event.Event
	values []event.Value
}

// pipeline pushes batches on a goroutine of its own, in order, while the
// next is read: two batches go round between the reader and the pusher.
type pipeline struct {
	ctx  context.Context
	p    Pusher
	src  *definition.Source
	rows *rowCounter

	in   chan *batch
	free chan *batch
	done chan struct{}

	mu  sync.Mutex // guards err
	err error
	// Written by the pusher, read after stop.
	accepted, droppedLate int64
	stopped               bool
}

func startPipeline(ctx context.Context, p Pusher, src *definition.Source, rows *rowCounter) *pipeline {
	pl := &pipeline{ctx: ctx, p: p, src: src, rows: rows, in: make(chan *batch), free: make(chan *batch, 2), done: make(chan struct{})}
	pl.free <- &batch{}
	pl.free <- &batch{}
	go pl.run()
	return pl
}

func (pl *pipeline) run() {
	defer close(pl.done)
	nf := len(pl.src.Fields)
	for b := range pl.in {
		if pl.failed() == nil {
			for i := range b.events {
				b.events[i].Fields = b.values[i*nf : (i+1)*nf : (i+1)*nf]
			}
			res, err := pl.p.PushFrom(pl.ctx, pl.src, b.stream, b.first, b.events)
			if err != nil {
				pl.mu.Lock()
				pl.err = err
				pl.mu.Unlock()
			} else {
				pl.accepted += int64(res.Accepted)
				pl.droppedLate += int64(res.DroppedLate)
				pl.rows.add(b.events)
			}
		}
		clear(b.values)
		b.events, b.values = b.events[:0], b.values[:0]
		pl.free <- b
	}
}

// failed returns the error of a push that failed, which stops the import.
func (pl *pipeline) failed() error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.err
}

// stop waits for the pushes sent and returns the first error.
func (pl *pipeline) stop() error {
	if !pl.stopped {
		pl.stopped = true
		close(pl.in)
		<-pl.done
	}
	return pl.failed()
}

// addTo adds what the pushes did to sum; call it after stop.
func (pl *pipeline) addTo(sum *Summary) {
	sum.Accepted, sum.DroppedLate = pl.accepted, pl.droppedLate
	sum.RowsTouched = pl.rows.count()
}

// batcher gathers a file's rows into batches of consecutive rows.
type batcher struct {
	pl     *pipeline
	stream string
	max    int
	cur    *batch
}

func (b *batcher) add(row uint64, ev *event.Event) error {
	c := b.cur
	if len(c.events) > 0 && (row != c.first+uint64(len(c.events)) || len(c.events) >= b.max) {
		if err := b.flush(); err != nil {
			return err
		}
		c = b.cur
	}
	if len(c.events) == 0 {
		c.first = row
	}
	// Fields are set at the push: values may still grow (and move).
	c.values = append(c.values, ev.Fields...)
	c.events = append(c.events, event.Event{TS: ev.TS})
	return nil
}

// flush hands the current batch to the pusher and takes the free one.
func (b *batcher) flush() error {
	if err := b.pl.failed(); err != nil {
		return err
	}
	if len(b.cur.events) == 0 {
		return nil
	}
	b.cur.stream = b.stream
	b.pl.in <- b.cur
	b.cur = <-b.pl.free
	return nil
}

// rowCounter counts the distinct rows events reach (by a 64-bit hash of
// view and key, so a collision may undercount by one in billions).
type rowCounter struct {
	now   int64
	views []counted
	seen  map[uint64]struct{}
	key   []byte
}

type counted struct {
	view *definition.View
	plan *tile.Plan
	keys []int
}

func newRowCounter(opts Options) *rowCounter {
	rc := &rowCounter{now: opts.Now, seen: map[uint64]struct{}{}}
	for _, v := range opts.Project.Views {
		if v.Source != opts.Source || opts.Plans[v] == nil {
			continue
		}
		c := counted{view: v, plan: opts.Plans[v]}
		for _, k := range v.Entity.Keys {
			c.keys = append(c.keys, opts.Source.FieldIndex(k))
		}
		rc.views = append(rc.views, c)
	}
	return rc
}

func (rc *rowCounter) add(events []event.Event) {
	var key [4]event.Value
	for _, c := range rc.views {
		before := c.plan.LateBefore(rc.now)
		for i := range events {
			if events[i].TS < before {
				continue
			}
			k := key[:0]
			for _, f := range c.keys {
				k = append(k, events[i].Fields[f])
			}
			rc.key = tile.AppendKey(rc.key[:0], c.view.Name, k)
			rc.seen[xxhash.Sum64(rc.key)] = struct{}{}
		}
	}
}

func (rc *rowCounter) count() int64 { return int64(len(rc.seen)) }

// rejectFile receives the bad rows of an import with Options.Reject.
type rejectFile struct {
	f    *os.File
	w    *bufio.Writer
	done bool
}

func createReject(path string) (*rejectFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("reject file: %w", err)
	}
	return &rejectFile{f: f, w: bufio.NewWriter(f)}, nil
}

// rejected is one line of a reject file.
type rejected struct {
	File     string   `json:"file"`
	Row      int      `json:"row"`
	Problems []string `json:"problems"`
}

func (r *rejectFile) write(path string, row int, problems []eventfile.Problem) error {
	line := rejected{File: path, Row: row}
	for _, p := range problems {
		msg := p.Message
		if p.Column != "" {
			msg = p.Column + ": " + msg
		}
		line.Problems = append(line.Problems, msg)
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = r.w.Write(b)
	return err
}

func (r *rejectFile) close() error {
	if r.done {
		return nil
	}
	r.done = true
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(errors.New("writing the reject file"), err)
	}
	return nil
}
