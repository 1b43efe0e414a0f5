package eventjson

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// The push API's rules for events that do not come as JSON — the cells of
// a CSV file, the values of a Parquet column — so that an event read from a
// file is checked as a pushed one is, and a problem is worded the same way.

// MaxEventTime is the latest event time accepted, in Unix milliseconds:
// 9999-12-31T23:59:59.999Z.
const MaxEventTime = maxTS

// Problem messages shared with readers of other inputs.
const (
	// MissingEventTime is the problem of an event without its event time.
	MissingEventTime = `missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`
	// NullKey is the problem of a key field given as null.
	NullKey = "is a key field and cannot be null"
)

// MissingKey is the problem of an event of src without one of its key
// fields.
func MissingKey(src *definition.Source) string {
	return "missing: it is a key field of a view fed by source " + src.Name
}

// UnknownField is the problem of a field (or column) that src does not
// declare; it lists those it does.
func UnknownField(src *definition.Source) string {
	return fmt.Sprintf("not a field of source %s (fields: %s, and %s for the event time)", src.Name, fieldNames(src), src.EventTime)
}

// KeyFields reports, for each field of src in schema order, whether an
// event of src must carry it: it is a key of an entity that a view fed by
// src is keyed by. The slice is the caller's. src must be a source of the
// Decoder's project.
func (d *Decoder) KeyFields(src *definition.Source) []bool {
	required, ok := d.required[src]
	if !ok {
		panic(fmt.Sprintf("eventjson: KeyFields of source %q, which is not of the decoder's project", src.Name))
	}
	return append([]bool(nil), required...)
}

// EventTime reads the event time of src written as text — a CSV cell, a
// string column — and checks it as the push API checks a pushed event's:
// text that is a JSON number is epoch milliseconds, any other text an RFC
// 3339 time; it must be in 1970–9999, not before src.MinEventTime, and not
// more than src.MaxFutureSkew after now (Unix ms). It returns the time in
// Unix ms, or a message for a person saying what is wrong.
func EventTime(src *definition.Source, text []byte, now int64) (int64, string) {
	if isNumber(text) {
		return checkTime(src, text, true, now)
	}
	// As the JSON string of the same characters: only the messages show
	// the quotes, and nothing is unquoted.
	var buf [80]byte
	raw := append(append(append(buf[:0], '"'), text...), '"')
	return checkTime(src, raw, true, now)
}

// checkTime reads an event time (raw, valid JSON; plain as for parseTime)
// of src and checks it against the source's bounds and the clock now.
func checkTime(src *definition.Source, raw []byte, plain bool, now int64) (int64, string) {
	ts, msg := parseTime(raw, plain)
	switch {
	case msg != "":
		return 0, msg
	case ts < src.MinEventTime:
		return 0, tooEarly(src, raw, ts)
	case ts > now+maxSkew(src).Milliseconds():
		return 0, fmt.Sprintf("event time %s is more than %s ahead of the server clock (%s); fix the producer's clock or raise max_future_skew of source %s",
			formatTS(ts), maxSkew(src), formatTS(now), src.Name)
	}
	return ts, ""
}

// ParseText reads a value of type t written as text — a CSV cell, a string
// column — by the push API's rules. A string is the text itself (invalid
// UTF-8 becomes U+FFFD, as in a JSON string). For the other types, text
// that is a JSON literal (a number, true, false) is read as that literal,
// so 42 is an int64 but 42.0 and +42 are not, 4.5 is a float64 but NaN is
// not, and true is a bool but TRUE is not; other text is read as the JSON
// string of its characters, and so refused with the message a pushed
// string would get. Text is never null: what a null looks like (an empty
// cell) is the caller's to say. The value does not keep text.
func (d *Decoder) ParseText(t event.Type, text []byte) (event.Value, string) {
	if t == event.String {
		var buf [64]byte
		return event.StringValue(d.strs.get(validUTF8(buf[:0], text))), ""
	}
	if isNumber(text) || string(text) == "true" || string(text) == "false" {
		return d.parseValue(t, text, true)
	}
	var buf [64]byte
	return d.parseValue(t, strconv.AppendQuote(buf[:0], string(text)), false)
}

// isNumber reports whether text is one JSON number and nothing else.
func isNumber(text []byte) bool {
	if len(text) == 0 || !(text[0] == '-' || isDigit(text[0])) {
		return false
	}
	end, err := scanNumber(text, 0)
	return err == nil && end == len(text)
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as decoding a JSON string does; s itself when it is
// valid, else the result appended to dst.
func validUTF8(dst, s []byte) []byte {
	if utf8.Valid(s) {
		return s
	}
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
