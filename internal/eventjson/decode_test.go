package eventjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// testProject has one push source, clicks, whose events must carry user_id
// and post_id: the keys of the entities its views feed.
const testProject = `
project: t
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, post_id: int64, kind: string, x: float64}
views:
  by_user: {entity: user, source: clicks, features: {n: {agg: count, windows: [1h]}}}
  by_post: {entity: post, source: clicks, features: {n: {agg: count, windows: [1h]}}}
`

func testDecoder(t testing.TB) *Decoder {
	p, err := projectfile.Parse("test.yaml", []byte(testProject))
	if err != nil {
		t.Fatal(err)
	}
	return NewDecoder(p)
}

var decodeNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixMilli()

func TestDecodePushValid(t *testing.T) {
	d := testDecoder(t)
	src, events, err := d.DecodePush([]byte(`{"source": "clicks", "events": [
		{"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": "2026-11-26T09:59:00Z"},
		{"user_id": -3, "post_id": 4, "ts": 1795600000000, "x": null}
	]}`), decodeNow)
	if err != nil {
		t.Fatal(err)
	}
	if src.Name != "clicks" || len(events) != 2 {
		t.Fatalf("source %s, %d events", src.Name, len(events))
	}
	want0 := event.Event{TS: decodeNow - 60_000, Fields: []event.Value{event.IntValue(1), event.IntValue(2), event.StringValue("a"), event.FloatValue(1.5)}}
	if events[0].String() != want0.String() {
		t.Fatalf("event 0 = %v, want %v", events[0], want0)
	}
	if events[1].TS != 1795600000000 || events[1].Fields[0].Int != -3 || events[1].Fields[2].Kind != event.Null || events[1].Fields[3].Kind != event.Null {
		t.Fatalf("event 1 = %v", events[1])
	}
}

// Every bad input is refused whole, with every problem named.
func TestDecodePushRefuses(t *testing.T) {
	d := testDecoder(t)
	f := func(body string, want ...string) {
		t.Helper()
		_, events, err := d.DecodePush([]byte(body), decodeNow)
		if err == nil {
			t.Fatalf("%s: accepted %d events", body, len(events))
		}
		var re *RequestError
		if !errors.As(err, &re) {
			t.Fatalf("%s: error %T %v is not a *RequestError", body, err, err)
		}
		got := err.Error()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s:\n  error %q\n  lacks %q", body, got, w)
			}
		}
	}
	ev := func(fields string) string { return `{"source": "clicks", "events": [` + fields + `]}` }
	ok := `"user_id": 1, "post_id": 2, "ts": 1795600000000`
	f(`{"source": "clicks", "events": [`, "cut short")
	f(`not json`, "malformed JSON")
	f(`[]`, "not a push request")
	f(`{"source": "clicks", "events": [], "extra": 1}`, `unknown field "extra"`)
	f(`{"events": []}`, `"source" is missing`)
	f(`{"source": "nope", "events": []}`, `source "nope" is not defined (defined: clicks)`)
	f(`{"source": "clicks", "events": []} {}`, "data after the JSON object")
	f(ev(`{`+ok+`, "color": "red"}`), `field "color"`, "not a field of source clicks")
	f(ev(`{"post_id": 2, "ts": 1795600000000}`), `field "user_id"`, "missing: it is a key field")
	f(ev(`{"user_id": null, "post_id": 2, "ts": 1795600000000}`), "key field and cannot be null")
	f(ev(`{"user_id": 1, "post_id": 2}`), `field "ts"`, "missing: every event needs its event time")
	f(ev(`{`+ok+`, "x": "1.5"}`), `field "x"`, "not a float64")
	f(ev(`{"user_id": 1.5, "post_id": 2, "ts": 1795600000000}`), "not an int64")
	f(ev(`{"user_id": 9223372036854775808, "post_id": 2, "ts": 1795600000000}`), "out of the int64 range")
	f(ev(`{`+ok+`, "x": 1e999}`), "not a finite float64")
	f(ev(`{`+ok+`, "x": -1.7e308}`), `field "x"`, "beyond ±1e290", "scale it down")
	f(ev(`{`+ok+`, "kind": 3}`), "not a string")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": "yesterday"}`), "not an RFC 3339 time")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": -5}`), "outside 1970")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": "1970-01-01T00:30:00+01:00"}`), "outside 1970")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": "2026-11-26T10:05:00Z"}`), "more than 1m0s ahead of the server clock", "max_future_skew")
	f(ev(`{`+ok+`, "user_id": 2}`), "given twice")
	f(ev(`5`), "must be a JSON object")
	// Three bad events, each reported, with its index.
	f(ev(`{`+ok+`}, {"post_id": 1, "ts": 1795600000000}, {`+ok+`}, {`+ok+`, "x": true}, {"user_id": "1", "post_id": "2", "ts": 1795600000000}`),
		"3 invalid event(s)", "event 1", "event 3", "and 1 more")
	var many strings.Builder
	for i := range MaxEventsPerPush + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString("{" + ok + "}")
	}
	f(ev(many.String()), fmt.Sprintf("the limit is %d", MaxEventsPerPush))
}

