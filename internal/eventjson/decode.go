// Package eventjson decodes events from JSON — the bodies of POST /v1/push
// and the messages of streaming sources — checking each against its source's
// schema, and reports a bad request item by item: Problem and RequestError
// are the error shape that every API shares, for pushes, stream messages and
// feature reads alike.
package eventjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"math/bits"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// Limits of a push request.
const (
	// MaxEventsPerPush is the most events one push may carry.
	MaxEventsPerPush = 10_000
	// MaxDetails is the most problems a refused request lists.
	MaxDetails = 100
	// maxTS is the latest event time accepted: 9999-12-31T23:59:59.999Z.
	maxTS = 253402300799999
)

// Problem is one thing wrong with one event of a request.
type Problem struct {
	// Index is the position of the event in the request.
	Index int `json:"index"`
	// Field is the field at fault, if one is.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// RequestError refuses a whole request: nothing of it was applied.
type RequestError struct {
	Message string
	Details []Problem
}

func (e *RequestError) Error() string {
	if len(e.Details) == 0 {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for i, d := range e.Details {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Details)-3)
			break
		}
		fmt.Fprintf(&b, "; event %d", d.Index)
		if d.Field != "" {
			fmt.Fprintf(&b, " field %q", d.Field)
		}
		b.WriteString(": " + d.Message)
	}
	return b.String()
}

// Decoder turns JSON push requests, and single events of streaming sources,
// into events of a project's sources, checking every event against its
// source's schema. It is safe for concurrent use.
//
// It reads events with a JSON scanner of its own, in one pass over their
// bytes, allocating nothing for a valid event but its string values (and
// not those that recur: see interner). encoding/json reads only push bodies
// of unusual shapes, and words what is wrong with malformed ones.
type Decoder struct {
	project *definition.Project
	// required[source] are the fields an event of that source must carry:
	// the key fields of every entity the source feeds.
	required map[*definition.Source][]bool
	strs     *interner
}

// NewDecoder returns a decoder for the project's sources.
func NewDecoder(p *definition.Project) *Decoder {
	d := &Decoder{project: p, required: map[*definition.Source][]bool{}, strs: newInterner()}
	for _, s := range p.Sources {
		d.required[s] = make([]bool, len(s.Fields))
	}
	for _, v := range p.Views {
		for _, k := range v.Entity.Keys {
			if i := v.Source.FieldIndex(k); i >= 0 {
				d.required[v.Source][i] = true
			}
		}
	}
	return d
}

// pushBody is the JSON shape of POST /v1/push.
type pushBody struct {
	Source string            `json:"source"`
	Events []json.RawMessage `json:"events"`
}

// DecodePush parses a push request body: {"source": name, "events": [...]}.
// now (Unix ms) bounds event times from above, by the source's maximum
// future skew. Any problem refuses the whole request with a *RequestError
// listing every problem found (up to MaxDetails). The events do not keep
// body.
func (d *Decoder) DecodePush(body []byte, now int64) (*definition.Source, []event.Event, error) {
	return d.DecodePushInto(body, now, nil)
}

// PushBuffer is the memory of a decoded push, which DecodePushInto reuses:
// a server that decodes many pushes keeps one per request in flight, and
// allocates (and collects) next to nothing per push.
type PushBuffer struct {
	events []event.Event
	fields []event.Value
}

// take returns n events whose Fields (nf each, all Null) are cut from one
// slice, reusing b's memory when it is large enough; b nil: fresh memory.
func (b *PushBuffer) take(n, nf int) ([]event.Event, []event.Value) {
	if b == nil {
		return make([]event.Event, 0, n), make([]event.Value, n*nf)
	}
	if cap(b.events) < n {
		b.events = make([]event.Event, 0, n)
	}
	if cap(b.fields) < n*nf {
		b.fields = make([]event.Value, n*nf)
	}
	fields := b.fields[:n*nf]
	clear(fields)
	return b.events[:0], fields
}

