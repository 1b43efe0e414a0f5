package tile

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
)

// The worked example of docs/windows.md, pinned: the rule itself, not only
// the engine's agreement with it.
func TestWindowRule(t *testing.T) {
	at := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	f := func(length time.Duration, wantHop time.Duration, evalAt, wantStart string, wantTiles int64) {
		t.Helper()
		w := NewWindow(length)
		if w.Hop != wantHop.Milliseconds() {
			t.Errorf("window %v: hop %v, want %v", length, time.Duration(w.Hop)*time.Millisecond, wantHop)
		}
		if got := w.Start(at(evalAt)); got != at(wantStart) {
			t.Errorf("window %v at %s: start %s, want %s", length, evalAt, time.UnixMilli(got).UTC().Format(time.RFC3339), wantStart)
		}
		if got := w.TilesRead(); got != wantTiles {
			t.Errorf("window %v: tiles read %d, want %d", length, got, wantTiles)
		}
	}
	f(time.Hour, 5*time.Minute, "2026-11-26T10:07:30Z", "2026-11-26T09:05:00Z", 13)
	f(time.Hour, 5*time.Minute, "2026-11-26T10:05:00Z", "2026-11-26T09:05:00Z", 13)
	f(5*time.Minute, 25*time.Second, "2026-11-26T10:07:30Z", "2026-11-26T10:02:30Z", 13)
	f(24*time.Hour, 2*time.Hour, "2026-11-26T10:07:30Z", "2026-11-25T10:00:00Z", 13)
	f(7*24*time.Hour, 14*time.Hour, "2026-11-26T10:07:30Z", "2026-11-19T00:00:00Z", 13)
	f(30*24*time.Hour, 60*time.Hour, "2026-11-26T10:07:30Z", "2026-10-26T12:00:00Z", 13)
	f(90*time.Second, 7*time.Second, "2026-11-26T10:07:30Z", "2026-11-26T10:05:58Z", 14)

	w := NewWindow(time.Hour)
	now := at("2026-11-26T10:07:30Z")
	for _, c := range []struct {
		ts   string
		want bool
	}{
		{"2026-11-26T09:04:59Z", false}, // before the snapped tail
		{"2026-11-26T09:05:00Z", true},  // the tail boundary is covered
		{"2026-11-26T10:07:30Z", true},  // the head is exact: t itself
		{"2026-11-26T10:07:31Z", false}, // later than t
	} {
		if got := w.Covers(at(c.ts), now); got != c.want {
			t.Errorf("1h window at %s covers %s = %v, want %v", "10:07:30", c.ts, got, c.want)
		}
	}
	if !AllTime.Covers(0, now) || AllTime.Covers(now+1, now) {
		t.Error("all time covers every event up to t and none after")
	}
	// The covered span stays within [W, W+hop).
	for t0 := now; t0 < now+2*w.Hop; t0 += 999 {
		span := t0 - w.Start(t0)
		if span < w.Length || span >= w.Length+w.Hop {
			t.Fatalf("at %d the span is %d ms, outside [W, W+hop)", t0, span)
		}
	}
	if d := w.Deviation(); d >= 1.0/HopDivisor {
		t.Errorf("deviation %v not below 1/%d", d, HopDivisor)
	}
}

func TestFloorDiv(t *testing.T) {
	for _, c := range [][3]int64{{7, 5, 1}, {5, 5, 1}, {0, 5, 0}, {-1, 5, -1}, {-5, 5, -1}, {-6, 5, -2}} {
		if got := floorDiv(c[0], c[1]); got != c[2] {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}

// TestAdvanceSkipsOnlyIdleWork checks the row's expiry: Advance skips its
// pass while no tile leaves its window and no pending event is due, so a
// row must keep exactly the tiles and pending events that a full pass at
// every step keeps. (Eval ignores stale tiles, so the reference-model tests
// cannot see this.)
func TestAdvanceSkipsOnlyIdleWork(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	kinds := []string{"view", "like", "share"}
	now := int64(1_790_000_000_000)
	fast, full := p.NewRow(), p.NewRow()
	for step := range 5000 {
		// Mostly small moves of the clock, sometimes past a hop or a day.
		switch rng.IntN(10) {
		case 0:
			now += rng.Int64N(3 * 86400_000)
		case 1, 2:
			now += rng.Int64N(3600_000)
		default:
			now += rng.Int64N(5000)
		}
		ev := event.Event{TS: now - rng.Int64N(40*86400_000) + rng.Int64N(45*86400_000)/40, Fields: []event.Value{
			event.IntValue(1), event.IntValue(int64(step)), event.StringValue(kinds[rng.IntN(3)]), event.FloatValue(float64(step)),
		}}
		if rng.IntN(20) == 0 {
			ev.TS = now + rng.Int64N(7200_000) // from the future: pending
		}
		p.Fold(fast, &ev, now)
		full.expiry = minTime
		p.Fold(full, &ev, now)
		if rng.IntN(3) == 0 {
			now += rng.Int64N(600_000)
			p.Advance(fast, now)
			full.expiry = minTime
			p.Advance(full, now)
		}
		if a, b := p.AppendRow(nil, fast), p.AppendRow(nil, full); !bytes.Equal(a, b) {
			t.Fatalf("step %d: the row differs from one advanced in full (%d vs %d bytes, %d vs %d tiles, %d vs %d pending)",
				step, len(a), len(b), p.Tiles(fast), p.Tiles(full), len(fast.pending), len(full.pending))
		}
	}
}
