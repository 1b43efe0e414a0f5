package ingest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/event"
)

func testDecoder(t testing.TB) *Decoder {
	p, err := definition.Parse("test.yaml", []byte(testProject))
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
	f(ev(`{`+ok+`, "kind": 3}`), "not a string")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": "yesterday"}`), "not an RFC 3339 time")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": -5}`), "outside 1970")
	f(ev(`{"user_id": 1, "post_id": 2, "ts": "2026-11-26T10:05:00Z"}`), "more than 1m0s ahead of the server clock", "max_future_skew")
	f(ev(`{`+ok+`, "user_id": 2}`), "given twice")
	f(ev(`5`), "must be a JSON object")
	// Three bad events, each reported, with its index.
	f(ev(`{`+ok+`}, {"post_id": 1, "ts": 1}, {`+ok+`}, {`+ok+`, "x": true}, {"user_id": "1", "post_id": "2", "ts": 1}`),
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

// FuzzDecodePush: no input panics the decoder; what it accepts is typed as
// the schema says.
func FuzzDecodePush(f *testing.F) {
	d := testDecoder(f)
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "kind": "a", "x": 1.5, "ts": "2026-11-26T09:59:00Z"}]}`))
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": 1, "post_id": 2, "ts": 1795600000000, "x": null}, {}]}`))
	f.Add([]byte(`{"source": "clicks", "events": [{"user_id": "\u0000", "ts": [1]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
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
