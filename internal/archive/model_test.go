package archive

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/event"
)

// model is the naive reference: per date, the best copy of every origin.
type model map[string]map[Origin]Archived

func (m model) add(evs []Archived) {
	for _, e := range evs {
		d := dateOf(e.Time)
		if m[d] == nil {
			m[d] = map[Origin]Archived{}
		}
		if old, ok := m[d][e.Origin]; !ok || compareContent(&e, &old) < 0 {
			m[d][e.Origin] = e
		}
	}
}

func (m model) retain(keep time.Duration, now time.Time) {
	cutoff := now.Add(-keep)
	for d := range m {
		start, _ := time.Parse(dateLayout, d)
		if !start.Add(day).After(cutoff) {
			delete(m, d)
		}
	}
}

func (m model) scan(from, to time.Time) []Archived {
	var out []Archived
	for _, evs := range m {
		for _, e := range evs {
			if e.Time >= from.UnixMilli() && e.Time < to.UnixMilli() {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, compareOrder)
	return out
}

// gen draws events from small pools so that origins, batch IDs and dates
// repeat. An origin always has the same event time (the caller's contract);
// its other columns may differ between copies.
type gen struct {
	times   map[Origin]int64
	batches map[string][]Archived
}

func (g *gen) value(t *rapid.T, typ event.Type, label string) event.Value {
	if rapid.IntRange(0, 4).Draw(t, label+"null") == 0 {
		return event.Value{}
	}
	switch typ {
	case event.Int64:
		return event.IntValue(rapid.Int64Range(-3, 3).Draw(t, label))
	case event.Float64:
		return event.FloatValue(rapid.SampledFrom([]float64{0, negZero(), 1.5, -2, 1e300}).Draw(t, label))
	case event.String:
		return event.StringValue(rapid.SampledFrom([]string{"", "a", "b", "héllo"}).Draw(t, label))
	}
	return event.BoolValue(rapid.Bool().Draw(t, label))
}

func negZero() float64 {
	z := 0.0
	return -z
}

func (g *gen) event(t *rapid.T) Archived {
	o := Origin{
		Stream: rapid.SampledFrom([]string{"", "t/0", "t/1"}).Draw(t, "stream"),
		Offset: rapid.Int64Range(0, 12).Draw(t, "offset"),
	}
	ts, ok := g.times[o]
	if !ok {
		// Six dates around day0, with times on day boundaries likely.
		ts = ms(day0) + rapid.Int64Range(-3, 2).Draw(t, "day")*int64(day/time.Millisecond) +
			rapid.SampledFrom([]int64{0, 1, 3_600_000, 86_399_999}).Draw(t, "within")
		g.times[o] = ts
	}
	src := testSource()
	e := Archived{Time: ts, Arrival: ts + rapid.Int64Range(0, 3).Draw(t, "arrival"), Origin: o}
	for _, f := range src.Fields {
		e.Fields = append(e.Fields, g.value(t, f.Type, f.Name))
	}
	return e
}

func (g *gen) batch(t *rapid.T) (string, []Archived) {
	id := fmt.Sprintf("b%d", rapid.IntRange(0, 5).Draw(t, "batch"))
	if evs, ok := g.batches[id]; ok {
		return id, evs // a replay: same ID, same events
	}
	evs := make([]Archived, rapid.IntRange(0, 8).Draw(t, "size"))
	for i := range evs {
		evs[i] = g.event(t)
	}
	g.batches[id] = evs
	return id, evs
}

func drawTime(t *rapid.T, label string) time.Time {
	return day0.Add(time.Duration(rapid.Int64Range(-4*24, 3*24).Draw(t, label)) * time.Hour)
}

// TestProperty runs random Appends (with replayed batch IDs and repeated
// origins), Compacts, Retains and Scans, and checks every Scan against the
// model, in order.
//
// Under the race detector it runs 20 checks per backend unless
// -rapid.checks says otherwise (the test is sequential; the race detector
// only makes it slow).
func TestProperty(t *testing.T) {
	if raceEnabled {
		set := false
		flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
		if !set {
			old := flag.Lookup("rapid.checks").Value.String()
			flag.Set("rapid.checks", "20")
			defer flag.Set("rapid.checks", old)
		}
	}
	for _, backend := range []string{"mem", "dir"} {
		t.Run(backend, func(t *testing.T) {
			parent := t.TempDir()
			rapid.Check(t, func(t *rapid.T) {
				var b Bucket = NewMem()
				if backend == "dir" {
					root, err := os.MkdirTemp(parent, "")
					if err != nil {
						t.Fatal(err)
					}
					if b, err = NewDir(root); err != nil {
						t.Fatal(err)
					}
				}
				ctx, a, src := context.Background(), New(b), testSource()
				m := model{}
				g := &gen{times: map[Origin]int64{}, batches: map[string][]Archived{}}
				check := func(from, to time.Time) {
					var got []Archived
					if err := a.Scan(ctx, src, from, to, func(e Archived) error {
						got = append(got, e)
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					if want := m.scan(from, to); !equalEvents(got, want) {
						t.Fatalf("scan [%v, %v):\n got %v\nwant %v", from, to, got, want)
					}
				}
				t.Repeat(map[string]func(*rapid.T){
					"append": func(t *rapid.T) {
						id, evs := g.batch(t)
						if err := a.Append(ctx, src, id, slices.Clone(evs)); err != nil {
							t.Fatal(err)
						}
						m.add(evs)
					},
					"compact": func(t *rapid.T) {
						if err := a.Compact(ctx, src, drawTime(t, "date")); err != nil {
							t.Fatal(err)
						}
					},
					"retain": func(t *rapid.T) {
						keep := time.Duration(rapid.IntRange(0, 4).Draw(t, "keep")) * day
						now := drawTime(t, "now")
						if err := a.Retain(ctx, src, keep, now); err != nil {
							t.Fatal(err)
						}
						m.retain(keep, now)
					},
					"scan": func(t *rapid.T) {
						check(drawTime(t, "from"), drawTime(t, "to"))
					},
					"scanAll": func(*rapid.T) {
						check(time.UnixMilli(0), time.UnixMilli(maxTime+1))
					},
				})
			})
		})
	}
}
