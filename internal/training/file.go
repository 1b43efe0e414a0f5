package training

import (
	"bufio"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/query"
)

// FileOptions configure BuildFile.
type FileOptions struct {
	// Spine and Out are the spine file and the training set's (.csv or
	// .parquet each); TimeColumn is the spine's time column.
	Spine, Out, TimeColumn string
	// Shard is the part of the spine to compute (Whole: all of it).
	Shard Shard
	// SpineMemory bounds the bytes of spine rows held in memory at once:
	// a spine larger is cut into runs of about that size, each sorted by
	// time and written to a temporary file, and the runs are merged. 0:
	// no bound (the spine is held whole).
	SpineMemory int64
	// TempDir is where the runs go, in a directory of their own removed
	// at the end, on success or not ("": os.TempDir()).
	TempDir string
	// OnShard, if set, is told the shard's rows and its time range (from
	// math.MinInt64, to math.MaxInt64 at the open ends) before the archive
	// is read.
	OnShard func(rows int, from, to int64)
}

// BuildFile computes the training set of a spine file into Out, rows in
// time order (rows of one time in the spine's order), with the spine's
// columns and then one per served value. Its memory does not grow with the
// spine's rows: they are read a chunk at a time (sorted in runs on disk
// past SpineMemory), and each row is written as soon as it is computed. It
// grows with the spine's distinct keys, whose rows of tiles live for the
// whole build. A spine with bad rows is refused, naming them, before the
// archive is read; nothing is written to Out unless the build completes.
func BuildFile(ctx context.Context, opts Options, prep *query.Prepared, fo FileOptions) (Summary, error) {
	start := time.Now()
	e, err := newEngine(opts, prep, nil)
	if err != nil {
		return Summary{}, err
	}
	defer e.Close()
	if err := checkOut(fo.Out); err != nil {
		return Summary{}, err
	}
	sp, err := sortSpine(ctx, prep, fo)
	if sp != nil {
		defer sp.remove()
	}
	if err != nil {
		return Summary{}, err
	}
	e.sum.Spilled, e.sum.Runs = sp.spilled, len(sp.runs)

	// The shard's time range: the times of the rows number ⌊j·n/N⌋ in
	// time order (Shard).
	s := fo.Shard
	if s == (Shard{}) {
		s = Whole
	}
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if s != Whole {
		lo, hi := s.I*sp.rows/s.N, (s.I+1)*sp.rows/s.N
		err := sp.each(ctx, func(p int, t int64, _ *Table, _ int, _ [][]event.Value) error {
			if p == lo && s.I > 0 {
				from = t
			}
			if p == hi && s.I < s.N-1 {
				to = t
			}
			return nil
		})
		if err != nil {
			return Summary{}, err
		}
	}
	in := func(t int64) bool { return t >= from && (t < to || s.I == s.N-1) }
	rows, last := 0, int64(0)
	err = sp.each(ctx, func(_ int, t int64, _ *Table, _ int, keys [][]event.Value) error {
		if in(t) {
			for ei, key := range keys {
				e.AddKey(ei, key)
			}
			rows++
			last = t
		}
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	if fo.OnShard != nil {
		fo.OnShard(rows, from, to)
	}
	if rows > 0 {
		if err := e.Start(ctx, last); err != nil {
			return Summary{}, err
		}
	}
	var sum Summary
	err = writeFile(fo.Out, func(w io.Writer) error {
		rw, err := newRowWriter(w, fo.Out, sp.head.Columns, e.features)
		if err != nil {
			return err
		}
		e.out = func(tag rowTag, vals []event.Value) error { return rw.write(tag.tab, tag.i, vals) }
		err = sp.each(ctx, func(_ int, t int64, tab *Table, i int, keys [][]event.Value) error {
			if !in(t) {
				return nil
			}
			return e.Row(t, keys, rowTag{tab: tab, i: i})
		})
		if err != nil {
			return err
		}
		if sum, err = e.Finish(); err != nil {
			return err
		}
		return rw.close()
	})
	if err != nil {
		return Summary{}, err
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// sortedSpine is a spine file's rows in time order: held in memory when
// they fit, else in runs on disk, each sorted.
type sortedSpine struct {
	prep       *query.Prepared
	name       string // the spine file
	timeColumn string
	temp       string // where the runs' directory goes
	head       *Table // the columns, with their key types
	rows       int
	mem        *batch // the whole spine, when it fitted
	dir        string
	runs       []string
	spilled    int64
}

func (sp *sortedSpine) remove() {
	if sp.dir != "" {
		os.RemoveAll(sp.dir)
	}
}

// spineRowBytes is the memory a spine row takes besides its cells: its
// time, its place in the time order and its key values.
func spineRowBytes(prep *query.Prepared) int64 {
	n := int64(16)
	for _, pe := range prep.Entities {
		n += 48 * int64(len(pe.Entity.KeyTypes))
	}
	return n
}

// sortSpine reads the spine file a chunk of SpineMemory at a time, checks
// every row, and sorts it: in memory if it is one chunk, else in runs. Row
// problems are reported for the whole file (up to MaxRowErrors).
func sortSpine(ctx context.Context, prep *query.Prepared, fo FileOptions) (*sortedSpine, error) {
	r, err := openTable(fo.Spine)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	sp := &sortedSpine{prep: prep, name: fo.Spine, timeColumn: fo.TimeColumn, temp: fo.TempDir, head: r.header()}
	var errs []error
	// The columns first: their problems need no row read.
	if _, err := spineOf(sp.head, prep, fo.TimeColumn, 0, &errs); err != nil {
		return nil, err
	}
	budget := fo.SpineMemory
	if budget <= 0 {
		budget = math.MaxInt64
	}
	extra := spineRowBytes(prep)
	for {
		if err := ctx.Err(); err != nil {
			return sp, err
		}
		t := sp.header()
		more, err := r.read(t, math.MaxInt, budget, extra)
		if err != nil {
			return sp, err
		}
		if t.Rows == 0 && (sp.rows > 0 || !more) {
			break
		}
		s, err := spineOf(t, prep, fo.TimeColumn, sp.rows, &errs)
		if err != nil {
			return sp, err
		}
		sp.rows += t.Rows
		if len(errs) > 0 {
			if !more {
				break
			}
			continue // the rest is only checked
		}
		b := &batch{t: t, sp: s, order: timeOrder(s.Times)}
		if !more && len(sp.runs) == 0 {
			sp.mem = b
			break
		}
		if err := sp.spill(b); err != nil {
			return sp, err
		}
		if !more {
			break
		}
	}
	if len(errs) > 0 {
		return sp, fmt.Errorf("spine %s: %w", fo.Spine, errors.Join(errs...))
	}
	return sp, nil
}

// header returns a table of the spine's columns, with their key types.
func (sp *sortedSpine) header() *Table {
	t := &Table{Columns: make([]TableColumn, len(sp.head.Columns))}
	for j, c := range sp.head.Columns {
		t.Columns[j] = TableColumn{Name: c.Name, Key: c.Key, Node: c.Node}
	}
	return t
}

// timeOrder returns the rows by time, rows of one time in their order.
func timeOrder(times []int64) []int {
	order := make([]int, len(times))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(times[x], times[y]) })
	return order
}

// spill writes a sorted chunk as a run: a file of the spine's format.
func (sp *sortedSpine) spill(b *batch) error {
	if sp.dir == "" {
		dir, err := os.MkdirTemp(sp.temp, "kiln-training-")
		if err != nil {
			return fmt.Errorf("the spine does not fit its memory and its runs cannot be written (--temp-dir): %w", err)
		}
		sp.dir = dir
	}
	ext := strings.ToLower(filepath.Ext(sp.name))
	path := filepath.Join(sp.dir, fmt.Sprintf("run-%06d%s", len(sp.runs), ext))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	rw, err := newRowWriter(bw, path, b.t.Columns, nil)
	if err == nil {
		for _, i := range b.order {
			if err = rw.write(b.t, i, nil); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = rw.close()
	}
	if err == nil {
		err = bw.Flush()
	}
	var st os.FileInfo
	if err == nil {
		st, err = f.Stat()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return fmt.Errorf("writing a run of the spine in %s (--temp-dir): %w", sp.dir, err)
	}
	sp.runs = append(sp.runs, path)
	sp.spilled += st.Size()
	return nil
}

// batch is sorted spine rows: a chunk in memory, or the part of a run read.
type batch struct {
	t     *Table
	sp    *Spine
	order []int // rows of t in time order
	pos   int   // into order
	run   int   // which run (its rows come after the runs before it)
	r     tableReader
}

func (b *batch) time() int64 { return b.sp.Times[b.order[b.pos]] }

// mergeRows is the rows a run's reader holds at once.
const mergeRows = 4096

// each calls fn for every row of the spine in time order (rows of one
// time in spine order) with its position in that order, its time, its
// table and row there, and its keys per entity.
func (sp *sortedSpine) each(ctx context.Context, fn func(p int, t int64, tab *Table, i int, keys [][]event.Value) error) error {
	var h batches
	if sp.mem != nil {
		sp.mem.pos = 0
		if len(sp.mem.order) > 0 {
			h = append(h, sp.mem)
		}
	}
	defer func() {
		for _, b := range h {
			if b.r != nil {
				b.r.Close()
			}
		}
	}()
	for run, path := range sp.runs {
		r, err := openTable(path)
		if err != nil {
			return err
		}
		b := &batch{run: run, r: r}
		if err := sp.refill(b); err != nil {
			r.Close()
			return err
		}
		if len(b.order) == 0 {
			r.Close()
			continue
		}
		h = append(h, b)
	}
	heap.Init(&h)
	keys := make([][]event.Value, len(sp.prep.Entities))
	for p := 0; len(h) > 0; p++ {
		if p%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		b := h[0]
		i := b.order[b.pos]
		for ei, pe := range sp.prep.Entities {
			k := len(pe.Entity.KeyTypes)
			keys[ei] = b.sp.Keys[ei][i*k : (i+1)*k]
		}
		if err := fn(p, b.sp.Times[i], b.t, i, keys); err != nil {
			return err
		}
		b.pos++
		if b.pos == len(b.order) && b.r != nil {
			if err := sp.refill(b); err != nil {
				return err
			}
		}
		if b.pos == len(b.order) {
			heap.Pop(&h)
			if b.r != nil {
				b.r.Close()
			}
		} else {
			heap.Fix(&h, 0)
		}
	}
	return nil
}

// refill reads a run's next rows into its batch (none at its end).
func (sp *sortedSpine) refill(b *batch) error {
	t := sp.header()
	if _, err := b.r.read(t, mergeRows, math.MaxInt64, 0); err != nil {
		return err
	}
	var errs []error
	s, err := spineOf(t, sp.prep, sp.timeColumn, 0, &errs)
	if err == nil && len(errs) > 0 {
		err = errs[0]
	}
	if err != nil {
		return fmt.Errorf("a run of the spine in %s was changed while read: %w", sp.dir, err)
	}
	b.t, b.sp, b.pos = t, s, 0
	b.order = b.order[:0]
	for i := range t.Rows {
		b.order = append(b.order, i)
	}
	return nil
}

// batches is a min-heap of batches by their next row's time, then run.
type batches []*batch

func (h batches) Len() int { return len(h) }
func (h batches) Less(i, j int) bool {
	if a, b := h[i].time(), h[j].time(); a != b {
		return a < b
	}
	return h[i].run < h[j].run
}
func (h batches) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *batches) Push(x any)   { *h = append(*h, x.(*batch)) }
func (h *batches) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