// FuzzDecodePush: no input panics the decoder; it decodes as the reference
// decoder does (decode_ref_test.go); what it accepts is typed as the schema
// says.
func FuzzDecodePush(f *testing.F) {
	d := testDecoder(f)
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": "2026-11-26T09:59:00Z"}]}`))
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": null}, {}]}`))
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": "\u0000", "ts": [1]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		checkPushSame(t, d, body)
		src, events, err := d.DecodePush(body, decodeNow)
		if err != nil {
			return
		}
		for _, ev := range events {
			if len(ev.Fields) != len(src.Fields) {
				t.Fatalf("event has %d fields, schema %d", len(ev.Fields), len(src.Fields))
			}
			for i, v := range ev.Fields {
				if v.Kind != event.Null && v.Kind != src.Fields[i].Type {
					t.Fatalf("field %s holds %v", src.Fields[i].Name, v.Kind)
				}
				if err := v.Valid(); err != nil {
					t.Fatal(err)
				}
			}
			if ev.TS < 0 || ev.TS > decodeNow+time.Minute.Milliseconds() {
				t.Fatalf("event time %d accepted", ev.TS)
			}
		}
	})
}

// DecodeEvent decodes one event of a source of any type, with the problems
// of DecodePush at index 0, and refuses what is not one JSON value.
func TestDecodeEvent(t *testing.T) {
	d, src := streamDecoder(t) // src is of type kafka
	ev := event.Event{Fields: make([]event.Value, len(src.Fields))}
	f := func(raw, want string, problems ...Problem) {
		t.Helper()
		err := d.DecodeEvent(src, []byte(raw), decodeNow, &ev)
		if len(problems) == 0 {
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if ev.String() != want {
				t.Fatalf("%s: decoded %v, want %s", raw, ev, want)
			}
			return
		}
		var re *RequestError
		if !errors.As(err, &re) {
			t.Fatalf("%s: error %T %v is not a *RequestError", raw, err, err)
		}
		if re.Message != want || fmt.Sprint(re.Details) != fmt.Sprint(problems) {
			t.Fatalf("%s:\n  error %q %v\n  want  %q %v", raw, re.Message, re.Details, want, problems)
		}
	}
	f(` {"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": "2026-11-26T09:59:00Z"}`+"\n",
		fmt.Sprintf(`{ts:%d 1 2 "a" 1.5}`, decodeNow-60_000))
	// Fields of the last event are reset.
	f(`{"ts": 1795600000000, "post_id": 4, "user_id": -3}`, `{ts:1795600000000 -3 4 null null}`)
	f(`{"post_id": 2, "ts": 1795600000000, "color": 1}`, "invalid event of source clicks",
		Problem{0, "color", "not a field of source clicks (fields: user_id, post_id, kind, x, and ts for the event time)"},
		Problem{0, "user_id", "missing: it is a key field of a view fed by source clicks"})
	f(`[1]`, "invalid event of source clicks", Problem{0, "", "an event must be a JSON object of fields"})
	const malformed = "event of source clicks is not valid JSON"
	f(`{"user_id": 1,`, malformed, Problem{0, "", "malformed JSON at byte 14: unexpected end of JSON input"})
	f(`{"user_id": 1} {}`, malformed, Problem{0, "", "malformed JSON at byte 15: invalid character '{' after top-level value"})
	f(`{"user_id": 01}`, malformed, Problem{0, "", "malformed JSON at byte 13: invalid character '1' after object key:value pair"})
	f(`{"kind": "a\qb"}`, malformed, Problem{0, "", `malformed JSON at byte 12: invalid character 'q' in string escape code`})
	f(``, malformed, Problem{0, "", "malformed JSON at byte 0: unexpected end of JSON input"})

	// DecodePush takes only push sources.
	_, _, err := d.DecodePush([]byte(`{"source": "clicks", "events": []}`), decodeNow)
	if err == nil || !strings.Contains(err.Error(), "is of type kafka and does not take pushed events") {
		t.Fatalf("DecodePush of a kafka source: %v", err)
	}
}

