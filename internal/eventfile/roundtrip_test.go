package eventfile

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
)

// Random events of a random source, written in each format as the world
// writes them (CSV and JSON lines by hand, Parquet by parquet-go), read
// back equal.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		g := genSource(rt)
		evs := g.events(rt)
		files := map[Format]string{
			CSV:       filepath.Join(dir, "events.csv"),
			JSONLines: filepath.Join(dir, "events.jsonl"),
			Parquet:   filepath.Join(dir, "events.parquet"),
		}
		for format, content := range map[Format][]byte{
			CSV:       g.csv(rt, evs),
			JSONLines: g.jsonLines(rt, evs),
			Parquet:   g.parquet(rt, evs),
		} {
			if err := os.WriteFile(files[format], content, 0o644); err != nil {
				rt.Fatal(err)
			}
			var got []event.Event
			err := Read(context.Background(), files[format], g.dec, g.src, Options{Now: now}, func(row int, ev *event.Event, problems []Problem) error {
				if ev == nil {
					return fmt.Errorf("row %d: %v", row, problems)
				}
				got = append(got, event.Event{TS: ev.TS, Fields: append([]event.Value(nil), ev.Fields...)})
				return nil
			})
			if err != nil {
				rt.Fatalf("%v:\n%s\n%v", format, content, err)
			}
			if len(got) != len(evs) {
				rt.Fatalf("%v: %d events read, %d written", format, len(got), len(evs))
			}
			for i := range evs {
				if !sameEvent(got[i], evs[i]) {
					rt.Fatalf("%v: event %d read as %v, written %v", format, i, got[i], evs[i])
				}
			}
		}
	})
}

func sameEvent(a, b event.Event) bool {
	if a.TS != b.TS || len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if !a.Fields[i].Equal(b.Fields[i]) {
			return false
		}
	}
	return true
}

// genSrc is a random source and how its Parquet files store each field.
type genSrc struct {
	src  *definition.Source
	dec  *eventjson.Decoder
	keys []bool
	// narrow[i] says field i's values fit INT32 or FLOAT, its Parquet
	// column's type.
	narrow []bool
}

func genSource(rt *rapid.T) *genSrc {
	names := []string{"user_id", "kind", "a b", "x,y", `q"q`, "é", "n"}
	types := []event.Type{event.Int64, event.Float64, event.String, event.Bool}
	nf := rapid.IntRange(1, 6).Draw(rt, "fields")
	src := &definition.Source{
		Name:          "s",
		Type:          definition.Push,
		EventTime:     rapid.SampledFrom([]string{"ts", "event time"}).Draw(rt, "time"),
		MaxFutureSkew: time.Minute,
		MinEventTime:  rapid.SampledFrom([]int64{0, definition.DefaultMinEventTime}).Draw(rt, "min"),
	}
	g := &genSrc{src: src}
	var keys []string
	for i := range nf {
		name := rapid.SampledFrom(names).Draw(rt, "name") + strconv.Itoa(i)
		src.Fields = append(src.Fields, definition.Field{Name: name, Type: rapid.SampledFrom(types).Draw(rt, "type")})
		key := rapid.IntRange(0, 2).Draw(rt, "key") == 0
		if key {
			keys = append(keys, name)
		}
		g.keys = append(g.keys, key)
		g.narrow = append(g.narrow, rapid.Bool().Draw(rt, "narrow"))
	}
	p := &definition.Project{Name: "p", Sources: []*definition.Source{src}}
	if len(keys) > 0 {
		e := &definition.Entity{Name: "e", Keys: keys}
		p.Entities = []*definition.Entity{e}
		p.Views = []*definition.View{{Name: "v", Entity: e, Source: src}}
	}
	g.dec = eventjson.NewDecoder(p)
	return g
}

