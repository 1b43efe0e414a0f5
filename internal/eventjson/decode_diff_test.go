package eventjson

// Differential tests: the scanner of decode.go against the reference
// decoder on encoding/json (decode_ref_test.go), on random and fuzzed
// input. Both must accept the same events with the same values, and refuse
// the rest with the same problems.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// checkPushSame decodes body with d and with the reference and fails t
// unless they agree.
func checkPushSame(t testing.TB, d *Decoder, body []byte) {
	t.Helper()
	src, events, err := d.DecodePush(body, decodeNow)
	rsrc, revents, rerr := refDecodePush(d, body, decodeNow)
	if msg := diffErrors(err, rerr); msg != "" {
		t.Fatalf("body %q:\n%s", body, msg)
	}
	if src != rsrc {
		t.Fatalf("body %q: source %v, reference %v", body, src, rsrc)
	}
	if len(events) != len(revents) {
		t.Fatalf("body %q: %d events, reference %d", body, len(events), len(revents))
	}
	for i := range events {
		if msg := diffEvents(events[i], revents[i]); msg != "" {
			t.Fatalf("body %q: event %d: %s", body, i, msg)
		}
	}
}

// diffErrors says how err differs from the reference's rerr.
func diffErrors(err, rerr error) string {
	if (err == nil) != (rerr == nil) {
		return fmt.Sprintf("error %v\nreference %v", err, rerr)
	}
	if err == nil {
		return ""
	}
	var re, rre *RequestError
	if !errors.As(err, &re) || !errors.As(rerr, &rre) {
		return fmt.Sprintf("error %T %v\nreference %T %v", err, err, rerr, rerr)
	}
	if re.Message != rre.Message || !reflect.DeepEqual(re.Details, rre.Details) {
		return fmt.Sprintf("error     %q %+v\nreference %q %+v", re.Message, re.Details, rre.Message, rre.Details)
	}
	return ""
}

// diffEvents says how ev differs from the reference's; floats must be the
// same bits (-0 is not 0).
func diffEvents(ev, ref event.Event) string {
	if ev.TS != ref.TS || len(ev.Fields) != len(ref.Fields) {
		return fmt.Sprintf("%v, reference %v", ev, ref)
	}
	for i, v := range ev.Fields {
		w := ref.Fields[i]
		if !v.Equal(w) || math.Float64bits(v.Float) != math.Float64bits(w.Float) || v != w {
			return fmt.Sprintf("field %d = %#v, reference %#v", i, v, w)
		}
	}
	return ""
}

// checkEventSame decodes raw as one event of src with DecodeEvent and
// fails t unless it agrees with the reference: the same event or the same
// problems when raw is valid JSON, a single "malformed JSON" problem when
// it is not.
func checkEventSame(t testing.TB, d *Decoder, src *definition.Source, raw []byte) {
	t.Helper()
	ev := event.Event{TS: 12345, Fields: make([]event.Value, len(src.Fields))}
	for i := range ev.Fields {
		ev.Fields[i] = event.StringValue("stale") // DecodeEvent must reset them
	}
	err := d.DecodeEvent(src, raw, decodeNow, &ev)
	if !json.Valid(raw) {
		var re *RequestError
		if !errors.As(err, &re) || len(re.Details) != 1 || re.Details[0].Index != 0 || re.Details[0].Field != "" ||
			!strings.HasPrefix(re.Details[0].Message, "malformed JSON at byte ") {
			t.Fatalf("raw %q is not valid JSON, but DecodeEvent returned %#v", raw, err)
		}
		return
	}
	ref := event.Event{Fields: make([]event.Value, len(src.Fields))}
	problems := refDecodeEvent(d, src, raw, 0, decodeNow, &ref, nil)
	if len(problems) > MaxDetails {
		problems = problems[:MaxDetails]
	}
	var rerr error
	if len(problems) > 0 {
		rerr = &RequestError{Message: "invalid event of source " + src.Name, Details: problems}
	}
	if msg := diffErrors(err, rerr); msg != "" {
		t.Fatalf("raw %q:\n%s", raw, msg)
	}
	if err == nil {
		if msg := diffEvents(ev, ref); msg != "" {
			t.Fatalf("raw %q: %s", raw, msg)
		}
	}
}

