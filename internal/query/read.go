package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Request names the keys to read. Keys[i] holds the keys of
// Prepared.Entities[i] back to back: with k key fields, key j is
// Keys[i][j*k : (j+1)*k]. Key values must have the entity's key types.
type Request struct {
	Prepared *Prepared
	Keys     [][]event.Value
}

// Result is the answer to a Request, column by column. Reuse it: Read
// resets it and keeps its memory.
type Result struct {
	// At is the time the windows were evaluated at (Unix ms).
	At int64
	// Entities is parallel to the request's Prepared.Entities.
	Entities []EntityResult

	keyBuf []byte
	offs   []int
	keys   [][]byte
	bases  []int // per entity type: the index of its first row in keys
	err    error // of the first corrupt row
	errRow int   // that row's index in keys

	// During Read: the request, whether the source keeps memos, and the
	// callbacks given to it (made once per Result).
	req   *Request
	memos bool
	mfn   func(i int, value []byte, found bool, memo []byte) []byte
	fn    func(i int, value []byte, found bool)
}

// EntityResult holds the values of one entity type, one slot per key.
type EntityResult struct {
	// N is the number of keys.
	N int
	// Present[j] says the store holds events for key j in at least one of
	// the views read; when false, every value of the key is null.
	Present []bool
	// EventTime[j] is the newest event time folded into key j's rows
	// (Unix ms); meaningless when Present[j] is false.
	EventTime []int64
	// Columns are parallel to PreparedEntity.Features.
	Columns []Column

	found   []bool        // per key × view
	scratch []viewScratch // per view of the prepared entity
}

type viewScratch struct {
	plan     *tile.Plan
	row      *tile.Row
	vals     []event.Value
	memo     []byte        // the memo being handed to a MemoRowSource
	defaults []event.Value // the values of a row with no events
	haveDef  bool
}

// Column holds one served value for every key of an entity type. Only the
// slice of the column's Type is used: Ints for int64, Floats for float64,
// Strs for string, Bools for bool. Valid[j] is false where the value is
// null.
type Column struct {
	Type   event.Type
	Valid  []bool
	Ints   []int64
	Floats []float64
	Strs   []string
	Bools  []bool
}

// Value returns value j of the column as an event.Value (Null if invalid).
func (c *Column) Value(j int) event.Value {
	if !c.Valid[j] {
		return event.Value{}
	}
	switch c.Type {
	case event.Int64:
		return event.IntValue(c.Ints[j])
	case event.Float64:
		return event.FloatValue(c.Floats[j])
	case event.String:
		return event.StringValue(c.Strs[j])
	case event.Bool:
		return event.BoolValue(c.Bools[j])
	}
	return event.Value{}
}

// Reset readies c for n values of type t, all null, reusing its memory.
func (c *Column) Reset(t event.Type, n int) {
	c.Type = t
	c.Valid = grow(c.Valid, n)
	clear(c.Valid)
	switch t {
	case event.Int64:
		c.Ints = grow(c.Ints, n)
	case event.Float64:
		c.Floats = grow(c.Floats, n)
	case event.String:
		c.Strs = grow(c.Strs, n)
		clear(c.Strs)
	case event.Bool:
		c.Bools = grow(c.Bools, n)
	}
}