func (g *genSrc) events(rt *rapid.T) []event.Event {
	n := rapid.IntRange(0, 40).Draw(rt, "events")
	evs := make([]event.Event, n)
	for i := range evs {
		ev := event.Event{
			TS:     rapid.Int64Range(g.src.MinEventTime, now+g.src.MaxFutureSkew.Milliseconds()).Draw(rt, "ts"),
			Fields: make([]event.Value, len(g.src.Fields)),
		}
		for j, f := range g.src.Fields {
			if !g.keys[j] && rapid.IntRange(0, 3).Draw(rt, "null") == 0 {
				continue
			}
			switch f.Type {
			case event.Int64:
				if g.narrow[j] {
					ev.Fields[j] = event.IntValue(int64(rapid.Int32().Draw(rt, "int32")))
				} else {
					ev.Fields[j] = event.IntValue(rapid.Int64().Draw(rt, "int64"))
				}
			case event.Float64:
				x := rapid.Float64().Filter(func(x float64) bool { return event.FloatProblem(x) == "" }).Draw(rt, "float64")
				if g.narrow[j] {
					x = float64(float32(x))
					if math.IsInf(x, 0) {
						x = math.Copysign(math.MaxFloat32, x)
					}
				}
				ev.Fields[j] = event.FloatValue(x)
			case event.String:
				// Not empty, which a CSV file writes as null; no '\r',
				// which a CSV reader drops from "\r\n" in a cell.
				s := rapid.StringN(1, 12, -1).Filter(func(s string) bool { return !strings.Contains(s, "\r") }).Draw(rt, "string")
				ev.Fields[j] = event.StringValue(s)
			case event.Bool:
				ev.Fields[j] = event.BoolValue(rapid.Bool().Draw(rt, "bool"))
			}
		}
		evs[i] = ev
	}
	return evs
}

// timeText writes ts as epoch milliseconds or RFC 3339, in UTC or not.
func timeText(rt *rapid.T, ts int64) string {
	switch rapid.IntRange(0, 2).Draw(rt, "time as") {
	case 0:
		return strconv.FormatInt(ts, 10)
	case 1:
		return time.UnixMilli(ts).UTC().Format(time.RFC3339Nano)
	}
	zone := time.FixedZone("", rapid.IntRange(-12, 14).Draw(rt, "zone")*3600)
	t := time.UnixMilli(ts).In(zone)
	if t.Year() < 1970 { // refused as written, though after 1970 in UTC
		t = t.UTC()
	}
	return t.Format(time.RFC3339Nano)
}

func valueText(v event.Value) string {
	switch v.Kind {
	case event.Int64:
		return strconv.FormatInt(v.Int, 10)
	case event.Float64:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case event.String:
		return v.Str
	case event.Bool:
		return strconv.FormatBool(v.Bool)
	}
	return ""
}

func csvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// columns returns the order a file has its columns in: -1 is the event
// time; a field that is null in every event may be left out.
func (g *genSrc) columns(rt *rapid.T, evs []event.Event) []int {
	cols := []int{-1}
	for j := range g.src.Fields {
		allNull := true
		for _, ev := range evs {
			allNull = allNull && ev.Fields[j].Kind == event.Null
		}
		if !allNull || g.keys[j] || rapid.Bool().Draw(rt, "keep") {
			cols = append(cols, j)
		}
	}
	return rapid.Permutation(cols).Draw(rt, "columns")
}

func (g *genSrc) csv(rt *rapid.T, evs []event.Event) []byte {
	var b strings.Builder
	cols := g.columns(rt, evs)
	eol := rapid.SampledFrom([]string{"\n", "\r\n"}).Draw(rt, "eol")
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		if c < 0 {
			b.WriteString(csvQuote(g.src.EventTime))
		} else {
			b.WriteString(csvQuote(g.src.Fields[c].Name))
		}
	}
	b.WriteString(eol)
	for _, ev := range evs {
		for i, c := range cols {
			if i > 0 {
				b.WriteByte(',')
			}
			switch {
			case c < 0:
				b.WriteString(timeText(rt, ev.TS))
			case ev.Fields[c].Kind == event.String:
				b.WriteString(csvQuote(ev.Fields[c].Str))
			default:
				b.WriteString(valueText(ev.Fields[c]))
			}
		}
		b.WriteString(eol)
	}
	return []byte(b.String())
}