// streamDecoder is a decoder of testProject with its source of type kafka:
// DecodeEvent takes events of any source type.
func streamDecoder(t testing.TB) (*Decoder, *definition.Source) {
	yaml := strings.Replace(testProject, "    type: push\n", "    type: kafka\n    brokers: [localhost:9092]\n    topic: clicks\n", 1)
	p, err := projectfile.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if p.Source("clicks").Type != definition.Kafka {
		t.Fatal("the source of the stream decoder is not of type kafka")
	}
	return NewDecoder(p), p.Source("clicks")
}

// TestDecodeDifferential holds DecodePush and DecodeEvent to the reference
// on random requests: mostly valid ones of many shapes, some with problems,
// some with bytes changed at random.
func TestDecodeDifferential(t *testing.T) {
	d := testDecoder(t)
	sd, ssrc := streamDecoder(t)
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for k := range n {
		g := jsonGen{r: r, clean: k%2 == 0}
		body := g.push()
		checkPushSame(t, d, body)
		g.b = nil
		g.event()
		checkEventSame(t, sd, ssrc, g.b)
	}
}

// FuzzDecodeEventDifferential holds DecodeEvent to the reference on one
// event.
func FuzzDecodeEventDifferential(f *testing.F) {
	d, src := streamDecoder(f)
	for _, s := range []string{
		`{"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": "2026-11-26T09:59:00Z"}`,
		`{"user_id": -3, "post_id": 4, "ts": 1795600000000, "x": null}`,
		`{"user_id": "\u0000", "ts": [1]}`,
		`{"us\u0065r_id": 1, "post_id": 9223372036854775808, "kind": "\ud83d\ude00\ud800\u00e9\xff", "ts": "1970-01-01T00:00:00+01:00"}`,
		`{"user_id": 1, "post_id": 2, "ts": 1795600000000, "ts": 1795600000001, "color": {"a": [1, 2]}}`,
		`{"user_id": 1, "post_id": 2, "ts": 1765000000}`,
		`{"user_id": 1, "post_id": 2, "ts": 0}`,
		`{"user_id": 1, "post_id": 2, "ts": "1999-12-31T23:59:59.999Z"}`,
		` 5 `,
		`{"user_id": 1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			return
		}
		checkEventSame(t, d, src, raw)
	})
}

// jsonGen writes random push requests and events for testProject, with
// the shapes, values and mistakes that matter to a decoder. A clean jsonGen
// makes no mistakes: what it writes is valid.
type jsonGen struct {
	r     *rand.Rand
	b     []byte
	clean bool
}

// oops reports, one time in n, that the writer should make a mistake.
func (g *jsonGen) oops(n int) bool { return !g.clean && g.r.IntN(n) == 0 }

func (g *jsonGen) pick(ss ...string) string { return ss[g.r.IntN(len(ss))] }

func (g *jsonGen) ws() {
	if g.r.IntN(4) == 0 {
		g.b = append(g.b, g.pick(" ", "\n", "\t ", "\r\n  ")...)
	}
}

func (g *jsonGen) push() []byte {
	g.b = g.b[:0]
	g.ws()
	if g.oops(40) {
		g.value(1)
		return g.b
	}
	g.b = append(g.b, '{')
	keys := []string{`"source"`, `"events"`}
	if g.r.IntN(2) == 0 {
		keys[0], keys[1] = keys[1], keys[0]
	}
	switch {
	case g.oops(20):
		keys = keys[:g.r.IntN(2)]
	case g.oops(20):
		keys = append(keys, g.pick(`"source"`, `"events"`, `"extra"`, `"Source"`, `"EVENTS"`, `"sourc\u0065"`, `"\u017fource"`))
	case g.r.IntN(20) == 0: // encoding/json matches keys without regard to case
		keys[g.r.IntN(2)] = g.pick(`"Source"`, `"EVENTS"`, `"sourc\u0065"`, `"\u017fource"`, `"\u0045vents"`)
	}
	for k, key := range keys {
		if k > 0 {
			g.b = append(g.b, ',')
		}
		g.ws()
		g.b = append(g.b, key...)
		g.ws()
		g.b = append(g.b, ':')
		g.ws()
		switch {
		case g.oops(40):
			g.value(1)
		case strings.Contains(strings.ToLower(key), "ource") || strings.Contains(key, `\u0065`):
			if g.oops(4) {
				g.b = append(g.b, g.pick(`"nope"`, `""`, `null`, `"clicks\u0000"`, `"Clicks"`)...)
			} else {
				g.b = append(g.b, g.pick(`"clicks"`, `"clicks"`, `"cl\u0069cks"`)...)
			}
		default:
			g.b = append(g.b, '[')
			for i := range g.r.IntN(6) {
				if i > 0 {
					g.b = append(g.b, ',')
				}
				g.ws()
				g.event()
				g.ws()
			}
			g.b = append(g.b, ']')
		}
		g.ws()
	}
	g.b = append(g.b, '}')
	g.ws()
	if g.oops(30) {
		g.b = append(g.b, g.pick(" ]", "}", " x", " {}", "]]")...)
	}
	if g.oops(10) {
		g.mutate()
	}
	return g.b
}

// event writes one event: the fields of testProject and its event time,
// in any order, sometimes missing, repeated, unknown or of the wrong type.
func (g *jsonGen) event() {
	if g.oops(30) {
		g.value(2)
		return
	}
	g.b = append(g.b, '{')
	names := []string{"user_id", "post_id", "ts", "kind", "x"}
	if g.oops(3) {
		names = append(names, g.pick("user_id", "ts", "kind", "color", "User_id", "TS", ""))
	}
	if g.oops(3) || g.clean {
		names = names[:len(names)-g.r.IntN(3)]
	}
	g.r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for k, name := range names {
		if k > 0 {
			g.b = append(g.b, ',')
		}
		g.ws()
		g.key(name)
		g.ws()
		g.b = append(g.b, ':')
		g.ws()
		g.field(name)
		g.ws()
	}
	g.b = append(g.b, '}')
}

// key writes a field name, sometimes with escapes.
func (g *jsonGen) key(name string) {
	if g.r.IntN(8) != 0 || name == "" {
		g.b = strconv.AppendQuote(g.b, name)
		return
	}
	g.b = append(g.b, '"')
	for i := range len(name) {
		if g.r.IntN(3) == 0 {
			g.b = fmt.Appendf(g.b, `\u%04x`, name[i])
		} else {
			g.b = append(g.b, name[i])
		}
	}
	g.b = append(g.b, '"')
}

// field writes a value for the named field: mostly of its type.
func (g *jsonGen) field(name string) {
	if g.oops(8) {
		g.value(2)
		return
	}
	if name != "ts" && name != "user_id" && name != "post_id" && g.r.IntN(10) == 0 {
		g.b = append(g.b, "null"...)
		return
	}
	switch name {
	case "user_id", "post_id":
		g.intValue()
	case "x":
		g.floatValue()
	case "kind":
		g.stringValue()
	case "ts":
		g.timeValue()
	default:
		g.value(2)
	}
}

func (g *jsonGen) intValue() {
	switch {
	case g.oops(6):
		g.b = append(g.b, g.pick("9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
			"99999999999999999999.5", "1.0", "1e3", "12E+1", "-0.0", "null")...)
	case g.r.IntN(6) == 0:
		g.b = append(g.b, g.pick("0", "-0", "9223372036854775807", "-9223372036854775808", "999999999999999999",
			"-999999999999999999", "1000000000000000000", "-1000000000000000000")...)
	default:
		g.b = strconv.AppendInt(g.b, g.r.Int64()>>g.r.IntN(64), 10)
	}
}

func (g *jsonGen) floatValue() {
	switch {
	case g.oops(6):
		g.b = append(g.b, g.pick("1e999", "-1e999", "1.8e308")...)
	case g.r.IntN(4) == 0:
		g.b = append(g.b, g.pick("1e-999", "-0", "-0.0", "0.1", "1E308", "2.5e-324", "123456789012345678901234567890",
			"1.7976931348623157e308", "4.9e-324", "0.000000000000000000000000000000000001", "7", "-7E-2")...)
	default:
		g.b = strconv.AppendFloat(g.b, g.r.NormFloat64()*math.Pow(10, float64(g.r.IntN(40)-20)), g.pick("g", "e", "f")[0], -1, 64)
	}
}

// stringValue writes a string: ASCII, UTF-8, escapes, surrogates (paired
// or not) and bytes that are not UTF-8.
func (g *jsonGen) stringValue() {
	g.b = append(g.b, '"')
	for range g.r.IntN(12) {
		switch g.r.IntN(10) {
		case 0:
			g.b = append(g.b, g.pick(`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0000`, `\u00e9`, `\uFFFD`, `\uffff`)...)
		case 1:
			g.b = append(g.b, g.pick(`\ud83d\ude00`, `\ud800`, `\udc00`, `\ud800\u0041`, `\ud800\ud800\udc00`, `\uDBFF\uDFFF`, `\ud800\n`, `\udbff`)...)
		case 2:
			g.b = append(g.b, g.pick("é", "日本", "😀", "\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x7f", "\xef\xbf\xbd")...)
		default:
			g.b = append(g.b, g.pick("view", "like", "a", "b", " ", "k")...)
		}
	}
	g.b = append(g.b, '"')
}

// timeValue writes an event time: epoch ms, RFC 3339 of many kinds, and
// near misses.
func (g *jsonGen) timeValue() {
	switch {
	case g.oops(4):
		g.b = append(g.b, g.pick("-1", "253402300799999", "253402300800000", "1795600060001", "1.5", "1e3", "null", "true",
			`"yesterday"`, `""`, "99999999999999999999", "-9223372036854775809",
			// Before min_event_time (2000-01-01): 0, seconds for milliseconds, the last millisecond of 1999.
			"0", "-0", "1", "1765000000", "946684799999", "253402300799", "253402300800", `"1970-01-01T00:00:00Z"`, `"1999-12-31T23:59:59.999Z"`)...)
	case g.clean || g.r.IntN(2) == 0:
		if g.r.IntN(2) == 0 {
			g.b = strconv.AppendInt(g.b, decodeNow-g.r.Int64N(8e11)+g.r.Int64N(60_000), 10)
			return
		}
		g.b = append(g.b, g.pick("946684800000", "1795600000000", "1795600060000", `"2026-11-26T10:00:00\u005a"`, `"2000-01-01T00:00:00Z"`, `"2000-01-01T01:00:00+01:00"`,
			`"2026-11-26T10:00:00.123456789012+00:00"`, `"2026-11-26T11:00:59.999+01:00"`, `"2024-02-29T00:00:00Z"`)...)
	default:
		year := g.pick("2026", "2026", "1970", "1969", "9999", "0000", "2024", "2100", "0001")
		month := g.pick("11", "02", "12", "01", "13", "00", "1")
		day := g.pick("26", "29", "28", "30", "31", "01", "00", "32")
		clock := g.pick("10:00:00", "09:59:00", "00:00:00", "23:59:59", "24:00:00", "10:60:00", "10:00:60", "09:59:59")
		frac := g.pick("", "", ".5", ".123", ".999", ".123456789", ".1234567891234", ",5", ".", ".x")
		zone := g.pick("Z", "Z", "z", "+01:00", "-01:00", "+00:00", "-00:00", "+23:59", "+24:00", "+01:60", "+0100", "", "+01:00:00")
		sep := g.pick("T", "T", "T", "t", " ")
		fmt.Fprintf(&appender{g}, "%q", year+"-"+month+"-"+day+sep+clock+frac+zone)
	}
}

type appender struct{ g *jsonGen }

func (a *appender) Write(p []byte) (int, error) { a.g.b = append(a.g.b, p...); return len(p), nil }

// value writes any JSON value, nesting as deep as depth.
func (g *jsonGen) value(depth int) {
	switch n := g.r.IntN(9); {
	case n == 0 && depth > 0:
		g.b = append(g.b, '[')
		for i := range g.r.IntN(3) {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.value(depth - 1)
		}
		g.b = append(g.b, ']')
	case n == 1 && depth > 0:
		g.b = append(g.b, '{')
		for i := range g.r.IntN(3) {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.stringValue()
			g.b = append(g.b, ':')
			g.value(depth - 1)
		}
		g.b = append(g.b, '}')
	case n == 2:
		g.stringValue()
	case n == 3:
		g.intValue()
	case n == 4:
		g.floatValue()
	case n == 5:
		g.timeValue()
	default:
		g.b = append(g.b, g.pick("true", "false", "null", "tru", "nul", "[]", "{}", `""`)...)
	}
}

// mutate changes, drops or adds a byte, for malformed input.
func (g *jsonGen) mutate() {
	if len(g.b) == 0 {
		return
	}
	i := g.r.IntN(len(g.b))
	switch g.r.IntN(3) {
	case 0:
		g.b[i] = g.pick(`"`, `\`, `,`, `:`, `{`, `}`, `[`, `]`, "\x00", " ", "0", "e", "-", ".", "\xff")[0]
	case 1:
		g.b = append(g.b[:i], g.b[i+1:]...)
	default:
		g.b = append(g.b[:i], append([]byte{g.pick("\"", ",", "}", "]", "\\", "1")[0]}, g.b[i:]...)...)
	}
}