// Set sets the j-th value; a Null v makes it null.
func (c *Column) Set(j int, v event.Value) {
	switch v.Kind {
	case event.Null:
		c.Valid[j] = false
		return
	case event.Int64:
		c.Ints[j] = v.Int
	case event.Float64:
		c.Floats[j] = v.Float
	case event.String:
		c.Strs[j] = v.Str
	case event.Bool:
		c.Bools[j] = v.Bool
	}
	c.Valid[j] = true
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Validate checks a request's shape and key types; Read calls it.
func (r *Request) Validate() error {
	if r.Prepared == nil {
		return &Error{Msg: "no features requested"}
	}
	if len(r.Keys) != len(r.Prepared.Entities) {
		return &Error{Msg: fmt.Sprintf("keys for %d entity types, the features need %d", len(r.Keys), len(r.Prepared.Entities))}
	}
	total := 0
	for i, pe := range r.Prepared.Entities {
		k := len(pe.Entity.KeyTypes)
		if len(r.Keys[i]) == 0 || len(r.Keys[i])%k != 0 {
			return &Error{Msg: fmt.Sprintf("entity %s: give at least one key of %d field(s)", pe.Entity.Def.Name, k)}
		}
		total += len(r.Keys[i]) / k
		for j, v := range r.Keys[i] {
			if v.Kind != pe.Entity.KeyTypes[j%k] {
				return &Error{Msg: fmt.Sprintf("entity %s key %d: %s is %v, want %v", pe.Entity.Def.Name, j/k, pe.Entity.Def.Keys[j%k], v.Kind, pe.Entity.KeyTypes[j%k])}
			}
		}
	}
	if total > MaxEntities {
		return &Error{Msg: fmt.Sprintf("%d entities in one request; the limit is %d: split it", total, MaxEntities)}
	}
	return nil
}

// rowKeys lays out the store keys of a request: entity by entity, key by
// key, view by view.
func (res *Result) rowKeys(req *Request) {
	res.keyBuf = res.keyBuf[:0]
	res.offs = append(res.offs[:0], 0)
	for i, pe := range req.Prepared.Entities {
		k := len(pe.Entity.KeyTypes)
		for j := 0; j < len(req.Keys[i]); j += k {
			for _, v := range pe.views {
				res.keyBuf = tile.AppendKey(res.keyBuf, v.view.Name, req.Keys[i][j:j+k])
				res.offs = append(res.offs, len(res.keyBuf))
			}
		}
	}
	res.keys = res.keys[:0]
	for i := 1; i < len(res.offs); i++ {
		res.keys = append(res.keys, res.keyBuf[res.offs[i-1]:res.offs[i]:res.offs[i]])
	}
}

// UnorderedRowSource is a RowSource that can also hand rows out in any
// order, each exactly once and never concurrently (rowcache.ReadThrough can:
// cached rows are then evaluated while the store reads the others). Read
// uses GetUnordered when its Rows have it.
type UnorderedRowSource interface {
	RowSource
	GetUnordered(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
}

// MemoRowSource is an UnorderedRowSource that keeps a memo with each row it
// holds in memory (rowcache.ReadThrough can). Read uses GetMemo when its Rows
// have it: it keeps a row's evaluated values as the memo (see appendMemo),
// and serves them again instead of decoding and evaluating the row while
// the row's bytes are unchanged and the values still hold.
type MemoRowSource interface {
	UnorderedRowSource
	GetMemo(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool, memo []byte) []byte) error
}

// Read evaluates a request at the engine's clock into res: one batch read
// of every row the request needs, then the windows of each row. Errors of
// the request are *Error; the rest come from the store (retryable) or from
// a corrupt row. ctx bounds the work: a request past its deadline stops.
func (e *Engine) Read(ctx context.Context, req *Request, res *Result) error {
	var start time.Time
	if e.cfg.ObserveRead != nil {
		start = time.Now()
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.checkAvailable(req.Prepared); err != nil {
		return err
	}
	res.At = e.cfg.Now()
	res.err = nil
	res.Entities = grow(res.Entities, len(req.Prepared.Entities))
	for i, pe := range req.Prepared.Entities {
		er := &res.Entities[i]
		er.N = len(req.Keys[i]) / len(pe.Entity.KeyTypes)
		er.Present = grow(er.Present, er.N)
		er.EventTime = grow(er.EventTime, er.N)
		er.found = grow(er.found, er.N*len(pe.views))
		clear(er.found)
		er.Columns = grow(er.Columns, len(pe.Features))
		for c, f := range pe.Features {
			er.Columns[c].Reset(f.Type, er.N)
		}
		er.scratch = grow(er.scratch, len(pe.views))
		for v, vi := range pe.views {
			sc := &er.scratch[v]
			if sc.plan != vi.plan {
				*sc = viewScratch{plan: vi.plan, row: vi.plan.NewRow(), vals: make([]event.Value, len(vi.plan.Outputs))}
			}
			sc.haveDef = false
		}
	}
	res.rowKeys(req)

	// Rows may arrive in any order (hits first, say): row i belongs to the
	// entity type whose part of the layout holds it.
	res.bases = res.bases[:0]
	base := 0
	for i, pe := range req.Prepared.Entities {
		res.bases = append(res.bases, base)
		base += res.Entities[i].N * len(pe.views)
	}
	res.req = req
	_, res.memos = e.cfg.Rows.(MemoRowSource)
	if res.mfn == nil {
		// Made once per Result, so a reused Result reads without allocating.
		res.mfn = res.foldRow
		res.fn = func(i int, value []byte, found bool) { res.foldRow(i, value, found, nil) }
	}
	var err error
	switch rows := e.cfg.Rows.(type) {
	case MemoRowSource:
		err = rows.GetMemo(ctx, res.keys, res.mfn)
	case UnorderedRowSource:
		err = rows.GetUnordered(ctx, res.keys, res.fn)
	default:
		err = rows.Get(ctx, res.keys, res.fn)
	}
	res.req = nil
	if err == nil {
		err = res.err
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	// Keys with a row in some views but not others get the empty values of
	// the missing views.
	values := 0
	for i, pe := range req.Prepared.Entities {
		er := &res.Entities[i]
		values += er.N * len(pe.Features)
		nv := len(pe.views)
		for j := range er.N {
			present := slices.Contains(er.found[j*nv:j*nv+nv], true)
			er.Present[j] = present
			if !present || nv == 1 {
				continue
			}
			for v := range nv {
				if !er.found[j*nv+v] {
					sc := &er.scratch[v]
					if !sc.haveDef {
						sc.defaults = grow(sc.defaults, len(sc.plan.Outputs))
						sc.plan.Eval(nil, res.At, sc.defaults)
						sc.haveDef = true
					}
					scatter(pe, er, j, v, sc.defaults)
				}
			}
		}
	}
	e.served.Add(int64(values))
	if e.cfg.ObserveRead != nil {
		e.cfg.ObserveRead(req.Prepared.Service, values, time.Since(start))
	}
	return nil
}

// foldRow is the callback of the row source: it folds row i of the request
// res.req. Rows may arrive in any order (hits first, say): row i belongs to
// the entity type whose part of the layout holds it.
func (res *Result) foldRow(i int, value []byte, found bool, memo []byte) []byte {
	if !found {
		return nil
	}
	ent := 0
	for ent+1 < len(res.bases) && i >= res.bases[ent+1] {
		ent++
	}
	pe := res.req.Prepared.Entities[ent]
	nv := len(pe.views)
	r := i - res.bases[ent]
	return res.fold(pe, &res.Entities[ent], r/nv, r%nv, value, memo, i)
}

// fold writes the values of row i of the request, one view's row of one
// key, into the columns: from memo if it holds at res.At, else by decoding
// and evaluating the row. With memos (the source keeps them), it returns a
// new memo for the row when it evaluated it, or nil.
func (res *Result) fold(pe *PreparedEntity, er *EntityResult, key, view int, value, memo []byte, i int) []byte {
	sc := &er.scratch[view]
	newest, ok := readMemo(memo, sc.plan, res.At, sc.vals)
	var keep []byte
	if !ok {
		if err := sc.plan.DecodeRow(value, sc.row); err != nil {
			if errors.Is(err, tile.ErrLayout) {
				return nil // written under an older definition of the view: as good as absent
			}
			if res.err == nil || i < res.errRow {
				// The first bad row in key order, whatever order rows came in.
				res.err, res.errRow = fmt.Errorf("row of view %s: %w", pe.views[view].view.Name, err), i
			}
			return nil
		}
		newest = sc.row.Newest
		sc.plan.Eval(sc.row, res.At, sc.vals)
		if res.memos {
			from, until := sc.plan.Stable(sc.row, res.At)
			if sc.memo, ok = appendMemo(sc.memo[:0], sc.plan, newest, from, until, sc.vals); ok {
				keep = sc.memo
			}
		}
	}
	if newest == tile.NoTime {
		return keep // an empty row
	}
	nv := len(pe.views)
	if !slices.Contains(er.found[key*nv:key*nv+nv], true) || newest > er.EventTime[key] {
		er.EventTime[key] = newest // the newest event over the key's rows
	}
	er.found[key*nv+view] = true
	scatter(pe, er, key, view, sc.vals)
	return keep
}

// scatter writes the requested outputs of one view's values for key j.
func scatter(pe *PreparedEntity, er *EntityResult, j, view int, vals []event.Value) {
	for c, it := range pe.items {
		if it.view == view {
			er.Columns[c].Set(j, vals[it.output])
		}
	}
}

// RawRows reads the rows of a request from Config.RawRows (the store
// without Kiln's cache) and does nothing else: no decoding, no windows,
// the store's own cost of a request. It returns how many rows exist and
// their total size.
func (e *Engine) RawRows(ctx context.Context, req *Request, res *Result) (found, bytes int, err error) {
	if err := req.Validate(); err != nil {
		return 0, 0, err
	}
	res.rowKeys(req)
	err = e.cfg.RawRows.Get(ctx, res.keys, func(i int, value []byte, ok bool) {
		if ok {
			found++
			bytes += len(value)
		}
	})
	return found, bytes, err
}
