package eventjson

import (
	"fmt"
	"testing"

	"github.com/kiln-dev/kiln/internal/event"
)

// ParseText reads JSON literals as JSON and anything else as the JSON
// string of its characters, so its messages are the push API's.
func TestParseText(t *testing.T) {
	d := testDecoder(t)
	f := func(typ event.Type, text, want, wantMsg string) {
		t.Helper()
		v, msg := d.ParseText(typ, []byte(text))
		if msg != wantMsg || (msg == "" && v.String() != want) {
			t.Errorf("ParseText(%v, %q) = %v, %q; want %s, %q", typ, text, v, msg, want, wantMsg)
		}
	}
	f(event.Int64, "42", "42", "")
	f(event.Int64, "-9223372036854775808", "-9223372036854775808", "")
	f(event.Int64, "9223372036854775808", "", "9223372036854775808 is out of the int64 range")
	f(event.Int64, "42.0", "", "42.0 is not an int64: write an integer like 42")
	f(event.Int64, "+42", "", `"+42" is not an int64: write an integer like 42`)
	f(event.Int64, " 42", "", `" 42" is not an int64: write an integer like 42`)
	f(event.Int64, "true", "", "true is not an int64: write an integer like 42")
	f(event.Int64, "null", "", `"null" is not an int64: write an integer like 42`)
	f(event.Float64, "4.5", "4.5", "")
	f(event.Float64, "-1e-3", "-0.001", "")
	f(event.Float64, "0.1000000000000000055511151231257827", "0.1", "")
	f(event.Float64, "1e999", "", "1e999 is not a finite float64")
	f(event.Float64, "-1e290", "-1e+290", "")
	f(event.Float64, "1.0000000001e290", "", "1.0000000001e+290 is beyond ±1e290, the largest magnitude a float64 field takes (so that no sum of them can overflow): scale it down")
	f(event.Float64, "NaN", "", `"NaN" is not a float64: write a number like 4.5`)
	f(event.Float64, "-Inf", "", `"-Inf" is not a float64: write a number like 4.5`)
	f(event.Float64, "0x1p3", "", `"0x1p3" is not a float64: write a number like 4.5`)
	f(event.Float64, ".5", "", `".5" is not a float64: write a number like 4.5`)
	f(event.Bool, "true", "true", "")
	f(event.Bool, "false", "false", "")
	f(event.Bool, "TRUE", "", `"TRUE" is not a bool: write true or false`)
	f(event.Bool, "1", "", "1 is not a bool: write true or false")
	f(event.String, "42", `"42"`, "")
	f(event.String, `a "quoted", \n`, `"a \"quoted\", \\n"`, "")
	f(event.String, "", `""`, "")
	f(event.String, "é\xff\xfe!", "\"é\uFFFD\uFFFD!\"", "")

	// Invalid UTF-8 is replaced as in a pushed JSON string.
	sd, src := streamDecoder(t)
	ev := event.Event{Fields: make([]event.Value, len(src.Fields))}
	if err := sd.DecodeEvent(src, []byte("{\"user_id\": 1, \"post_id\": 2, \"ts\": 1795600000000, \"kind\": \"é\xff\xfe!\"}"), decodeNow, &ev); err != nil {
		t.Fatal(err)
	}
	if v, _ := d.ParseText(event.String, []byte("é\xff\xfe!")); !v.Equal(ev.Fields[2]) {
		t.Errorf("ParseText gives %v, a push %v", v, ev.Fields[2])
	}
}

// EventTime reads numbers as epoch milliseconds and other text as RFC
// 3339, with the push API's checks and messages.
func TestEventTime(t *testing.T) {
	_, src := streamDecoder(t)
	f := func(text string, want int64, wantMsg string) {
		t.Helper()
		ts, msg := EventTime(src, []byte(text), decodeNow)
		if msg != wantMsg || ts != want {
			t.Errorf("EventTime(%q) = %d, %q; want %d, %q", text, ts, msg, want, wantMsg)
		}
	}
	f("1795600000000", 1795600000000, "")
	f("2026-11-26T09:59:00Z", decodeNow-60_000, "")
	f("2026-11-26T10:59:00.5+01:00", decodeNow-59_500, "")
	f("1765000000", 0, "event time 1765000000 is before 2000-01-01 (min_event_time of source clicks); it looks like seconds since 1970: send milliseconds (1765000000000)")
	f("1999-12-31T00:00:00Z", 0, `event time "1999-12-31T00:00:00Z" is before 2000-01-01 (min_event_time of source clicks); send the time as epoch milliseconds or RFC 3339, or lower min_event_time`)
	f("2026-11-26T10:05:00Z", 0, "event time 2026-11-26T10:05:00Z is more than 1m0s ahead of the server clock (2026-11-26T10:00:00Z); fix the producer's clock or raise max_future_skew of source clicks")
	f("2026-11-26", 0, `"2026-11-26" is not an RFC 3339 time; write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`)
	f("1.5e12", 0, `1.5e12 is not a time; write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`)
	f("-5", 0, "-5 epoch milliseconds is outside 1970–9999")
	f("", 0, `"" is not an RFC 3339 time; write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`)

	// The same text as a pushed JSON value gets the same message.
	d, src := streamDecoder(t)
	ev := event.Event{Fields: make([]event.Value, len(src.Fields))}
	for _, raw := range []string{`1765000000`, `"1999-12-31T00:00:00Z"`, `"2026-11-26T10:05:00Z"`, `1.5e12`} {
		err := d.DecodeEvent(src, []byte(`{"user_id": 1, "post_id": 2, "ts": `+raw+`}`), decodeNow, &ev)
		text := raw
		if raw[0] == '"' {
			text = raw[1 : len(raw)-1]
		}
		_, msg := EventTime(src, []byte(text), decodeNow)
		if want := fmt.Sprintf("invalid event of source clicks; event 0 field %q: %s", "ts", msg); err == nil || err.Error() != want {
			t.Errorf("push of %s: %v\n  want %s", raw, err, want)
		}
	}
}

func TestKeyFields(t *testing.T) {
	d, src := streamDecoder(t)
	keys := d.KeyFields(src)
	if fmt.Sprint(keys) != "[true true false false]" {
		t.Fatalf("KeyFields(clicks) = %v (fields %v)", keys, src.Fields)
	}
	keys[0] = false // the caller's copy
	if !d.KeyFields(src)[0] {
		t.Fatal("KeyFields returned the decoder's own slice")
	}
}
