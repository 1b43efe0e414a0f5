package tile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// feedView is RW1's user_engagement view, built by hand so this package's
// tests do not depend on the project-file parser.
func feedView() *definition.View {
	win := func(ds ...string) ([]time.Duration, []string) {
		var out []time.Duration
		for _, d := range ds {
			switch d {
			case "1h":
				out = append(out, time.Hour)
			case "24h":
				out = append(out, 24*time.Hour)
			case "7d":
				out = append(out, 7*24*time.Hour)
			case "30d":
				out = append(out, 30*24*time.Hour)
			}
		}
		return out, ds
	}
	kind := func(k string) []definition.Filter {
		return []definition.Filter{{Field: "kind", Values: []event.Value{event.StringValue(k)}}}
	}
	src := &definition.Source{Name: "engagements", Type: definition.Push, EventTime: "ts", Fields: []definition.Field{
		{Name: "user_id", Type: event.Int64}, {Name: "post_id", Type: event.Int64},
		{Name: "kind", Type: event.String}, {Name: "dwell_ms", Type: event.Float64},
	}}
	f := func(name string, agg definition.Agg, field string, where []definition.Filter, ws ...string) *definition.Feature {
		w, n := win(ws...)
		if len(ws) == 0 {
			n = nil
		}
		return &definition.Feature{Name: name, Agg: agg, Field: field, Where: where, Windows: w, WindowNames: n}
	}
	return &definition.View{
		Name: "user_engagement", Entity: &definition.Entity{Name: "user", Keys: []string{"user_id"}}, Source: src,
		Features: []*definition.Feature{
			f("views", definition.Count, "", kind("view"), "1h", "24h", "7d", "30d"),
			f("likes", definition.Count, "", kind("like"), "1h", "24h", "7d", "30d"),
			f("dwell_mean", definition.Mean, "dwell_ms", kind("view"), "24h", "7d"),
			f("dwell_max", definition.Max, "dwell_ms", nil, "24h"),
			f("last_post", definition.Last, "post_id", nil),
		},
	}
}

// busyRow folds n events spread over the last 30 days into a fresh row.
func busyRow(t testing.TB, p *Plan, now int64, n int, seed uint64) *Row {
	r := p.NewRow()
	rng := rand.New(rand.NewPCG(seed, 1))
	kinds := []string{"view", "view", "view", "like", "share"}
	for i := range n {
		ev := event.Event{
			TS: now - rng.Int64N(30*86400_000),
			Fields: []event.Value{
				event.IntValue(7), event.IntValue(int64(i)),
				event.StringValue(kinds[rng.IntN(len(kinds))]), event.FloatValue(rng.Float64() * 9000),
			},
		}
		if i%50 == 0 {
			ev.TS = now + rng.Int64N(30_000) // a few from the future
		}
		p.Fold(r, &ev, now)
		if i%3 == 0 { // some came from streams
			r.MarkApplied(event.Origin{Stream: 1 + rng.Uint64N(5)<<40, Offset: uint64(i)})
		}
	}
	return r
}

func TestPositions(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	r := p.NewRow()
	a, b := event.Origin{Stream: 9, Offset: 10}, event.Origin{Stream: 3, Offset: 0}
	if r.Applied(a) || r.Applied(b) || r.Applied(event.Origin{}) {
		t.Fatal("a fresh row reports an applied position")
	}
	r.MarkApplied(a)
	r.MarkApplied(b)
	r.MarkApplied(event.Origin{Stream: 9, Offset: 4}) // older: no effect
	r.MarkApplied(event.Origin{})                     // pushed: no effect
	for _, c := range []struct {
		o    event.Origin
		want bool
	}{
		{event.Origin{Stream: 9, Offset: 10}, true},
		{event.Origin{Stream: 9, Offset: 3}, true},
		{event.Origin{Stream: 9, Offset: 11}, false},
		{event.Origin{Stream: 3, Offset: 0}, true},
		{event.Origin{Stream: 3, Offset: 1}, false},
		{event.Origin{Stream: 4, Offset: 0}, false},
		{event.Origin{}, false},
	} {
		if got := r.Applied(c.o); got != c.want {
			t.Errorf("Applied(%+v) = %v, want %v", c.o, got, c.want)
		}
	}
	if got := r.Positions(); len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("Positions() = %v, want [%v %v]", got, b, a)
	}
	back := p.NewRow()
	if err := p.DecodeRow(p.AppendRow(nil, r), back); err != nil {
		t.Fatal(err)
	}
	if got := back.Positions(); len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("decoded Positions() = %v", got)
	}
	p.Reset(back)
	if back.Applied(a) {
		t.Fatal("Reset kept a position")
	}
}