// DecodePushInto is DecodePush into buf's memory (nil: new memory). The
// events it returns are valid until buf is used again.
func (d *Decoder) DecodePushInto(body []byte, now int64, buf *PushBuffer) (*definition.Source, []event.Event, error) {
	if src, events, err, ok := d.decodeUsualPush(body, now, buf); ok {
		return src, events, err
	}
	// A body of the usual shape in another order is read in place after
	// one pass that checks it; any other, valid or not, by encoding/json,
	// whose rules and wording the API has always had.
	shape, fast := scanPush(body)
	name := string(shape.source)
	var raws []json.RawMessage
	if !fast {
		var err error
		if name, raws, err = decodePushBody(body); err != nil {
			return nil, nil, err
		}
		shape.events = len(raws)
	}
	if name == "" {
		return nil, nil, &RequestError{Message: `"source" is missing: name the source the events belong to`}
	}
	src := d.project.Source(name)
	if src == nil {
		return nil, nil, &RequestError{Message: fmt.Sprintf("source %q is not defined (defined: %s)", name, d.sourceNames())}
	}
	if src.Type != definition.Push {
		return nil, nil, &RequestError{Message: fmt.Sprintf("source %q is of type %s and does not take pushed events", src.Name, src.Type)}
	}
	n := shape.events
	if n > MaxEventsPerPush {
		return nil, nil, &RequestError{Message: fmt.Sprintf("%d events in one push; the limit is %d: split the batch", n, MaxEventsPerPush)}
	}
	nf := len(src.Fields)
	events, fields := buf.take(n, nf)
	events = events[:n]
	required := d.required[src]
	var problems []Problem
	at := shape.array + 1 // the first event, when fast
	for i := range events {
		ev := &events[i]
		*ev = event.Event{Fields: fields[i*nf : (i+1)*nf : (i+1)*nf]} // a reused event keeps nothing
		var serr *syntaxError
		if fast {
			at = skipSpace(body, at)
			at, problems, serr = d.decodeEvent(src, required, body, at, 2, i, now, ev, problems)
			at = skipSpace(body, at) + 1 // past the ',' or ']' that follows
		} else {
			_, problems, serr = d.decodeEvent(src, required, raws[i], 0, 2, i, now, ev, problems)
		}
		if serr != nil { // cannot be: the whole body was valid JSON
			problems = append(problems, Problem{Index: i, Message: serr.Error()})
			break
		}
		if len(problems) >= MaxDetails {
			problems = problems[:MaxDetails]
			break
		}
	}
	if len(problems) > 0 {
		return nil, nil, &RequestError{Message: fmt.Sprintf("%d invalid event(s); nothing was applied", countEvents(problems)), Details: problems}
	}
	return src, events, nil
}

// decodeUsualPush decodes, in one pass, a push body as producers write it:
// {"source": "<name>", "events": [...]}, keys in that order and the name
// without escapes, of a push source and with at most MaxEventsPerPush
// events, valid JSON throughout. It reports !ok for any other body, or
// when it cannot tell, and DecodePush starts again on its general path;
// for the bodies it takes, the results are the general path's.
func (d *Decoder) decodeUsualPush(body []byte, now int64, buf *PushBuffer) (src *definition.Source, events []event.Event, err error, ok bool) {
	i := skipSpace(body, 0)
	member := func(key string) bool {
		if i == len(body) || body[i] != '"' {
			return false
		}
		end, plain, serr := scanString(body, i)
		if serr != nil || !plain || string(body[i+1:end-1]) != key {
			return false
		}
		if i = skipSpace(body, end); i == len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		return true
	}
	if i == len(body) || body[i] != '{' {
		return nil, nil, nil, false
	}
	i = skipSpace(body, i+1)
	if !member("source") || i == len(body) || body[i] != '"' {
		return nil, nil, nil, false
	}
	end, plain, serr := scanString(body, i)
	if serr != nil || !plain {
		return nil, nil, nil, false
	}
	if src = d.project.Source(string(body[i+1 : end-1])); src == nil || src.Type != definition.Push {
		return nil, nil, nil, false
	}
	if i = skipSpace(body, end); i == len(body) || body[i] != ',' {
		return nil, nil, nil, false
	}
	i = skipSpace(body, i+1)
	if !member("events") || i == len(body) || body[i] != '[' {
		return nil, nil, nil, false
	}
	// Every event that is an object has a '{': room for them all.
	n := min(bytes.Count(body[i:], []byte{'{'}), MaxEventsPerPush)
	nf := len(src.Fields)
	events, fields := buf.take(n, nf)
	required := d.required[src]
	var problems []Problem
	if i = skipSpace(body, i+1); i < len(body) && body[i] == ']' {
		i++
	} else {
		for {
			k := len(events)
			if k == cap(events) {
				return nil, nil, nil, false // over the limit, or an event that is not an object
			}
			events = events[:k+1]
			ev := &events[k]
			*ev = event.Event{Fields: fields[k*nf : (k+1)*nf : (k+1)*nf]} // a reused event keeps nothing
			if len(problems) < MaxDetails {
				i, problems, serr = d.decodeEvent(src, required, body, i, 2, k, now, ev, problems)
			} else {
				i, _, serr = skipValue(body, i, 2) // only to know the body is valid
			}
			if serr != nil {
				return nil, nil, nil, false
			}
			if i = skipSpace(body, i); i == len(body) {
				return nil, nil, nil, false
			}
			if body[i] == ']' {
				i++
				break
			}
			if body[i] != ',' {
				return nil, nil, nil, false
			}
			i = skipSpace(body, i+1)
		}
	}
	if i = skipSpace(body, i); i == len(body) || body[i] != '}' || skipSpace(body, i+1) != len(body) {
		return nil, nil, nil, false
	}
	if len(problems) > 0 {
		problems = problems[:min(len(problems), MaxDetails)]
		return nil, nil, &RequestError{Message: fmt.Sprintf("%d invalid event(s); nothing was applied", countEvents(problems)), Details: problems}, true
	}
	return src, events, nil, true
}

