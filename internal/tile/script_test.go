package tile

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// TestScripts runs the window scripts in testdata/windows: a small language
// that sets the clock, pushes events and states the values a reader must
// see, so window semantics can be reviewed by eye.
//
//	features                    then one feature per indented line:
//	  n: count [1h]             name: agg [field] [where f=v|v] [windows]
//	  xs: sum x where kind=a|b [1h 24h]
//	at 2026-11-26T10:00:00Z     set the clock
//	advance 90s                 move it forward
//	push -1m kind=a x=2         an event 1m before the clock (+30s: in the future;
//	                            or an RFC 3339 time); "=> late" expects it refused
//	expect n_1h=1 xs_1h=2       values at the clock (null for none)
//	reload                      encode and decode the row, as a restart would
//
// Events have the fields id (int64), kind (string) and x (float64).
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/windows/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/windows")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

func runScript(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	view := &definition.View{Name: "v", Entity: &definition.Entity{Name: "e", Keys: []string{"id"}}, Source: testSource}
	var (
		plan *Plan
		row  *Row
		now  int64
	)
	sc := bufio.NewScanner(f)
	line := 0
	inFeatures := false
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s:%d: %s", file, line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.Index(text, "#"); i >= 0 {
			text = text[:i]
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		if inFeatures && strings.HasPrefix(text, "  ") {
			feat, err := parseScriptFeature(strings.TrimSpace(text))
			if err != nil {
				fail("%v", err)
			}
			view.Features = append(view.Features, feat)
			continue
		}
		if inFeatures {
			inFeatures = false
			if plan, err = Compile(view); err != nil {
				fail("%v", err)
			}
			row = plan.NewRow()
		}
		words := strings.Fields(text)
		switch words[0] {
		case "features":
			inFeatures = true
		case "at":
			tm, err := time.Parse(time.RFC3339, words[1])
			if err != nil {
				fail("%v", err)
			}
			now = tm.UnixMilli()
		case "advance":
			d, err := time.ParseDuration(words[1])
			if err != nil {
				fail("%v", err)
			}
			now += d.Milliseconds()
		case "reload":
			plan.Advance(row, now)
			fresh := plan.NewRow()
			if err := plan.DecodeRow(plan.AppendRow(nil, row), fresh); err != nil {
				fail("%v", err)
			}
			row = fresh
		case "push":
			wantLate := len(words) >= 2 && words[len(words)-2] == "=>" && words[len(words)-1] == "late"
			if wantLate {
				words = words[:len(words)-2]
			}
			ev, err := parseScriptEvent(words[1:], now)
			if err != nil {
				fail("%v", err)
			}
			if out := plan.Fold(row, &ev, now); (out == Late) != wantLate {
				fail("push: outcome %v, want late=%v", out, wantLate)
			}
		case "expect":
			vals := make([]event.Value, len(plan.Outputs))
			plan.Eval(row, now, vals)
			for _, w := range words[1:] {
				name, want, ok := strings.Cut(w, "=")
				if !ok {
					fail("expect %q: write name=value", w)
				}
				idx := -1
				for i, o := range plan.Outputs {
					if strings.TrimPrefix(o.Name, "v:") == name {
						idx = i
					}
				}
				if idx < 0 {
					fail("no feature %q", name)
				}
				if got := vals[idx].String(); got != want {
					fail("%s = %s, want %s (at %s)", name, got, want, time.UnixMilli(now).UTC().Format(time.RFC3339))
				}
			}
		default:
			fail("unknown command %q", words[0])
		}
	}
}

// parseScriptFeature reads "name: agg [field] [where f=v|v] [w1 w2]".
func parseScriptFeature(s string) (*definition.Feature, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("feature %q: write name: agg ...", s)
	}
	f := &definition.Feature{Name: name}
	if i := strings.Index(rest, "["); i >= 0 {
		for _, w := range strings.Fields(strings.Trim(rest[i:], "[] ")) {
			d, err := projectfile.ParseDuration(w)
			if err != nil {
				return nil, err
			}
			f.Windows = append(f.Windows, d)
			f.WindowNames = append(f.WindowNames, w)
		}
		rest = rest[:i]
	}
	words := strings.Fields(rest)
	agg, ok := definition.ParseAgg(words[0])
	if !ok {
		return nil, fmt.Errorf("unknown aggregation %q", words[0])
	}
	f.Agg = agg
	words = words[1:]
	if len(words) > 0 && words[0] != "where" {
		f.Field, words = words[0], words[1:]
	}
	if len(words) == 2 && words[0] == "where" {
		field, vals, _ := strings.Cut(words[1], "=")
		fl := definition.Filter{Field: field}
		for _, v := range strings.Split(vals, "|") {
			fl.Values = append(fl.Values, event.StringValue(v))
		}
		f.Where = append(f.Where, fl)
	}
	return f, nil
}

// parseScriptEvent reads "TIME [kind=K] [x=X] [id=N]"; TIME is -1m, +30s or RFC 3339.
func parseScriptEvent(words []string, now int64) (event.Event, error) {
	ev := event.Event{Fields: []event.Value{event.IntValue(1), {}, {}, {}}}
	if len(words) == 0 {
		return ev, fmt.Errorf("push needs a time")
	}
	switch w := words[0]; w[0] {
	case '-', '+':
		d, err := time.ParseDuration(w)
		if err != nil {
			return ev, err
		}
		ev.TS = now + d.Milliseconds()
	default:
		tm, err := time.Parse(time.RFC3339Nano, w)
		if err != nil {
			return ev, err
		}
		ev.TS = tm.UnixMilli()
	}
	for _, w := range words[1:] {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "kind":
			ev.Fields[1] = event.StringValue(v)
		case "x":
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return ev, err
			}
			ev.Fields[2] = event.FloatValue(x)
		case "id":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return ev, err
			}
			ev.Fields[0] = event.IntValue(n)
		default:
			return ev, fmt.Errorf("unknown field %q", k)
		}
	}
	return ev, nil
}
