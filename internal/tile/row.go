package tile

import (
	"math"
	"slices"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// NoTime marks a Row that holds no event yet.
const NoTime int64 = minTime

// Row is everything kept for one (view, entity): the non-empty tiles of
// every level, the "last" states, and the events whose time was still in
// the future when they arrived. A Row belongs to one Plan; it is not safe
// for concurrent use, and must not be copied (it points into itself).
type Row struct {
	// Clock is the latest time (Unix ms) the row was folded at. Evaluation
	// happens at no earlier time, so a tile never holds an event later than
	// the evaluation time.
	Clock int64
	// Newest is the newest event time accepted into the row, or NoTime.
	Newest int64

	// expiry is the earliest clock at which Advance has work: a tile leaves
	// every window of its level, or a pending event is due. minTime: not
	// known (Advance looks).
	expiry int64

	// tiles holds the tiles of every level, level after level, in one
	// slice: a fold reads one allocation, and within it the newest tile of
	// each level, which comes first in its level. A tile of level li is
	// Levels[li].stride float64s: its start (the int64's bits) and then
	// the level's slots. Level li's tiles are tiles[end[li-1]:end[li]]
	// (from 0 for level 0), descending by start.
	tiles   []float64
	end     []int32 // len(Plan.Levels); in endBuf when it fits
	endBuf  [8]int32
	lasts   []LastState
	pending []pendingEvent
	applied []event.Origin // per stream, the last offset folded; ascending by Stream
}

// level returns where level li's tiles are in r.tiles.
func (r *Row) level(li int) (lo, hi int) {
	if li > 0 {
		lo = int(r.end[li-1])
	}
	return lo, int(r.end[li])
}

// startAt is the start of the tile at offset at of tiles.
func startAt(tiles []float64, at int) int64 { return int64(math.Float64bits(tiles[at])) }

// startBits is a tile start as stored in Row.tiles.
func startBits(start int64) float64 { return math.Float64frombits(uint64(start)) }

// LastState is the state of a "last" feature: the value of the event with
// the latest event time (the greatest value among equal times).
type LastState struct {
	TS    int64
	Value event.Value // Kind Null: no event yet
}

// pendingEvent is an accepted event whose time was after the row's clock.
// It is folded into the tiles once the clock reaches it; until then reads
// account for it one event at a time.
type pendingEvent struct {
	ev event.Event
}

// NewRow returns an empty row for the plan.
func (p *Plan) NewRow() *Row {
	r := &Row{}
	p.Reset(r)
	return r
}

// Reset empties r for reuse under the plan, keeping its memory.
func (p *Plan) Reset(r *Row) {
	r.Clock = minTime
	r.Newest = NoTime
	r.expiry = minTime
	r.tiles = r.tiles[:0]
	if n := len(p.Levels); n <= len(r.endBuf) {
		r.end = r.endBuf[:n]
	} else if cap(r.end) < n {
		r.end = make([]int32, n)
	} else {
		r.end = r.end[:n]
	}
	clear(r.end)
	if cap(r.lasts) < p.lastCount {
		r.lasts = make([]LastState, p.lastCount)
	}
	r.lasts = r.lasts[:p.lastCount]
	clear(r.lasts)
	clear(r.pending)
	r.pending = r.pending[:0]
	r.applied = r.applied[:0]
}

// Applied reports whether the row already reflects the event at o: o names
// a stream of which the row has folded an offset at or after o.Offset.
// Events of one stream are folded in offset order, so such an event was
// folded before (or deliberately passed over). It is false for the zero
// Origin: pushed events carry no position.
func (r *Row) Applied(o event.Origin) bool {
	if o.Stream == 0 {
		return false
	}
	i, ok := r.findStream(o.Stream)
	return ok && o.Offset <= r.applied[i].Offset
}

// MarkApplied records that the row reflects o.Stream up to o.Offset. It
// does nothing for the zero Origin or an offset not past the recorded one.
func (r *Row) MarkApplied(o event.Origin) {
	if o.Stream == 0 {
		return
	}
	i, ok := r.findStream(o.Stream)
	switch {
	case ok:
		r.applied[i].Offset = max(r.applied[i].Offset, o.Offset)
	default:
		r.applied = append(r.applied, event.Origin{})
		copy(r.applied[i+1:], r.applied[i:])
		r.applied[i] = o
	}
}

// Positions returns the last offset the row applied per stream, ascending
// by stream. The slice belongs to the row.
func (r *Row) Positions() []event.Origin { return r.applied }

// findStream returns the index of stream in r.applied, or where it would
// be inserted.
func (r *Row) findStream(stream uint64) (int, bool) {
	lo, hi := 0, len(r.applied)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.applied[m].Stream < stream {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(r.applied) && r.applied[lo].Stream == stream
}

// Empty reports whether the row holds no event.
func (r *Row) Empty() bool { return r.Newest == NoTime }

// Tiles returns the number of tiles r holds (for reports).
func (p *Plan) Tiles(r *Row) int {
	n := 0
	for li := range p.Levels {
		lo, hi := r.level(li)
		n += (hi - lo) / p.Levels[li].stride
	}
	return n
}

// Outcome is what Fold did with an event.
type Outcome uint8

const (
	// Folded: the event is in the row's tiles.
	Folded Outcome = iota
	// Pending: the event is later than now; it is kept aside in the row and
	// counts from its own time on.
	Pending
	// Late: no window of the view can cover the event any more; the row is
	// unchanged.
	Late
)

// Fold adds one event, arriving at time now (Unix ms), to the row. The
// row's clock never moves back: an earlier now is taken as the row's clock.
// ev.Fields must follow the source schema; Fold does not keep ev or its
// Fields slice (strings are shared).
func (p *Plan) Fold(r *Row, ev *event.Event, now int64) Outcome {
	p.Advance(r, now)
	now = r.Clock
	if p.Late(ev.TS, now) {
		return Late
	}
	if ev.TS > r.Newest {
		r.Newest = ev.TS
	}
	if ev.TS > now {
		fields := make([]event.Value, len(ev.Fields))
		copy(fields, ev.Fields)
		r.pending = append(r.pending, pendingEvent{ev: event.Event{TS: ev.TS, Fields: fields}})
		r.expiry = min(r.expiry, ev.TS)
		return Pending
	}
	p.apply(r, ev, now)
	return Folded
}

// Advance moves the row's clock to now (if later): pending events now due
// are folded into tiles and tiles no window can cover any more are dropped.
func (p *Plan) Advance(r *Row, now int64) {
	if now <= r.Clock {
		return
	}
	r.Clock = now
	if now < r.expiry {
		return // no tile leaves its window and no pending event is due
	}
	expiry := int64(maxTime)
	if len(r.pending) > 0 {
		kept := r.pending[:0]
		for _, pe := range r.pending {
			if pe.ev.TS <= now {
				p.apply(r, &pe.ev, now)
			} else {
				kept = append(kept, pe)
				expiry = min(expiry, pe.ev.TS)
			}
		}
		clear(r.pending[len(kept):])
		r.pending = kept
	}
	for li := range p.Levels {
		l := &p.Levels[li]
		w := l.Window
		if w.IsAllTime() {
			continue
		}
		// The oldest tiles are last in their level.
		lo, hi := r.level(li)
		start := w.Start(now)
		cut := hi
		for cut > lo && startAt(r.tiles, cut-l.stride) < start {
			cut -= l.stride
		}
		if cut < hi {
			n := copy(r.tiles[cut:], r.tiles[hi:])
			r.tiles = r.tiles[:cut+n]
			for lj := li; lj < len(p.Levels); lj++ {
				r.end[lj] -= int32(hi - cut)
			}
		}
		if cut > lo {
			expiry = min(expiry, dropTime(w, startAt(r.tiles, cut-l.stride)))
		}
	}
	// Tiles apply creates from here on lower it as they come.
	r.expiry = expiry
}

// dropTime is the earliest evaluation time at which the tile of w starting
// at start is outside the window: Start(t) > start, i.e. Start(t) ≥ start +
// hop, i.e. t ≥ start + hop + W.
func dropTime(w Window, start int64) int64 { return start + w.Hop + w.Length }

// apply folds an event with ts ≤ now into the tiles that need it.
func (p *Plan) apply(r *Row, ev *event.Event, now int64) {
	// idx[li] is the offset of level li's tile of ev in r.tiles, once
	// known: a new tile moves the tiles after it, so it is found afresh
	// for each level (a level's tile comes before any later level's).
	var idxBuf [16]int
	idx := idxBuf[:0]
	if len(p.Levels) <= len(idxBuf) {
		idx = idxBuf[:len(p.Levels)]
	} else {
		idx = make([]int, len(p.Levels))
	}
	for i := range idx {
		idx[i] = -1
	}
	for fi := range p.features {
		f := &p.features[fi]
		if !f.matches(ev) {
			continue
		}
		var x float64
		if f.field >= 0 {
			x = ev.Fields[f.field].Num()
		}
		if f.agg == definition.Last {
			st := &r.lasts[f.last]
			v := ev.Fields[f.field]
			if st.Value.Kind == event.Null || ev.TS > st.TS || (ev.TS == st.TS && v.Compare(st.Value) > 0) {
				st.TS, st.Value = ev.TS, v
			}
			continue
		}
		for _, ls := range f.levels {
			l := &p.Levels[ls.level]
			if idx[ls.level] < 0 {
				if !l.Window.IsAllTime() && ev.TS < l.Window.Start(now) {
					continue
				}
				at, added := p.tile(r, ls.level, ev.TS)
				if added {
					// Tiles of later levels moved.
					for lj := ls.level + 1; lj < len(idx); lj++ {
						if idx[lj] >= 0 {
							idx[lj] += l.stride
						}
					}
				}
				idx[ls.level] = at
				if !l.Window.IsAllTime() {
					r.expiry = min(r.expiry, dropTime(l.Window, startAt(r.tiles, at)))
				}
			}
			s := r.tiles[idx[ls.level]+1+ls.slot:]
			switch f.agg {
			case definition.Count:
				s[0]++
			case definition.Sum:
				s[0] += x
			case definition.Mean:
				s[0] += x
				s[1]++
			case definition.Min:
				s[0] = math.Min(s[0], x)
			case definition.Max:
				s[0] = math.Max(s[0], x)
			}
		}
	}
}

// tile returns the offset in r.tiles of level li's tile holding ts,
// creating it (with empty slots) when absent; added says it did, moving
// the tiles after it.
func (p *Plan) tile(r *Row, li int, ts int64) (at int, added bool) {
	l := &p.Levels[li]
	start := int64(0)
	if !l.Window.IsAllTime() {
		start = floorDiv(ts, l.Window.Hop) * l.Window.Hop
	}
	// Most events are recent: search from the newest tile on.
	lo, hi := r.level(li)
	at = lo
	for at < hi && startAt(r.tiles, at) > start {
		at += l.stride
	}
	if at < hi && startAt(r.tiles, at) == start {
		return at, false
	}
	n := len(r.tiles)
	r.tiles = slices.Grow(r.tiles, l.stride)[:n+l.stride]
	copy(r.tiles[at+l.stride:], r.tiles[at:n])
	r.tiles[at] = startBits(start)
	copy(r.tiles[at+1:at+l.stride], l.empty)
	for lj := li; lj < len(p.Levels); lj++ {
		r.end[lj] += int32(l.stride)
	}
	return at, true
}

// Eval computes every output of the plan for the row at time t (Unix ms)
// into dst, which must have len(p.Outputs) elements. A row that is nil or
// empty yields the values of no events: counts and sums 0, the rest null.
// t earlier than the row's clock is taken as the clock.
func (p *Plan) Eval(r *Row, t int64, dst []event.Value) {
	// Level li's tiles in the windows at t are r.tiles[lo:upto[li]]: the
	// newest ones, from the level's first.
	var uptoBuf [16]int
	upto := uptoBuf[:0]
	if len(p.Levels) <= len(uptoBuf) {
		upto = uptoBuf[:len(p.Levels)]
	} else {
		upto = make([]int, len(p.Levels))
	}
	if r != nil {
		if t < r.Clock {
			t = r.Clock
		}
		for li := range p.Levels {
			l := &p.Levels[li]
			lo, hi := r.level(li)
			if !l.Window.IsAllTime() {
				start := l.Window.Start(t)
				k := lo
				for k < hi && startAt(r.tiles, k) >= start {
					k += l.stride
				}
				hi = k
			}
			upto[li] = hi
		}
	}
	for oi := range p.Outputs {
		o := &p.Outputs[oi]
		if o.Agg == definition.Last {
			dst[oi] = p.evalLast(r, o, t)
			continue
		}
		var a, b float64 // the output's state: a (and b, the count of a mean)
		kinds := p.Levels[o.Level].kinds[o.Slot:]
		a = kinds[0].identity()
		if r != nil {
			lo, _ := r.level(o.Level)
			stride := p.Levels[o.Level].stride
			for at := lo; at < upto[o.Level]; at += stride {
				s := r.tiles[at+1+o.Slot:]
				a = kinds[0].merge(a, s[0])
				if o.Agg == definition.Mean {
					b += s[1]
				}
			}
			if len(r.pending) > 0 {
				a, b = p.evalPending(r, o, t, a, b)
			}
		}
		dst[oi] = finish(o.Agg, a, b)
	}
}

// Stable returns the span of evaluation times around t over which Eval
// gives the row's values at t: Eval(r, u) equals Eval(r, t) for every u
// with from ≤ u < until, as long as the row does not change. A reader may
// keep the values it evaluated and serve them again within the span.
//
// The values move only when a window's tail passes a hop boundary (Start
// changes), when a pending event's time is reached, or, for times before
// the row's clock, not at all (Eval takes them as the clock).
func (p *Plan) Stable(r *Row, t int64) (from, until int64) {
	from, until = minTime, maxTime
	if r == nil {
		return from, until // no row: counts and sums 0, the rest null, always
	}
	t = max(t, r.Clock)
	for li := range p.Levels {
		w := p.Levels[li].Window
		if w.IsAllTime() {
			continue
		}
		// Start(u) = Start(t) exactly for u in [Start(t)+W, Start(t)+W+hop).
		lo := w.Start(t) + w.Length
		from = max(from, lo)
		until = min(until, lo+w.Hop)
	}
	for i := range r.pending {
		ts := r.pending[i].ev.TS
		if ts > t {
			until = min(until, ts)
		} else {
			from = max(from, ts)
		}
	}
	if from <= r.Clock {
		from = minTime
	}
	return from, until
}

// evalPending adds to an output's state the pending events it covers at t.
func (p *Plan) evalPending(r *Row, o *Output, t int64, a, b float64) (float64, float64) {
	f := &p.features[o.feature]
	w := p.Levels[o.Level].Window
	for i := range r.pending {
		ev := &r.pending[i].ev
		if !w.Covers(ev.TS, t) || !f.matches(ev) {
			continue
		}
		var x float64
		if f.field >= 0 {
			x = ev.Fields[f.field].Num()
		}
		switch o.Agg {
		case definition.Count:
			a++
		case definition.Sum:
			a += x
		case definition.Mean:
			a += x
			b++
		case definition.Min:
			a = math.Min(a, x)
		case definition.Max:
			a = math.Max(a, x)
		}
	}
	return a, b
}

func (p *Plan) evalLast(r *Row, o *Output, t int64) event.Value {
	if r == nil {
		return event.Value{}
	}
	st := r.lasts[o.last]
	f := &p.features[o.feature]
	for i := range r.pending {
		ev := &r.pending[i].ev
		if ev.TS > t || !f.matches(ev) {
			continue
		}
		v := ev.Fields[f.field]
		if st.Value.Kind == event.Null || ev.TS > st.TS || (ev.TS == st.TS && v.Compare(st.Value) > 0) {
			st.TS, st.Value = ev.TS, v
		}
	}
	return st.Value
}

// finish turns an output's state into its served value.
func finish(agg definition.Agg, a, b float64) event.Value {
	switch agg {
	case definition.Count:
		return event.IntValue(int64(a))
	case definition.Sum:
		return event.FloatValue(a)
	case definition.Mean:
		if b == 0 {
			return event.Value{}
		}
		return event.FloatValue(a / b)
	case definition.Min, definition.Max:
		if math.IsInf(a, 0) {
			return event.Value{}
		}
		return event.FloatValue(a)
	}
	return event.Value{}
}

// Parts returns the slices the row keeps its state in: the tiles of every
// level, one level after the other (level li's end at ends[li], its newest
// tile first, a tile being its start and then its slots), and the states
// of its "last" features. They are the row's own memory: read them only,
// and only until the row next changes.
func (r *Row) Parts() (tiles []float64, ends []int32, lasts []LastState) {
	return r.tiles, r.end, r.lasts
}