// TestReadsVersion1 checks rows written before positions existed still decode.
func TestReadsVersion1(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	now := int64(1_790_000_000_000)
	r := p.NewRow()
	for i := range 100 {
		p.Fold(r, &event.Event{TS: now - int64(i)*60_000, Fields: []event.Value{
			event.IntValue(7), event.IntValue(int64(i)), event.StringValue("view"), event.FloatValue(10)}}, now)
	}
	v2 := p.AppendRow(nil, r)
	// Version 1 is version 2 without the positions count (a single 0 byte
	// for a row with none).
	body := bytes.Clone(v2[:len(v2)-5])
	body[0] = 1
	v1 := binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	back := p.NewRow()
	if err := p.DecodeRow(v1, back); err != nil {
		t.Fatalf("version 1 row: %v", err)
	}
	if again := p.AppendRow(nil, back); !bytes.Equal(again, v2) {
		t.Fatal("a version 1 row re-encodes differently from the row it was made from")
	}
}

func TestRowRoundTrip(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Outputs) != 12 {
		t.Fatalf("user_engagement serves %d values, want 12", len(p.Outputs))
	}
	now := int64(1_790_000_000_000)
	for _, n := range []int{0, 1, 10, 5000} {
		r := busyRow(t, p, now, n, uint64(n))
		enc := p.AppendRow(nil, r)
		back := p.NewRow()
		if err := p.DecodeRow(enc, back); err != nil {
			t.Fatalf("%d events: %v", n, err)
		}
		if again := p.AppendRow(nil, back); !bytes.Equal(enc, again) {
			t.Fatalf("%d events: re-encoding differs", n)
		}
		want := make([]event.Value, len(p.Outputs))
		got := make([]event.Value, len(p.Outputs))
		for _, at := range []int64{now, now + 20_000, now + 3600_000} {
			p.Eval(r, at, want)
			p.Eval(back, at, got)
			for i := range want {
				if !got[i].Equal(want[i]) {
					t.Fatalf("%d events at %d: %s = %v after decode, %v before", n, at, p.Outputs[i].Name, got[i], want[i])
				}
			}
		}
		t.Logf("%d events: %d tiles, %d bytes", n, p.Tiles(r), len(enc))
	}
}

func TestDecodeRefusesBadInput(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	now := int64(1_790_000_000_000)
	good := p.AppendRow(nil, busyRow(t, p, now, 300, 1))
	r := p.NewRow()
	// Every truncation and every single-byte change is refused.
	for i := range good {
		if err := p.DecodeRow(good[:i], r); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err %v, want ErrCorrupt", i, err)
		}
		bad := bytes.Clone(good)
		bad[i] ^= 0x41
		if err := p.DecodeRow(bad, r); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d changed: err %v, want ErrCorrupt", i, err)
		}
	}
	// A row of another layout is refused as such.
	other := feedView()
	other.Features = other.Features[:2]
	op, err := Compile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.DecodeRow(good, op.NewRow()); !errors.Is(err, ErrLayout) {
		t.Fatalf("row of another layout: err %v, want ErrLayout", err)
	}
	// A changed filter changes the layout too.
	other = feedView()
	other.Features[0].Where[0].Values[0] = event.StringValue("like")
	op, _ = Compile(other)
	if op.Fingerprint == p.Fingerprint {
		t.Fatal("a view with another filter has the same fingerprint")
	}
}