// A valid event costs no allocation but its strings, and a string that
// recurs (RW1's kind) none once it has been seen twice.
func TestDecodeEventAllocs(t *testing.T) {
	d, src := streamDecoder(t)
	ev := event.Event{Fields: make([]event.Value, len(src.Fields))}
	allocs := func(s string) float64 {
		t.Helper()
		raw := []byte(s)
		return testing.AllocsPerRun(100, func() {
			if err := d.DecodeEvent(src, raw, decodeNow, &ev); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := allocs(`{"user_id": 1, "post_id": 2, "x": 1.5, "ts": "2026-11-26T09:59:00.123+01:00"}`); n != 0 {
		t.Errorf("an event without strings: %v allocations", n)
	}
	if n := allocs(`{"user_id": 1, "post_id": 2, "kind": "view", "x": 4100.5, "ts": 1795600000000}`); n != 0 {
		t.Errorf("an event with a recurring string: %v allocations", n)
	}
	if n := allocs(`{"user_id": 1, "post_id": 2, "kind": "v\u00e9w", "ts": 1795600000000}`); n != 0 {
		t.Errorf("an event with a recurring escaped string: %v allocations", n)
	}
	var raws [][]byte
	for i := range 200 {
		raws = append(raws, fmt.Appendf(nil, `{"user_id": 1, "post_id": 2, "kind": "new-%d", "ts": 1795600000000}`, i))
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := d.DecodeEvent(src, raws[0], decodeNow, &ev); err != nil {
			t.Fatal(err)
		}
		raws = raws[1:]
	}); n != 1 {
		t.Errorf("an event with a new string: %v allocations, want 1", n)
	}
}

// Strings and keys are unquoted as encoding/json does: escapes, surrogate
// pairs, and U+FFFD for lone surrogates and bytes that are not UTF-8.
func TestDecodeStrings(t *testing.T) {
	d := testDecoder(t)
	for _, s := range []string{
		`"plain"`, `""`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u65E5\u0000"`, `"\ud83d\ude00"`, `"\uDBFF\uDFFF"`,
		`"\ud800"`, `"\ud800\u0041"`, `"\udc00\ud800"`, `"\ud800\ud800\udc00"`, `"\ud800\n"`,
		"\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", `"é日本😀"`, "\"\xef\xbf\xbd\x7f\"",
		`"a very long value, longer than any the decoder interns, \u00e9"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		body := `{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "kind": ` + s + `, "ts": 1795600000000}]}`
		_, events, err := d.DecodePush([]byte(body), decodeNow)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := events[0].Fields[2].Str; got != want {
			t.Errorf("%s decoded as %q, want %q", s, got, want)
		}
		checkPushSame(t, d, []byte(body))
		// The same as keys.
		body = `{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, ` + s + `: 1, "ts": 1795600000000}]}`
		_, _, err = d.DecodePush([]byte(body), decodeNow)
		var re *RequestError
		if !errors.As(err, &re) || len(re.Details) != 1 || re.Details[0].Field != want {
			t.Errorf("key %s: %v, want a problem of field %q", s, err, want)
		}
		checkPushSame(t, d, []byte(body))
	}
	// An escaped key is its field.
	checkPushSame(t, d, []byte(`{"source": "clicks", "events": [{"us\u0065r_id": 1, "post_id": 2, "\u0074s": 1795600000000}]}`))
	if _, _, err := d.DecodePush([]byte(`{"source": "clicks", "events": [{"us\u0065r_id": 1, "post_id": 2, "\u0074s": 1795600000000}]}`), decodeNow); err != nil {
		t.Fatal(err)
	}
}

// Arrays and objects nest as deep as encoding/json lets them, and no more.
func TestDecodeNesting(t *testing.T) {
	d := testDecoder(t)
	sd, ssrc := streamDecoder(t)
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, n := range []int{maxDepth - 4, maxDepth - 3, maxDepth - 2, maxDepth - 1, maxDepth} {
		// The body's object and array and the event's object hold x.
		checkPushSame(t, d, []byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": `+nest(n)+`}]}`))
		checkPushSame(t, d, []byte(`{"events": [{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": `+nest(n)+`}], "source": "clicks"}`))
		checkPushSame(t, d, []byte(`{"source": "clicks", "events": [`+nest(n)+`]}`))
		checkEventSame(t, sd, ssrc, []byte(`{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": `+nest(n)+`}`))
	}
	_, _, err := d.DecodePush([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": `+nest(maxDepth-2)+`}]}`), decodeNow)
	if err == nil || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Fatalf("too deep: %v", err)
	}
}

