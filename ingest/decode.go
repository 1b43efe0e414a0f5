package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/event"
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

// Decoder turns JSON push requests into events of a project's sources,
// checking every event against its source's schema.
type Decoder struct {
	project *definition.Project
	// required[source] are the fields an event of that source must carry:
	// the key fields of every entity the source feeds.
	required map[*definition.Source][]bool
}

// NewDecoder returns a decoder for the project's sources.
func NewDecoder(p *definition.Project) *Decoder {
	d := &Decoder{project: p, required: map[*definition.Source][]bool{}}
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
// listing every problem found (up to MaxDetails).
func (d *Decoder) DecodePush(body []byte, now int64) (*definition.Source, []event.Event, error) {
	var req pushBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, nil, &RequestError{Message: "request body is not a push request: " + jsonProblem(err) +
			`; send {"source": "<name>", "events": [{...}, ...]}`}
	}
	if dec.More() {
		return nil, nil, &RequestError{Message: "request body has data after the JSON object"}
	}
	if req.Source == "" {
		return nil, nil, &RequestError{Message: `"source" is missing: name the source the events belong to`}
	}
	src := d.project.Source(req.Source)
	if src == nil {
		return nil, nil, &RequestError{Message: fmt.Sprintf("source %q is not defined (defined: %s)", req.Source, d.sourceNames())}
	}
	if src.Type != "push" {
		return nil, nil, &RequestError{Message: fmt.Sprintf("source %q is of type %s and does not take pushed events", src.Name, src.Type)}
	}
	if len(req.Events) > MaxEventsPerPush {
		return nil, nil, &RequestError{Message: fmt.Sprintf("%d events in one push; the limit is %d: split the batch", len(req.Events), MaxEventsPerPush)}
	}
	events := make([]event.Event, len(req.Events))
	fields := make([]event.Value, len(req.Events)*len(src.Fields))
	var problems []Problem
	for i, raw := range req.Events {
		events[i].Fields = fields[i*len(src.Fields) : (i+1)*len(src.Fields) : (i+1)*len(src.Fields)]
		problems = d.decodeEvent(src, raw, i, now, &events[i], problems)
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

// decodeEvent parses one event object into ev, appending its problems.
func (d *Decoder) decodeEvent(src *definition.Source, raw json.RawMessage, idx int, now int64, ev *event.Event, problems []Problem) []Problem {
	bad := func(field, format string, args ...any) {
		problems = append(problems, Problem{Index: idx, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		bad("", "an event must be a JSON object of fields")
		return problems
	}
	seen := make([]bool, len(src.Fields))
	sawTime := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			bad("", "malformed JSON: %s", jsonProblem(err))
			return problems
		}
		name, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			bad(name, "malformed JSON: %s", jsonProblem(err))
			return problems
		}
		if name == src.EventTime {
			if sawTime {
				bad(name, "given twice")
				continue
			}
			sawTime = true
			ts, msg := parseTime(val)
			switch {
			case msg != "":
				bad(name, "%s", msg)
			case ts > now+maxSkew(src).Milliseconds():
				bad(name, "event time %s is more than %s ahead of the server clock (%s); fix the producer's clock or raise max_future_skew of source %s",
					formatTS(ts), maxSkew(src), formatTS(now), src.Name)
			default:
				ev.TS = ts
			}
			continue
		}
		fi := src.FieldIndex(name)
		if fi < 0 {
			bad(name, "not a field of source %s (fields: %s, and %s for the event time)", src.Name, fieldNames(src), src.EventTime)
			continue
		}
		if seen[fi] {
			bad(name, "given twice")
			continue
		}
		seen[fi] = true
		v, msg := event.ParseJSON(src.Fields[fi].Type, val)
		if msg != "" {
			bad(name, "%s", msg)
			continue
		}
		if v.Kind == event.Null && d.required[src][fi] {
			bad(name, "is a key field and cannot be null")
			continue
		}
		ev.Fields[fi] = v
	}
	if !sawTime {
		bad(src.EventTime, "missing: every event needs its event time, as RFC 3339 (\"2026-11-26T10:00:00Z\") or epoch milliseconds")
	}
	for fi, req := range d.required[src] {
		if req && !seen[fi] {
			bad(src.Fields[fi].Name, "missing: it is a key field of a view fed by source %s", src.Name)
		}
	}
	return problems
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

func formatTS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// parseTime reads an event time: an RFC 3339 string or integer epoch ms.
func parseTime(raw json.RawMessage) (int64, string) {
	const want = `write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, want
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Sprintf("%q is not an RFC 3339 time; %s", s, want)
		}
		ms := t.UnixMilli()
		if t.Year() < 1970 || ms > maxTS {
			return 0, fmt.Sprintf("%q is outside 1970–9999", s)
		}
		return ms, ""
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Sprintf("%s is not a time; %s", truncate(raw), want)
	}
	if ms < 0 || ms > maxTS {
		return 0, fmt.Sprintf("%d epoch milliseconds is outside 1970–9999", ms)
	}
	return ms, ""
}

func truncate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// jsonProblem words a JSON decoding error for a person.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q should be %s, not JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short"
	}
	return err.Error()
}
