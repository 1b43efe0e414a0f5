package tile

import "time"

// HopDivisor is the number of hops per window: a window of length W moves
// in hops of W/HopDivisor (whole seconds, rounded down), so the span it
// covers exceeds W by less than W/HopDivisor.
const HopDivisor = 12

// Window is a window length with its hop, both in milliseconds. The zero
// Window is "all time".
type Window struct {
	Length int64
	Hop    int64
}

// AllTime is the window of a feature declared without windows.
var AllTime = Window{}

// NewWindow returns the window of length d with its hop: d/HopDivisor
// rounded down to a whole second. d must be at least a minute (the
// project file's loader checks it), so the hop is at least 5s.
func NewWindow(d time.Duration) Window {
	length := d.Milliseconds()
	hop := max(length/HopDivisor/1000*1000, 1000)
	return Window{Length: length, Hop: hop}
}

// IsAllTime reports whether w covers all time.
func (w Window) IsAllTime() bool { return w.Length == 0 }

// Start returns the earliest event time the window covers when evaluated at
// time t (all in Unix milliseconds): t − W rounded down to a multiple of the
// hop. It is the one definition of window semantics in Kiln:
//
//	window W evaluated at t covers exactly the events with Start(t) ≤ ts ≤ t
//
// The head (t) is exact; the tail snaps back to a hop boundary, so the span
// covered is between W and W + hop. All time covers every event with ts ≤ t.
// Serving, backfill and training sets all call this function.
func (w Window) Start(t int64) int64 {
	if w.Length == 0 {
		return minTime
	}
	return floorDiv(t-w.Length, w.Hop) * w.Hop
}

// Covers reports whether the window evaluated at t covers an event at ts.
func (w Window) Covers(ts, t int64) bool {
	return ts <= t && ts >= w.Start(t)
}

// Retention is how far back from now an event can still be covered by this
// window at some time ≥ now: events with ts < now − Retention are covered
// by no future evaluation. It is W + hop (0 for all time: forever).
func (w Window) Retention() int64 {
	if w.Length == 0 {
		return 0
	}
	return w.Length + w.Hop
}

// TilesRead is the most tiles an evaluation of the window reads: the tiles
// of size hop from Start(t) up to the tile holding t.
func (w Window) TilesRead() int64 {
	if w.Length == 0 {
		return 1
	}
	return (w.Length+w.Hop-1)/w.Hop + 1
}

// Deviation is the worst-case excess of the covered span over W, as a
// fraction of W (hop − 1ms, over W).
func (w Window) Deviation() float64 {
	if w.Length == 0 {
		return 0
	}
	return float64(w.Hop-1) / float64(w.Length)
}

// minTime is earlier than every valid event time.
const minTime = -1 << 62

// floorDiv is a / b rounded toward negative infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