// decodePushBody reads a push body with encoding/json: the bodies scanPush
// leaves, and the wording of what is wrong with them.
func decodePushBody(body []byte) (string, []json.RawMessage, error) {
	var req pushBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return "", nil, &RequestError{Message: "request body is not a push request: " + jsonProblem(err) +
			`; send {"source": "<name>", "events": [{...}, ...]}`}
	}
	if dec.More() {
		return "", nil, &RequestError{Message: "request body has data after the JSON object"}
	}
	return req.Source, req.Events, nil
}

// pushShape locates the parts of a push body.
type pushShape struct {
	source []byte // the source name
	array  int    // the offset of the events array's '['
	events int    // how many events the array holds
}

// scanPush reads a push body of the usual shape: a valid JSON object with
// exactly the keys "source", a string without escapes, and "events", an
// array, in either order. It checks the whole body, events included, but
// copies nothing. Any other body, valid or not, returns false: then
// encoding/json has the last word (it matches keys without regard to case,
// takes the last of repeated keys and words the errors).
func scanPush(b []byte) (shape pushShape, ok bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return shape, false
	}
	sawSource, sawEvents := false, false
	for {
		i = skipSpace(b, i+1)
		if i == len(b) || b[i] != '"' {
			return shape, false
		}
		end, plain, err := scanString(b, i)
		if err != nil || !plain {
			return shape, false
		}
		key := b[i+1 : end-1]
		if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
			return shape, false
		}
		i = skipSpace(b, i+1)
		switch {
		case string(key) == "source" && !sawSource && i < len(b) && b[i] == '"':
			sawSource = true
			if end, plain, err = scanString(b, i); err != nil || !plain {
				return shape, false
			}
			shape.source = b[i+1 : end-1]
		case string(key) == "events" && !sawEvents && i < len(b) && b[i] == '[':
			sawEvents = true
			shape.array = i
			if end, shape.events, err = skipArray(b, i, 1); err != nil {
				return shape, false
			}
		default:
			return shape, false
		}
		if i = skipSpace(b, end); i == len(b) {
			return shape, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return shape, false
		}
	}
	return shape, sawSource && sawEvents && skipSpace(b, i+1) == len(b)
}

// DecodeEvent decodes one event of src — a JSON object of its fields and
// its event time, the shape of one element of a push's "events" — into ev,
// for a source of any type. ev.Fields must have len(src.Fields); DecodeEvent
// resets them first (so missing fields are Null) and ev keeps nothing of
// raw. now (Unix ms) bounds the event time from above, by the source's
// maximum future skew. It returns nil or a *RequestError whose Details are
// the problems of the event (Index 0; up to MaxDetails); ev is then
// unspecified. A valid event costs no allocation beyond its string values.
// src must be a source of the Decoder's project.
func (d *Decoder) DecodeEvent(src *definition.Source, raw []byte, now int64, ev *event.Event) error {
	required, ok := d.required[src]
	if !ok {
		panic(fmt.Sprintf("eventjson: DecodeEvent of source %q, which is not of the decoder's project", src.Name))
	}
	if len(ev.Fields) != len(src.Fields) {
		panic(fmt.Sprintf("eventjson: DecodeEvent into an event of %d fields; source %s has %d", len(ev.Fields), src.Name, len(src.Fields)))
	}
	clear(ev.Fields)
	ev.TS = 0
	end, problems, serr := d.decodeEvent(src, required, raw, skipSpace(raw, 0), 0, 0, now, ev, nil)
	if serr == nil {
		if end = skipSpace(raw, end); end < len(raw) {
			serr = badChar(raw, end, "after top-level value")
		}
	}
	if serr != nil {
		return &RequestError{Message: fmt.Sprintf("event of source %s is not valid JSON", src.Name),
			Details: []Problem{{Message: serr.Error()}}}
	}
	if len(problems) > 0 {
		return &RequestError{Message: fmt.Sprintf("invalid event of source %s", src.Name), Details: problems[:min(len(problems), MaxDetails)]}
	}
	return nil
}

