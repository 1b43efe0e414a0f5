package eventjson

// The reference decoder: DecodePush as it was before the scanner of
// decode.go, on encoding/json, kept verbatim but for names. The
// differential tests (decode_diff_test.go) hold the scanner to it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// refDecodePush is DecodePush on encoding/json.
func refDecodePush(d *Decoder, body []byte, now int64) (*definition.Source, []event.Event, error) {
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
	if src.Type != definition.Push {
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
		problems = refDecodeEvent(d, src, raw, i, now, &events[i], problems)
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

// refDecodeEvent parses one event object into ev, appending its problems.
func refDecodeEvent(d *Decoder, src *definition.Source, raw json.RawMessage, idx int, now int64, ev *event.Event, problems []Problem) []Problem {
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
			ts, msg := refParseTime(val)
			switch {
			case msg != "":
				bad(name, "%s", msg)
			case ts < src.MinEventTime:
				bad(name, "%s", refTooEarly(src, val, ts))
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

// refParseTime reads an event time: an RFC 3339 string or integer epoch ms.
func refParseTime(raw json.RawMessage) (int64, string) {
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
		if t.Year() < 1970 || ms < 0 || ms > maxTS {
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

// refTooEarly is the problem of an event time before min_event_time.
func refTooEarly(src *definition.Source, raw json.RawMessage, ts int64) string {
	floor := time.UnixMilli(src.MinEventTime).UTC()
	floorText := floor.Format(time.RFC3339Nano)
	if floor.Equal(floor.Truncate(24 * time.Hour)) {
		floorText = floor.Format(time.DateOnly)
	}
	msg := fmt.Sprintf("event time %s is before %s (min_event_time of source %s)", truncate(raw), floorText, src.Name)
	if raw[0] != '"' {
		if secs := time.Unix(ts, 0); !secs.Before(floor) && secs.UnixMilli() <= maxTS {
			return msg + fmt.Sprintf("; it looks like seconds since 1970: send milliseconds (%d)", secs.UnixMilli())
		}
	}
	return msg + "; send the time as epoch milliseconds or RFC 3339, or lower min_event_time"
}