// parseRFC3339 reads what time.Parse's fast path reads, to the same time
// and year, and reads the usual forms.
func TestParseRFC3339(t *testing.T) {
	for _, s := range []string{
		"2026-11-26T10:00:00Z", "2026-11-26T10:00:00.5Z", "2026-11-26T10:00:00.123456789+01:00",
		"2024-02-29T23:59:59.999999999999-23:59", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
	} {
		if _, _, ok := parseRFC3339([]byte(s)); !ok {
			t.Errorf("%s is not read", s)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	digits := func(n, hi int) string { return fmt.Sprintf("%0*d", n, r.IntN(hi)) }
	for range 200_000 {
		b := []byte(digits(4, 10000) + "-" + digits(2, 14) + "-" + digits(2, 33) + "T" + digits(2, 25) + ":" + digits(2, 61) + ":" + digits(2, 61))
		switch r.IntN(3) {
		case 0:
			b = append(b, "."+digits(1+r.IntN(12), 1_000_000_000)...)
		case 1:
			b = append(b, ".1"...)
		}
		if r.IntN(2) == 0 {
			b = append(b, 'Z')
		} else {
			b = fmt.Appendf(b, "%c%s:%s", "+-"[r.IntN(2)], digits(2, 25), digits(2, 61))
		}
		if r.IntN(4) == 0 {
			b[r.IntN(len(b))] = "0123456789-:.TtZz+ x"[r.IntN(20)]
		}
		ms, year, ok := parseRFC3339(b)
		if !ok {
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil || tm.UnixMilli() != ms || tm.Year() != year {
			t.Fatalf("%s: read as %d (year %d); time.Parse says %v (year %d), %v", b, ms, year, tm.UnixMilli(), tm.Year(), err)
		}
	}
}

// The usual push bodies are read in place; the others by encoding/json.
func TestScanPush(t *testing.T) {
	ev := `{"user_id": 1, "post_id": 2, "ts": 1795600000000}`
	for _, body := range []string{
		`{"source":"clicks","events":[]}`,
		`{"source": "clicks", "events": [` + ev + `, ` + ev + `]}`,
		"\n{ \"events\" : [ " + ev + " ] ,\t\"source\" : \"clicks\" }\r\n",
	} {
		if shape, ok := scanPush([]byte(body)); !ok || string(shape.source) != "clicks" {
			t.Errorf("%s: not read in place", body)
		}
	}
	for _, body := range []string{
		`{"Source": "clicks", "events": []}`, `{"source": "cl\u0069cks", "events": []}`, `{"source": "clicks", "source": "clicks", "events": []}`,
		`{"source": "clicks", "events": [], "extra": 1}`, `{"source": "clicks", "events": []} ]`, `{"source": "clicks", "events": null}`,
		`{"source": "clicks"}`, `{"source": "clicks", "events": [1,]}`, `[]`, ``,
	} {
		if _, ok := scanPush([]byte(body)); ok {
			t.Errorf("%s: read in place", body)
		}
	}
}

// One Decoder serves many goroutines; shared strings stay right.
func TestDecodeConcurrent(t *testing.T) {
	d, src := streamDecoder(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ev := event.Event{Fields: make([]event.Value, len(src.Fields))}
			for i := range 5000 {
				kind := strconv.Itoa((i * (g + 1)) % 3000) // more values than the interner holds
				raw := `{"user_id": 1, "post_id": 2, "kind": "` + kind + `", "ts": 1795600000000}`
				if err := d.DecodeEvent(src, []byte(raw), decodeNow, &ev); err != nil {
					t.Error(err)
					return
				}
				if ev.Fields[2].Str != kind {
					t.Errorf("kind %q decoded as %q", kind, ev.Fields[2].Str)
					return
				}
			}
		})
	}
	wg.Wait()
}

// parseShortFloat, where it answers, answers exactly what strconv does:
// on numbers of every shape near the edges of its fast path.
func TestParseShortFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		if n > 1 && b[0] == '0' {
			b[0] = '1' + byte(r.IntN(9))
		}
		return string(b)
	}
	answered := 0
	fixed := []string{"0", "-0", "0.0", "1", "9007199254740992", "9007199254740993", "1e22", "1e23", "1e-22", "1e-23",
		"0.1", "0.3", "123456789012345678", "1234567890123456789", "12345678901234567890", "4.35", "1E+2", "5e-0", "2.5e-3"}
	for k := range 200_000 {
		var s string
		if k < len(fixed) {
			s = fixed[k]
		} else {
			s = digits(1 + r.IntN(12))
			if r.IntN(2) == 0 {
				s += "." + digits(1+r.IntN(10))
			}
			if r.IntN(3) == 0 {
				s += []string{"e", "E", "e+", "e-", "E-"}[r.IntN(5)] + strconv.Itoa(r.IntN(30))
			}
			if r.IntN(2) == 0 {
				s = "-" + s
			}
		}
		got, ok := parseShortFloat([]byte(s))
		if !ok {
			continue
		}
		answered++
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseShortFloat(%s) = %v, strconv %v (%v)", s, got, want, err)
		}
	}
	if answered < 100_000 {
		t.Fatalf("the fast path answered only %d of 200,000 numbers", answered)
	}

	// 16 to 19 digits, past Clinger's path: shortest and longer forms of
	// random floats (as JSON encoders write them), and halfway cases,
	// where only an exact computation rounds to even.
	check := func(s string) bool {
		t.Helper()
		got, ok := parseShortFloat([]byte(s))
		if !ok {
			return false
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseShortFloat(%s) = %v (%x), strconv %v (%x, %v)", s, got, math.Float64bits(got), want, math.Float64bits(want), err)
		}
		return true
	}
	long := 0
	for k := range 300_000 {
		x := math.Float64frombits(r.Uint64() >> 2) // positive, exponents from tiny to huge
		if k%2 == 0 {
			x = r.Float64() * math.Pow(10, float64(r.IntN(30)-12))
		}
		for _, s := range []string{
			strconv.FormatFloat(x, 'g', -1, 64),
			strconv.FormatFloat(x, 'e', 15+r.IntN(4), 64),
			strconv.FormatFloat(x, 'f', r.IntN(8), 64),
		} {
			if check(s) {
				long++
			}
		}
	}
	for k := 53; k < 64; k++ {
		for _, tie := range []uint64{1<<k + 1<<(k-53), 1<<k + 3<<(k-53), 1<<k + 1<<(k-53) - 1, 1<<k + 1<<(k-53) + 1} {
			for _, s := range []string{strconv.FormatUint(tie, 10), strconv.FormatUint(tie, 10) + "e-7", "0." + strconv.FormatUint(tie, 10)} {
				check(s)
			}
		}
	}
	if long < 300_000 {
		t.Fatalf("the exact path answered only %d of 900,000 long numbers", long)
	}
}