func countEvents(ps []Problem) int {
	n, last := 0, -1
	for _, p := range ps {
		if p.Index != last {
			n++
			last = p.Index
		}
	}
	return n
}

func (d *Decoder) sourceNames() string {
	names := make([]string, len(d.project.Sources))
	for i, s := range d.project.Sources {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// decodeEvent decodes the JSON value at b[i:] as event idx of src into ev,
// whose Fields are all Null, appending its problems. depth is the number of
// arrays and objects around the value. It returns the offset just past the
// value, or a *syntaxError if b is not valid JSON up to there.
func (d *Decoder) decodeEvent(src *definition.Source, required []bool, b []byte, i, depth, idx int, now int64, ev *event.Event, problems []Problem) (int, []Problem, *syntaxError) {
	if i == len(b) || b[i] != '{' {
		end, _, err := skipValue(b, i, depth)
		if err != nil {
			return 0, problems, err
		}
		return end, append(problems, Problem{Index: idx, Message: "an event must be a JSON object of fields"}), nil
	}
	if depth++; depth > maxDepth {
		return 0, problems, &syntaxError{i, "exceeded max depth"}
	}
	var seenBuf [32]bool
	seen := seenBuf[:0]
	if len(src.Fields) <= len(seenBuf) {
		seen = seenBuf[:len(src.Fields)]
	} else {
		seen = make([]bool, len(src.Fields))
	}
	sawTime := false
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			// The key.
			if i == len(b) || b[i] != '"' {
				return 0, problems, badChar(b, i, "looking for beginning of object key string")
			}
			end, plain, err := scanString(b, i)
			if err != nil {
				return 0, problems, err
			}
			key := b[i+1 : end-1]
			if !plain {
				var buf [64]byte
				key = unquote(buf[:0], key)
			}
			if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
				return 0, problems, badChar(b, i, "after object key")
			}
			// The value.
			i = skipSpace(b, i+1)
			if end, plain, err = skipValue(b, i, depth); err != nil {
				return 0, problems, err
			}
			raw := b[i:end]
			if string(key) == src.EventTime {
				if sawTime {
					problems = appendProblem(problems, idx, key, "given twice")
				} else {
					sawTime = true
					switch ts, msg := parseTime(raw, plain); {
					case msg != "":
						problems = appendProblem(problems, idx, key, msg)
					case ts < src.MinEventTime:
						problems = appendProblem(problems, idx, key, tooEarly(src, raw, ts))
					case ts > now+maxSkew(src).Milliseconds():
						problems = appendProblem(problems, idx, key, fmt.Sprintf("event time %s is more than %s ahead of the server clock (%s); fix the producer's clock or raise max_future_skew of source %s",
							formatTS(ts), maxSkew(src), formatTS(now), src.Name))
					default:
						ev.TS = ts
					}
				}
			} else if fi := fieldIndex(src, key); fi < 0 {
				problems = appendProblem(problems, idx, key, fmt.Sprintf("not a field of source %s (fields: %s, and %s for the event time)", src.Name, fieldNames(src), src.EventTime))
			} else if seen[fi] {
				problems = appendProblem(problems, idx, key, "given twice")
			} else {
				seen[fi] = true
				switch v, msg := d.parseValue(src.Fields[fi].Type, raw, plain); {
				case msg != "":
					problems = appendProblem(problems, idx, key, msg)
				case v.Kind == event.Null && required[fi]:
					problems = appendProblem(problems, idx, key, "is a key field and cannot be null")
				default:
					ev.Fields[fi] = v
				}
			}
			// A ',' and the next member, or the end.
			if i = skipSpace(b, end); i == len(b) {
				return 0, problems, badChar(b, i, "after object key:value pair")
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return 0, problems, badChar(b, i, "after object key:value pair")
			}
			i = skipSpace(b, i+1)
		}
	}
	if !sawTime {
		problems = append(problems, Problem{Index: idx, Field: src.EventTime, Message: "missing: every event needs its event time, as RFC 3339 (\"2026-11-26T10:00:00Z\") or epoch milliseconds"})
	}
	for fi, req := range required {
		if req && !seen[fi] {
			problems = append(problems, Problem{Index: idx, Field: src.Fields[fi].Name, Message: "missing: it is a key field of a view fed by source " + src.Name})
		}
	}
	return i, problems, nil
}

func appendProblem(ps []Problem, idx int, field []byte, msg string) []Problem {
	return append(ps, Problem{Index: idx, Field: string(field), Message: msg})
}

// fieldIndex is src.FieldIndex for a name in bytes.
func fieldIndex(src *definition.Source, name []byte) int {
	for i := range src.Fields {
		if src.Fields[i].Name == string(name) {
			return i
		}
	}
	return -1
}

