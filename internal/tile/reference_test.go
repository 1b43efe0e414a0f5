package tile

import (
	"fmt"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// The reference model: a window's value is recomputed from every event ever
// offered, with nothing but Window.Covers. The engine keeps tiles, drops late
// events, holds future ones aside, prunes, and round-trips rows through the
// encoding; its values must equal the model's.

// testSource is the schema of the generated events.
var testSource = &definition.Source{
	Name: "src", Type: definition.Push, EventTime: "ts",
	Fields: []definition.Field{
		{Name: "id", Type: event.Int64},
		{Name: "kind", Type: event.String},
		{Name: "x", Type: event.Float64},
		{Name: "n", Type: event.Int64},
	},
}

var kinds = []string{"view", "like", "share"}

// drawView draws a view with random features, filters and windows.
func drawView(t *rapid.T) *definition.View {
	v := &definition.View{Name: "v", Entity: &definition.Entity{Name: "e", Keys: []string{"id"}}, Source: testSource}
	nf := rapid.IntRange(1, 6).Draw(t, "features")
	for i := range nf {
		f := &definition.Feature{Name: fmt.Sprintf("f%d", i)}
		f.Agg = rapid.SampledFrom([]definition.Agg{definition.Count, definition.Sum, definition.Mean, definition.Min, definition.Max, definition.Last}).Draw(t, "agg")
		if f.Agg != definition.Count {
			f.Field = rapid.SampledFrom([]string{"x", "n"}).Draw(t, "field")
			if f.Agg == definition.Last {
				f.Field = rapid.SampledFrom([]string{"x", "n", "kind"}).Draw(t, "lastfield")
			}
		}
		if rapid.Bool().Draw(t, "filtered") {
			vals := rapid.SliceOfNDistinct(rapid.SampledFrom(kinds), 1, 2, func(s string) string { return s }).Draw(t, "kinds")
			fl := definition.Filter{Field: "kind"}
			for _, s := range vals {
				fl.Values = append(fl.Values, event.StringValue(s))
			}
			f.Where = []definition.Filter{fl}
		}
		if f.Agg != definition.Last && rapid.IntRange(0, 4).Draw(t, "windowed") > 0 {
			seen := map[time.Duration]bool{}
			for range rapid.IntRange(1, 3).Draw(t, "nwindows") {
				// Window lengths from 1m to 40d, in whole seconds, often short
				// so that the tests see many windows slide past.
				var d time.Duration
				if rapid.Bool().Draw(t, "short") {
					d = time.Duration(rapid.IntRange(60, 4*3600).Draw(t, "wsec")) * time.Second
				} else {
					d = time.Duration(rapid.IntRange(60, 40*86400).Draw(t, "wsec")) * time.Second
				}
				if !seen[d] {
					seen[d] = true
					f.Windows = append(f.Windows, d)
					f.WindowNames = append(f.WindowNames, definition.FormatWindow(d))
				}
			}
		}
		v.Features = append(v.Features, f)
	}
	return v
}

// refValue recomputes one output from the raw events under the window rule.
func refValue(p *Plan, o *Output, events []event.Event, t int64) (event.Value, float64) {
	f := &p.features[o.feature]
	w := p.Levels[o.Level].Window
	var (
		n         int64
		sum, mag  float64
		lo, hi    = math.Inf(1), math.Inf(-1)
		last      event.Value
		lastTS    int64
		seenFirst bool
	)
	for i := range events {
		ev := &events[i]
		if !w.Covers(ev.TS, t) || !f.matches(ev) {
			continue
		}
		var x float64
		if f.field >= 0 {
			x = ev.Fields[f.field].Num()
		}
		n++
		sum += x
		mag += math.Abs(x)
		lo, hi = math.Min(lo, x), math.Max(hi, x)
		if f.field >= 0 {
			v := ev.Fields[f.field]
			if !seenFirst || ev.TS > lastTS || (ev.TS == lastTS && v.Compare(last) > 0) {
				last, lastTS, seenFirst = v, ev.TS, true
			}
		}
	}
	switch o.Agg {
	case definition.Count:
		return event.IntValue(n), 0
	case definition.Sum:
		return event.FloatValue(sum), mag
	case definition.Mean:
		if n == 0 {
			return event.Value{}, 0
		}
		return event.FloatValue(sum / float64(n)), mag / float64(n)
	case definition.Min:
		if n == 0 {
			return event.Value{}, 0
		}
		return event.FloatValue(lo), 0
	case definition.Max:
		if n == 0 {
			return event.Value{}, 0
		}
		return event.FloatValue(hi), 0
	}
	return last, 0
}

// sameValue compares an engine value with the model's: exactly, or for sums
// and means within 1e-9 of the magnitude of the terms (the engine adds in
// another order than the model).
func sameValue(got, want event.Value, mag float64) bool {
	if got.Kind != want.Kind {
		return false
	}
	if got.Kind == event.Float64 && mag > 0 {
		return math.Abs(got.Float-want.Float) <= 1e-9*mag
	}
	return got.Equal(want)
}

func drawX(t *rapid.T) float64 {
	switch rapid.IntRange(0, 3).Draw(t, "xkind") {
	case 0:
		return float64(rapid.IntRange(-5, 5).Draw(t, "xsmall"))
	case 1:
		return rapid.Float64Range(-1e12, 1e12).Draw(t, "xlarge")
	default:
		return rapid.Float64Range(-100, 1000).Draw(t, "x")
	}
}

func TestReferenceModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		view := drawView(t)
		p, err := Compile(view)
		if err != nil {
			t.Fatal(err)
		}
		now := rapid.Int64Range(1_600_000_000_000, 1_900_000_000_000).Draw(t, "start")
		row := p.NewRow()
		var offered []event.Event
		got := make([]event.Value, len(p.Outputs))
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for step := range steps {
			switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
			case op < 5: // an event: mostly recent, some late, some in the future
				var ts int64
				switch rapid.IntRange(0, 5).Draw(t, "age") {
				case 0:
					ts = now - rapid.Int64Range(0, 40*86400_000).Draw(t, "old")
				case 1:
					ts = now + rapid.Int64Range(1, 60_000).Draw(t, "future")
				default:
					ts = now - rapid.Int64Range(0, 3*3600_000).Draw(t, "recent")
				}
				fields := []event.Value{
					event.IntValue(1),
					event.StringValue(rapid.SampledFrom(kinds).Draw(t, "kind")),
					event.FloatValue(drawX(t)),
					event.IntValue(rapid.Int64Range(-1<<40, 1<<40).Draw(t, "n")),
				}
				if rapid.IntRange(0, 9).Draw(t, "nullx") == 0 {
					fields[2] = event.Value{}
				}
				ev := event.Event{TS: ts, Fields: fields}
				out := p.Fold(row, &ev, now)
				if out == Late {
					// Late must mean: no window can cover it at any time ≥ now.
					for _, l := range p.Levels {
						if l.Window.IsAllTime() || ts >= l.Window.Start(now) {
							t.Fatalf("step %d: event at %d refused as late at %d, but level %+v still covers it", step, ts, now, l.Window)
						}
					}
				}
				offered = append(offered, ev)
			case op < 7: // time passes, now and then a lot of it
				if rapid.IntRange(0, 4).Draw(t, "jump") == 0 {
					now += rapid.Int64Range(0, 20*86400_000).Draw(t, "bigstep")
				} else {
					now += rapid.Int64Range(0, 600_000).Draw(t, "step")
				}
			case op < 8: // persist and reload the row
				p.Advance(row, now)
				buf := p.AppendRow(nil, row)
				fresh := p.NewRow()
				if err := p.DecodeRow(buf, fresh); err != nil {
					t.Fatalf("step %d: decode of a row just encoded: %v", step, err)
				}
				row = fresh
			default: // evaluate at now
				p.Eval(row, now, got)
				for i := range p.Outputs {
					want, mag := refValue(p, &p.Outputs[i], offered, now)
					if !sameValue(got[i], want, mag) {
						t.Fatalf("step %d: %s (window %+v) at %d = %v, reference %v (%d events offered)",
							step, p.Outputs[i].Name, p.Levels[p.Outputs[i].Level].Window, now, got[i], want, len(offered))
					}
				}
			}
		}
	})
}

