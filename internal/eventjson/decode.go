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
	"io"
	"reflect"
	"strings"
	"time"

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
					if ts, msg := checkTime(src, raw, plain, now); msg != "" {
						problems = appendProblem(problems, idx, key, msg)
					} else {
						ev.TS = ts
					}
				}
			} else if fi := fieldIndex(src, key); fi < 0 {
				problems = appendProblem(problems, idx, key, UnknownField(src))
			} else if seen[fi] {
				problems = appendProblem(problems, idx, key, "given twice")
			} else {
				seen[fi] = true
				switch v, msg := d.parseValue(src.Fields[fi].Type, raw, plain); {
				case msg != "":
					problems = appendProblem(problems, idx, key, msg)
				case v.Kind == event.Null && required[fi]:
					problems = appendProblem(problems, idx, key, NullKey)
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
		problems = append(problems, Problem{Index: idx, Field: src.EventTime, Message: MissingEventTime})
	}
	for fi, req := range required {
		if req && !seen[fi] {
			problems = append(problems, Problem{Index: idx, Field: src.Fields[fi].Name, Message: MissingKey(src)})
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