// parseValue reads one JSON value (raw, valid JSON) of type t by
// event.ParseJSON's rules; plain says a string's contents need no
// unquoting. Strings and short integers are read here, without allocating
// (but for the string's own bytes); anything else by event.ParseJSON.
func (d *Decoder) parseValue(t event.Type, raw []byte, plain bool) (event.Value, string) {
	switch {
	case t == event.String && raw[0] == '"':
		s := raw[1 : len(raw)-1]
		if !plain {
			var buf [64]byte
			s = unquote(buf[:0], s)
		}
		return event.StringValue(d.strs.get(s)), ""
	case t == event.Int64:
		if n, ok := parseShortInt(raw); ok {
			return event.IntValue(n), ""
		}
	case t == event.Float64:
		if f, ok := parseShortFloat(raw); ok {
			return event.FloatValue(f), ""
		}
	}
	return event.ParseJSON(t, raw)
}

// pow10 holds the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseShortFloat reads a valid JSON number (raw, checked by the scanner)
// of at most 19 significant digits, m × 10^e, rounded to the nearest
// float64 as strconv does. When m ≤ 2^53 and |e| ≤ 22, m and 10^|e| are
// exact and one multiplication or division rounds once (Clinger's fast
// path); otherwise, for |e| ≤ 19, m × 10^e or m / 10^-e is computed to 64
// significant bits in integers and rounded once (exactRound). Other
// numbers return false, for strconv.
func parseShortFloat(raw []byte) (float64, bool) {
	i, neg := 0, false
	if len(raw) > 0 && raw[0] == '-' {
		i, neg = 1, true
	}
	var m uint64
	digits, exp := 0, 0
	start := i
	for ; i < len(raw) && isDigit(raw[i]); i++ {
		m = m*10 + uint64(raw[i]-'0')
		digits++
	}
	if i == start || digits > 19 {
		return 0, false
	}
	if i < len(raw) && raw[i] == '.' {
		i++
		start = i
		for ; i < len(raw) && isDigit(raw[i]); i++ {
			m = m*10 + uint64(raw[i]-'0')
			digits++
			exp--
		}
		if i == start || digits > 19 {
			return 0, false
		}
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		sign := 1
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			if raw[i] == '-' {
				sign = -1
			}
			i++
		}
		start = i
		e := 0
		for ; i < len(raw) && isDigit(raw[i]) && e < 1000; i++ {
			e = e*10 + int(raw[i]-'0')
		}
		if i == start {
			return 0, false
		}
		exp += sign * e
	}
	if i != len(raw) {
		return 0, false
	}
	var f float64
	switch {
	case m <= 1<<53 && exp >= -22 && exp <= 22:
		f = float64(m)
		if exp < 0 {
			f /= pow10[-exp]
		} else {
			f *= pow10[exp]
		}
	case m != 0 && exp >= -19 && exp <= 19:
		f = exactRound(m, exp)
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

// exactRound returns m × 10^e rounded to the nearest float64, ties to
// even, for m > 0 and |e| ≤ 19 (10^|e| fits a uint64). The product, or
// the quotient with its remainder, is formed exactly in 128-bit integers,
// so the one rounding is correct: JSON producers write most floats with
// 16 or 17 digits, which Clinger's fast path cannot take.
func exactRound(m uint64, e int) float64 {
	if e >= 0 {
		hi, lo := bits.Mul64(m, pow10u[e])
		if hi == 0 {
			lz := bits.LeadingZeros64(lo)
			return round64(lo<<lz, -lz, false)
		}
		lz := bits.LeadingZeros64(hi)
		return round64(hi<<lz|lo>>(64-lz), 64-lz, lo<<lz != 0)
	}
	// m / d = (X / D) × 2^(lzd − lzm), X and D having their top bits set,
	// so that the quotient below has its top bit set too.
	d := pow10u[-e]
	lzm, lzd := bits.LeadingZeros64(m), bits.LeadingZeros64(d)
	x, dn := m<<lzm, d<<lzd
	if x < dn {
		q, r := bits.Div64(x, 0, dn) // ⌊X × 2^64 / D⌋
		return round64(q, lzd-lzm-64, r != 0)
	}
	q, r := bits.Div64(x>>1, x<<63, dn) // ⌊X × 2^63 / D⌋
	return round64(q, lzd-lzm-63, r != 0)
}

// round64 returns q × 2^shift rounded to the nearest float64, ties to
// even; q has its top bit set, and sticky says the exact value had more
// bits below q's that were not all zero.
func round64(q uint64, shift int, sticky bool) float64 {
	const drop = 64 - 53
	mant, low := q>>drop, q&(1<<drop-1)
	if half := uint64(1) << (drop - 1); low > half || (low == half && (sticky || mant&1 == 1)) {
		if mant++; mant == 1<<53 {
			mant >>= 1
			shift++
		}
	}
	return math.Ldexp(float64(mant), shift+drop)
}

// pow10u holds 10^0 to 10^19, the powers of ten a uint64 holds.
var pow10u = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// parseShortInt reads a JSON number of at most 18 digits and no fraction or
// exponent, which always fits an int64.
func parseShortInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(raw) {
		n = -n
	}
	return n, true
}