// A reused PushBuffer decodes each push as fresh memory would: fields an
// event leaves out are null, and nothing of the pushes before shows, on
// both the one-pass path and the general one (keys in the other order).
func TestDecodePushIntoReusesNothingVisible(t *testing.T) {
	d := testDecoder(t)
	var buf PushBuffer
	bodies := []string{
		`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": 1795600000000}, {"user_id": 5, "post_id": 6, "kind": "b", "x": 2, "ts": 1795600000001}]}`,
		`{"source": "clicks", "events": [{"user_id": 7, "post_id": 8, "ts": 1795600000002}]}`,
		`{"events": [{"user_id": 9, "post_id": 10, "ts": 1795600000003}, {"user_id": 11, "post_id": 12, "x": 3, "ts": 1795600000004}], "source": "clicks"}`,
		`{"source": "clicks", "events": []}`,
		`{"source": "clicks", "events": [{"user_id": 13, "post_id": 14, "ts": 1795600000005}, {"user_id": 15, "post_id": 16, "kind": "c", "ts": 1795600000006}, {"user_id": 17, "post_id": 18, "ts": 1795600000007}]}`,
	}
	for round := range 2 {
		for _, body := range bodies {
			_, want, err := d.DecodePush([]byte(body), decodeNow)
			if err != nil {
				t.Fatal(err)
			}
			_, got, err := d.DecodePushInto([]byte(body), decodeNow, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("round %d, %s: %d events, fresh %d", round, body, len(got), len(want))
			}
			for i := range got {
				if got[i].String() != want[i].String() || got[i].Origin != want[i].Origin {
					t.Fatalf("round %d, %s: event %d = %v, fresh %v", round, body, i, got[i], want[i])
				}
			}
		}
	}
}