func (g *genSrc) jsonLines(rt *rapid.T, evs []event.Event) []byte {
	var b strings.Builder
	quote := func(s string) string {
		q, err := json.Marshal(s)
		if err != nil {
			rt.Fatal(err)
		}
		return string(q)
	}
	for _, ev := range evs {
		b.WriteByte('{')
		for i, c := range g.columns(rt, evs) {
			if i > 0 {
				b.WriteString(", ")
			}
			if c < 0 {
				b.WriteString(quote(g.src.EventTime) + ":")
				if ts := timeText(rt, ev.TS); strings.Contains(ts, "T") {
					b.WriteString(quote(ts))
				} else {
					b.WriteString(ts)
				}
				continue
			}
			b.WriteString(quote(g.src.Fields[c].Name) + ":")
			switch v := ev.Fields[c]; v.Kind {
			case event.Null:
				b.WriteString("null")
			case event.String:
				b.WriteString(quote(v.Str))
			default:
				b.WriteString(valueText(v))
			}
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

func (g *genSrc) parquet(rt *rapid.T, evs []event.Event) []byte {
	var cols []pcol
	var conv []func(ev event.Event) any
	for _, c := range g.columns(rt, evs) {
		if c < 0 {
			switch rapid.IntRange(0, 4).Draw(rt, "time column") {
			case 0:
				cols = append(cols, pcol{g.src.EventTime, parquet64()})
				conv = append(conv, func(ev event.Event) any { return ev.TS })
			case 1:
				cols = append(cols, pcol{g.src.EventTime, parquet.Timestamp(parquet.Millisecond)})
				conv = append(conv, func(ev event.Event) any { return ev.TS })
			case 2:
				cols = append(cols, pcol{g.src.EventTime, parquet.Timestamp(parquet.Microsecond)})
				conv = append(conv, func(ev event.Event) any { return ev.TS*1000 + ev.TS%997 })
			case 3:
				cols = append(cols, pcol{g.src.EventTime, parquet.Timestamp(parquet.Nanosecond)})
				conv = append(conv, func(ev event.Event) any { return ev.TS*1_000_000 + ev.TS%999_983 })
			case 4:
				texts := map[int64]string{}
				for _, ev := range evs {
					texts[ev.TS] = timeText(rt, ev.TS)
				}
				cols = append(cols, pcol{g.src.EventTime, parquet.String()})
				conv = append(conv, func(ev event.Event) any { return texts[ev.TS] })
			}
			continue
		}
		var node parquet.Node
		switch f := g.src.Fields[c]; {
		case f.Type == event.Int64 && g.narrow[c]:
			node = parquet.Int(32)
			conv = append(conv, func(ev event.Event) any {
				if v := ev.Fields[c]; v.Kind != event.Null {
					return int(v.Int)
				}
				return nil
			})
		case f.Type == event.Int64:
			node = parquet.Int(64)
			conv = append(conv, func(ev event.Event) any {
				if v := ev.Fields[c]; v.Kind != event.Null {
					return v.Int
				}
				return nil
			})
		default:
			switch f.Type {
			case event.Float64:
				node = parquet.Leaf(parquet.DoubleType)
				if g.narrow[c] {
					node = parquet.Leaf(parquet.FloatType)
				}
			case event.String:
				node = parquet.String()
			case event.Bool:
				node = parquet.Leaf(parquet.BooleanType)
			}
			conv = append(conv, func(ev event.Event) any {
				switch v := ev.Fields[c]; v.Kind {
				case event.Float64:
					return v.Float
				case event.String:
					return v.Str
				case event.Bool:
					return v.Bool
				}
				return nil
			})
		}
		if !g.keys[c] || rapid.Bool().Draw(rt, "optional key") {
			node = parquet.Optional(node)
		}
		cols = append(cols, pcol{g.src.Fields[c].Name, node})
	}
	rows := make([][]any, len(evs))
	for i, ev := range evs {
		for _, f := range conv {
			rows[i] = append(rows[i], f(ev))
		}
	}
	codec := rapid.SampledFrom([]parquet.WriterOption{nil, parquet.Compression(&parquet.Snappy), parquet.Compression(&parquet.Zstd)}).Draw(rt, "codec")
	return encodeParquet(rt, cols, rows, rapid.IntRange(0, 10).Draw(rt, "row group"), codec)
}