// maxSkew is how far ahead of the clock an event of src may be; the
// definition sets it (1m unless the file says otherwise).
func maxSkew(src *definition.Source) time.Duration { return src.MaxFutureSkew }

func fieldNames(src *definition.Source) string {
	names := make([]string, len(src.Fields))
	for i, f := range src.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// tooEarly says why event time ts, written raw, of src is refused: it is
// before the source's min_event_time. An integer that is a plausible time
// once multiplied by 1000 is most likely seconds since 1970 (date +%s), and
// the message says to send milliseconds.
func tooEarly(src *definition.Source, raw []byte, ts int64) string {
	msg := fmt.Sprintf("event time %s is before %s (min_event_time of source %s)", truncate(raw), formatFloor(src.MinEventTime), src.Name)
	if raw[0] != '"' && ts <= maxTS/1000 && ts*1000 >= src.MinEventTime {
		return msg + fmt.Sprintf("; it looks like seconds since 1970: send milliseconds (%d)", ts*1000)
	}
	return msg + `; send the time as epoch milliseconds or RFC 3339, or lower min_event_time`
}

// formatFloor writes a min_event_time as the project file may: a date when
// it is midnight UTC.
func formatFloor(ms int64) string {
	if ms%(24*3600*1000) == 0 {
		return time.UnixMilli(ms).UTC().Format(time.DateOnly)
	}
	return formatTS(ms)
}

func formatTS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// parseTime reads an event time (raw, valid JSON): an RFC 3339 string or
// integer epoch ms. plain says a string's contents need no unquoting.
func parseTime(raw []byte, plain bool) (int64, string) {
	const want = `write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`
	if raw[0] == '"' {
		s := raw[1 : len(raw)-1]
		if !plain {
			var buf [64]byte
			s = unquote(buf[:0], s)
		}
		ms, year, ok := parseRFC3339(s)
		if !ok { // time.Parse may take it all the same, e.g. "…T10:00:00,5Z"
			t, err := time.Parse(time.RFC3339Nano, string(s))
			if err != nil {
				return 0, fmt.Sprintf("%q is not an RFC 3339 time; %s", s, want)
			}
			ms, year = t.UnixMilli(), t.Year()
		}
		// The year as written, and the instant: "1970-01-01T00:30:00+01:00"
		// is in 1970 as written but before the epoch in UTC.
		if year < 1970 || ms < 0 || ms > maxTS {
			return 0, fmt.Sprintf("%q is outside 1970–9999", s)
		}
		return ms, ""
	}
	ms, ok := parseShortInt(raw)
	if !ok {
		var err error
		if ms, err = strconv.ParseInt(string(raw), 10, 64); err != nil {
			return 0, fmt.Sprintf("%s is not a time; %s", truncate(raw), want)
		}
	}
	if ms < 0 || ms > maxTS {
		return 0, fmt.Sprintf("%d epoch milliseconds is outside 1970–9999", ms)
	}
	return ms, ""
}

// parseRFC3339 is time.Parse's fast path for layout RFC3339Nano
// (parseRFC3339 in time/format_rfc3339.go), on bytes and without
// allocating: the time in Unix ms and its year as written. When it is not
// ok, time.Parse may still accept s by its general rules.
func parseRFC3339(s []byte) (ms int64, year int, ok bool) {
	ok = true
	num := func(s []byte, lo, hi int) int {
		x := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
			return lo
		}
		return x
	}
	if len(s) < len("2006-01-02T15:04:05") {
		return 0, 0, false
	}
	year = num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, daysIn(time.Month(month), year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, 0, false
	}
	s = s[19:]
	nsec := 0
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 2
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		for k := 1; k < 10; k++ { // nine digits; more are ignored
			nsec *= 10
			if k < n {
				nsec += int(s[k] - '0')
			}
		}
		s = s[n:]
	}
	offset := 0
	if len(s) != 1 || s[0] != 'Z' {
		if len(s) != len("-07:00") {
			return 0, 0, false
		}
		hh := num(s[1:3], 0, 23)
		mm := num(s[4:6], 0, 59)
		if !ok || (s[0] != '-' && s[0] != '+') || s[3] != ':' {
			return 0, 0, false
		}
		if offset = (hh*60 + mm) * 60; s[0] == '-' {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.UnixMilli() - int64(offset)*1000, year, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

func truncate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// jsonProblem words a JSON decoding error of a push body for a person.
func jsonProblem(err error) string { return JSONProblem(err, pushWants) }

// pushWants says what each member of a push body must be.
func pushWants(field string) string {
	switch field {
	case "":
		return "a JSON object"
	case "source":
		return "a JSON string, the name of a source"
	case "events":
		return "a JSON array of event objects"
	}
	return ""
}

// JSONProblem words an error of encoding/json decoding a request body for
// a person, in the terms of the API and not of Go: want says what the
// member at a path ("" for the body, "events", "entities.user") must be,
// like "a JSON array of event objects" ("": say it by the JSON kind).
func JSONProblem(err error, want func(field string) string) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		w := want(typ.Field)
		if w == "" && typ.Type != nil {
			w = jsonKind(typ.Type.Kind())
		}
		what := "the body"
		if typ.Field != "" {
			what = typ.Field
		}
		return fmt.Sprintf("%s must be %s, not a JSON %s", what, w, jsonValueKind(typ.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short"
	}
	// encoding/json's other errors ("json: unknown field \"x\"") name no Go
	// type; only the package's prefix goes.
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names, in JSON's terms, the values a Go type of kind k takes.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a JSON string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.Map, reflect.Struct, reflect.Pointer, reflect.Interface:
		return "a JSON object"
	}
	return "a JSON number"
}

// jsonValueKind turns UnmarshalTypeError.Value ("string", "number 1.5",
// "array") into the kind of JSON value it names.
func jsonValueKind(v string) string {
	if k, _, ok := strings.Cut(v, " "); ok {
		return k
	}
	return v
}

// The JSON scanner. It accepts what encoding/json accepts — RFC 8259, with
// any bytes but '"', '\\' and control characters inside strings, valid
// UTF-8 or not — and nests arrays and objects as deep as maxDepth, as
// encoding/json does. Each function takes the offset of a value's first
// byte and returns the offset just past it.

// maxDepth is how deeply arrays and objects may nest (encoding/json's
// maxNestingDepth).
const maxDepth = 10000

// syntaxError is where and how a JSON text is malformed.
type syntaxError struct {
	off int // the offset of the byte at fault
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.off, e.msg)
}