// TestStable checks Plan.Stable against Eval: anywhere in the span it
// returns, Eval gives the values it gives at t, and so does the reference
// model; the span holds t.
func TestStable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, err := Compile(drawView(t))
		if err != nil {
			t.Fatal(err)
		}
		now := rapid.Int64Range(1_600_000_000_000, 1_900_000_000_000).Draw(t, "start")
		row := p.NewRow()
		var offered []event.Event
		for range rapid.IntRange(0, 40).Draw(t, "events") {
			ts := now - rapid.Int64Range(-120_000, 3*3600_000).Draw(t, "age") // some in the future
			ev := event.Event{TS: ts, Fields: []event.Value{
				event.IntValue(1),
				event.StringValue(rapid.SampledFrom(kinds).Draw(t, "kind")),
				event.FloatValue(float64(rapid.IntRange(-5, 50).Draw(t, "x"))),
				event.IntValue(rapid.Int64Range(-100, 100).Draw(t, "n")),
			}}
			if p.Fold(row, &ev, now) != Late {
				offered = append(offered, ev)
			}
			now += rapid.Int64Range(0, 30_000).Draw(t, "step")
		}
		at := now + rapid.Int64Range(-600_000, 600_000).Draw(t, "at")
		from, until := p.Stable(row, at)
		if eff := max(at, row.Clock); from > eff || until <= eff {
			t.Fatalf("span [%d, %d) does not hold the evaluation time %d", from, until, eff)
		}
		want := make([]event.Value, len(p.Outputs))
		p.Eval(row, at, want)
		got := make([]event.Value, len(p.Outputs))
		// Probe the edges of the span and points inside it (an unbounded
		// side is probed a day away).
		lo, hi := max(from, at-86400_000), min(until-1, at+86400_000)
		probes := []int64{lo, hi, at}
		for range 8 {
			probes = append(probes, rapid.Int64Range(lo, hi).Draw(t, "u"))
		}
		for _, u := range probes {
			p.Eval(row, u, got)
			for i := range got {
				if !got[i].Equal(want[i]) {
					t.Fatalf("%s at %d = %v, at %d = %v, but Stable(%d) = [%d, %d)", p.Outputs[i].Name, u, got[i], at, want[i], at, from, until)
				}
				if ref, mag := refValue(p, &p.Outputs[i], offered, max(u, row.Clock)); !sameValue(got[i], ref, mag) {
					t.Fatalf("%s at %d = %v, reference %v", p.Outputs[i].Name, u, got[i], ref)
				}
			}
		}
	})
}

// LateBefore(now) is the one cut Late(ts, now) makes: late exactly below it.
func TestLateBeforeAgreesWithLate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, err := Compile(drawView(t))
		if err != nil {
			t.Fatal(err)
		}
		now := rapid.Int64Range(1_600_000_000_000, 1_900_000_000_000).Draw(t, "now")
		before := p.LateBefore(now)
		for range 50 {
			ts := now - rapid.Int64Range(-60_000, 50*86_400_000).Draw(t, "age")
			if late := p.Late(ts, now); late != (ts < before) {
				t.Fatalf("Late(%d, %d) = %v, but LateBefore = %d", ts, now, late, before)
			}
		}
		if before != math.MinInt64 {
			if !p.Late(before-1, now) || p.Late(before, now) {
				t.Fatalf("the cut %d is not where Late changes", before)
			}
		}
	})
}