// An event time before the source's min_event_time (2000-01-01 unless the
// project file says otherwise) is refused: 0, and seconds sent for
// milliseconds, which the message names. Pushes and stream messages alike.
func TestDecodeRefusesEventTimesBeforeMinEventTime(t *testing.T) {
	d := testDecoder(t)
	sd, ssrc := streamDecoder(t)
	for _, c := range []struct {
		ts   string
		want []string
	}{
		{"1765000000", []string{`field "ts": event time 1765000000 is before 2000-01-01 (min_event_time of source clicks); it looks like seconds since 1970: send milliseconds (1765000000000)`}},
		{"0", []string{"event time 0 is before 2000-01-01 (min_event_time of source clicks)", "epoch milliseconds"}},
		{"946684799999", []string{"event time 946684799999 is before 2000-01-01"}},
		{`"1999-12-31T23:59:59Z"`, []string{`event time "1999-12-31T23:59:59Z" is before 2000-01-01`}},
		{`"1970-01-01T00:00:00Z"`, []string{`event time "1970-01-01T00:00:00Z" is before 2000-01-01`}},
	} {
		_, events, err := d.DecodePush([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": `+c.ts+`}]}`), decodeNow)
		if err == nil {
			t.Errorf("ts %s: accepted %v", c.ts, events)
			continue
		}
		ev := event.Event{Fields: make([]event.Value, len(ssrc.Fields))}
		serr := sd.DecodeEvent(ssrc, []byte(`{"user_id": 1, "post_id": 2, "ts": `+c.ts+`}`), decodeNow, &ev)
		if serr == nil {
			t.Errorf("ts %s: the stream decoder accepted it", c.ts)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ts %s: push error %q lacks %q", c.ts, err, w)
			}
			if !strings.Contains(serr.Error(), strings.ReplaceAll(w, `field "ts": `, "")) {
				t.Errorf("ts %s: stream error %q lacks %q", c.ts, serr, w)
			}
		}
		if c.ts != "1765000000" && strings.Contains(err.Error(), "looks like seconds") {
			t.Errorf("ts %s: %q takes it for seconds", c.ts, err)
		}
	}
	// The floor itself is accepted.
	for _, ts := range []string{"946684800000", `"2000-01-01T00:00:00Z"`} {
		if _, _, err := d.DecodePush([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": `+ts+`}]}`), decodeNow); err != nil {
			t.Errorf("ts %s: %v", ts, err)
		}
	}
	// The project file moves the floor.
	for _, c := range []struct {
		line, ts string
		ok       bool
	}{
		{"min_event_time: 1970-01-01", "1765000000", true},
		{"min_event_time: 1970-01-01", "0", true},
		{"min_event_time: 2026-01-01", "1765000000000", false},
		{"min_event_time: 2026-01-01", "1767225600000", true},
		{`min_event_time: "2025-12-06T05:46:40Z"`, "1764999999999", false},
		{`min_event_time: "2025-12-06T05:46:40Z"`, "1765000000000", true},
	} {
		p, err := projectfile.Parse("test.yaml", []byte(strings.Replace(testProject, "    event_time: ts\n", "    event_time: ts\n    "+c.line+"\n", 1)))
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		_, _, err = NewDecoder(p).DecodePush([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": `+c.ts+`}]}`), decodeNow)
		if (err == nil) != c.ok {
			t.Errorf("%s, ts %s: %v, want accepted %v", c.line, c.ts, err, c.ok)
		}
	}
}