// badChar is the error of an unexpected byte at b[i], or of the end of b.
func badChar(b []byte, i int, context string) *syntaxError {
	if i >= len(b) {
		return &syntaxError{len(b), "unexpected end of JSON input"}
	}
	c := b[i]
	var q string
	switch c {
	case '\'':
		q = `'\''`
	case '"':
		q = `'"'`
	default:
		q = strconv.QuoteRune(rune(c))
	}
	return &syntaxError{i, "invalid character " + q + " " + context}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipValue checks the value at b[i:], whose enclosing arrays and objects
// number depth. plain says, of a string, that its contents are its value
// as they stand (no escapes, nothing but ASCII); it is true of other
// values.
func skipValue(b []byte, i, depth int) (end int, plain bool, err *syntaxError) {
	if i >= len(b) {
		return 0, false, badChar(b, i, "")
	}
	switch c := b[i]; c {
	case '"':
		return scanString(b, i)
	case '{':
		end, err = skipObject(b, i, depth)
	case '[':
		end, _, err = skipArray(b, i, depth)
	case 't':
		end, err = skipLiteral(b, i, "true")
	case 'f':
		end, err = skipLiteral(b, i, "false")
	case 'n':
		end, err = skipLiteral(b, i, "null")
	default:
		if c == '-' || isDigit(c) {
			end, err = scanNumber(b, i)
		} else {
			err = badChar(b, i, "looking for beginning of value")
		}
	}
	return end, true, err
}

// scanString checks the string at b[i] == '"'; plain says its contents
// have no escapes and nothing but ASCII.
func scanString(b []byte, i int) (end int, plain bool, err *syntaxError) {
	plain = true
	for i++; i < len(b); i++ {
		c := b[i]
		if stringByte[c] {
			continue
		}
		switch {
		case c == '"':
			return i + 1, plain, nil
		case c == '\\':
			plain = false
			if i++; i == len(b) {
				return 0, false, badChar(b, i, "")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for k := 0; k < 4; k++ {
					if i++; i == len(b) || !isHex(b[i]) {
						return 0, false, badChar(b, i, `in \u hexadecimal character escape`)
					}
				}
			default:
				return 0, false, badChar(b, i, "in string escape code")
			}
		case c < ' ':
			return 0, false, badChar(b, i, "in string literal")
		default: // beyond ASCII
			plain = false
		}
	}
	return 0, false, badChar(b, i, "")
}

// stringByte[c] says c stands for itself in a string and is ASCII.
var stringByte = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func scanNumber(b []byte, i int) (int, *syntaxError) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return 0, badChar(b, i, "in numeric literal")
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) || !isDigit(b[i]) {
			return 0, badChar(b, i, "after decimal point in numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return 0, badChar(b, i, "in exponent of numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, nil
}

func skipLiteral(b []byte, i int, lit string) (int, *syntaxError) {
	for k := 1; k < len(lit); k++ {
		if i+k == len(b) || b[i+k] != lit[k] {
			return 0, badChar(b, i+k, fmt.Sprintf("in literal %s (expecting %s)", lit, strconv.QuoteRune(rune(lit[k]))))
		}
	}
	return i + len(lit), nil
}

func skipObject(b []byte, i, depth int) (int, *syntaxError) {
	if depth++; depth > maxDepth {
		return 0, &syntaxError{i, "exceeded max depth"}
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i == len(b) || b[i] != '"' {
			return 0, badChar(b, i, "looking for beginning of object key string")
		}
		end, _, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
			return 0, badChar(b, i, "after object key")
		}
		if end, _, err = skipValue(b, skipSpace(b, i+1), depth); err != nil {
			return 0, err
		}
		if i = skipSpace(b, end); i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		if i == len(b) || b[i] != ',' {
			return 0, badChar(b, i, "after object key:value pair")
		}
		i = skipSpace(b, i+1)
	}
}