func TestAppendKeyDistinct(t *testing.T) {
	seen := map[string]string{}
	add := func(view string, key ...event.Value) {
		k := string(AppendKey(nil, view, key))
		desc := view + " " + event.Event{Fields: key}.String()
		if prev, ok := seen[k]; ok {
			t.Fatalf("%s and %s share a key", prev, desc)
		}
		seen[k] = desc
	}
	add("user", event.IntValue(1))
	add("user", event.IntValue(-1))
	add("user", event.StringValue("1"))
	add("use", event.StringValue("r"))
	add("user", event.StringValue("a"), event.StringValue("bc"))
	add("user", event.StringValue("ab"), event.StringValue("c"))
	add("user", event.IntValue(1), event.IntValue(2))
}

// FuzzDecodeRow feeds arbitrary bytes to the decoder: it must refuse or
// accept without panicking, and what it accepts must evaluate and re-encode
// to the same bytes.
func FuzzDecodeRow(f *testing.F) {
	p, err := Compile(feedView())
	if err != nil {
		f.Fatal(err)
	}
	now := int64(1_790_000_000_000)
	for _, n := range []int{0, 1, 3, 40} {
		f.Add(p.AppendRow(nil, busyRow(f, p, now, n, uint64(n))))
	}
	r := p.NewRow()
	out := make([]event.Value, len(p.Outputs))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		check := func(data []byte) {
			if err := p.DecodeRow(data, r); err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLayout) {
					t.Fatalf("error %v wraps neither ErrCorrupt nor ErrLayout", err)
				}
				return
			}
			p.Eval(r, now, out)
			if again := p.AppendRow(nil, r); !bytes.Equal(again, data) {
				t.Fatalf("accepted row re-encodes differently")
			}
		}
		check(data)
		// Most random inputs fail the checksum; also try the same bytes as
		// a body with a valid header and checksum, to reach the parser.
		body := append([]byte{RowVersion}, binary.LittleEndian.AppendUint32(nil, p.Fingerprint)...)
		body = append(body, data...)
		check(binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli)))
	})
}

func TestRowBytesBoundsRealRows(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	empty, full := p.RowBytes()
	if empty <= 0 || full <= empty {
		t.Fatalf("estimates empty %d, full %d", empty, full)
	}
	// A busy row (no future events) of 20,000 events over 30 days is no
	// larger than the full estimate plus a little for larger counts.
	now := int64(1_790_000_000_000)
	r := p.NewRow()
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 20000 {
		ev := event.Event{TS: now - rng.Int64N(30*86400_000), Fields: []event.Value{
			event.IntValue(1), event.IntValue(int64(i)), event.StringValue([]string{"view", "like"}[i%2]), event.FloatValue(float64(i)),
		}}
		p.Fold(r, &ev, now)
	}
	got := len(p.AppendRow(nil, r))
	if got > full+full/10 {
		t.Fatalf("a busy row takes %d bytes, the full estimate is %d", got, full)
	}
	t.Logf("empty %d B, full %d B, busy row %d B", empty, full, got)
}

// A row of one generation of a view is no row to a plan of another
// generation, the compiled plan (generation 0) included, and is read back
// by its own.
func TestGenerations(t *testing.T) {
	p, err := Compile(feedView())
	if err != nil {
		t.Fatal(err)
	}
	if p.WithGeneration(0) != p || p.Generation() != 0 || p.Layout != p.Fingerprint {
		t.Fatal("generation 0 is not the compiled plan")
	}
	now := int64(1_790_000_000_000)
	g1, g2 := p.WithGeneration(1), p.WithGeneration(2)
	if g1.Layout != p.Layout || g2.Layout != p.Layout || g1.Generation() != 1 {
		t.Fatal("a generation changed the layout fingerprint")
	}
	row := g1.AppendRow(nil, busyRow(t, g1, now, 50, 1))
	if err := g1.DecodeRow(row, g1.NewRow()); err != nil {
		t.Fatalf("generation 1 reading its own row: %v", err)
	}
	for _, other := range []*Plan{p, g2} {
		if err := other.DecodeRow(row, other.NewRow()); !errors.Is(err, ErrLayout) {
			t.Fatalf("generation %d reading a row of generation 1: %v, want ErrLayout", other.Generation(), err)
		}
	}
	if p.Fingerprint == g1.Fingerprint || g1.Fingerprint == g2.Fingerprint {
		t.Fatal("generations share a fingerprint")
	}
}