// skipArray checks the array at b[i] == '[' and counts its elements.
func skipArray(b []byte, i, depth int) (end, n int, err *syntaxError) {
	if depth++; depth > maxDepth {
		return 0, 0, &syntaxError{i, "exceeded max depth"}
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
		return i + 1, 0, nil
	}
	for {
		if end, _, err = skipValue(b, i, depth); err != nil {
			return 0, 0, err
		}
		n++
		if i = skipSpace(b, end); i < len(b) && b[i] == ']' {
			return i + 1, n, nil
		}
		if i == len(b) || b[i] != ',' {
			return 0, 0, badChar(b, i, "after array element")
		}
		i = skipSpace(b, i+1)
	}
}

// unquote returns the value of a JSON string whose contents (between its
// quotes, already checked) are s, as encoding/json decodes it: escapes
// replaced, and invalid UTF-8 and lone surrogates made U+FFFD. It returns s
// itself when nothing changes, and otherwise appends to dst.
func unquote(dst, s []byte) []byte {
	r := 0
	for r < len(s) {
		c := s[r]
		if c == '\\' {
			break
		}
		if c < utf8.RuneSelf {
			r++
			continue
		}
		rr, size := utf8.DecodeRune(s[r:])
		if rr == utf8.RuneError && size == 1 {
			break
		}
		r += size
	}
	if r == len(s) {
		return s
	}
	b := append(dst, s[:r]...)
	for r < len(s) {
		c := s[r]
		switch {
		case c == '\\':
			switch c = s[r+1]; c {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, c)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case isDigit(c):
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// Interning of string values.
const (
	// internSlots is the size of an interner's table (a power of two).
	internSlots = 1024
	// internMaxLen is the longest string interned, in bytes.
	internMaxLen = 32
)

// interner shares the strings of short values that recur — the kind of an
// event, a country — between the events that carry them, so that decoding
// such a value allocates nothing. It is a direct-mapped cache: a string
// enters its slot when it misses there twice in a row, so values that do
// not recur (ids) cost their own allocation and no more, and cannot evict
// the ones that do. It holds at most internSlots strings of up to
// internMaxLen bytes, and is safe for concurrent use: each slot holds an
// atomic pointer to an immutable string.
type interner struct {
	seed  maphash.Seed
	slots [internSlots]struct {
		s    atomic.Pointer[string]
		miss atomic.Uint64 // the hash of the value that missed last
	}
}

func newInterner() *interner { return &interner{seed: maphash.MakeSeed()} }

// get returns string(b), shared if b recurs.
func (in *interner) get(b []byte) string {
	if len(b) == 0 || len(b) > internMaxLen {
		return string(b)
	}
	h := maphash.Bytes(in.seed, b)
	slot := &in.slots[h%internSlots]
	if p := slot.s.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	if slot.miss.Load() == h {
		p := new(string)
		*p = s
		slot.s.Store(p)
	} else {
		slot.miss.Store(h)
	}
	return s
}
