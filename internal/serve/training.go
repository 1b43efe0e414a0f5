package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/training"
)

// Limits of POST /v1/training-set.
const (
	// MaxTrainingRows is the most spine rows one training-set request may
	// carry.
	MaxTrainingRows = 100_000
	// MaxTrainingBytes is the largest training-set request body accepted.
	MaxTrainingBytes = 64 << 20
)

// trainingRequest is the JSON shape of POST /v1/training-set.
type trainingRequest struct {
	Service    string            `json:"service"`
	Features   []string          `json:"features"`
	TimeColumn string            `json:"time_column"`
	AsServed   bool              `json:"as_served"`
	Spine      []json.RawMessage `json:"spine"`
}

// handleTrainingSet computes a training set for a JSON spine from the
// event archive: each row comes back as it was sent, with one member per
// served value added. A bad row refuses the whole request, naming its index
// and field; nothing is read before the request is whole.
func (s *Server) handleTrainingSet(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Archive == nil || s.resolver == nil {
		writeError(w, http.StatusForbidden, "this process has no event archive to compute training sets from: start it with --archive, or ask a process that has one", nil)
		return
	}
	body, ok := readBody(w, r, MaxTrainingBytes)
	if !ok {
		return
	}
	var req trainingRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not a training-set request: "+eventjson.JSONProblem(err, trainingWants)+
			`; send {"service": "<name>" or "features": ["view:feature", ...], "spine": [{"ts": ..., "<key>": ..., ...}, ...]}`, nil)
		return
	}
	var prep *query.Prepared
	var err error
	switch {
	case req.Service != "" && len(req.Features) > 0:
		err = errors.New(`give "service" or "features", not both`)
	case req.Service != "":
		prep, err = s.resolver.Service(req.Service)
	default:
		prep, err = s.resolver.Prepare(req.Features)
	}
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if req.TimeColumn == "" {
		req.TimeColumn = "ts"
	}
	switch n := len(req.Spine); {
	case n == 0:
		writeError(w, http.StatusBadRequest, `"spine" is empty: give at least one row, like {"ts": "2026-11-26T10:00:00Z", "<key>": ...}`, nil)
		return
	case n > MaxTrainingRows:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d spine rows in one request; the limit is %d: split it", n, MaxTrainingRows), nil)
		return
	}
	spine, err := parseSpine(prep, req.Spine, req.TimeColumn)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	// A training set reads the whole archive: one at a time, so that they
	// do not crowd out the reads and pushes the process serves.
	if !s.training.TryLock() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "a training set is being computed on this process: retry when it is done", nil)
		return
	}
	defer s.training.Unlock()
	if s.cfg.FlushArchive != nil {
		if err := s.cfg.FlushArchive(r.Context()); err != nil {
			s.storeError(w, "writing the archive's journal to the archive", err)
			return
		}
	}
	mode := training.EventTime
	if req.AsServed {
		mode = training.AsServed
	}
	set, err := training.Build(r.Context(), training.Options{Project: s.cfg.Project, Plans: s.cfg.Plans, Archive: s.cfg.Archive, Mode: mode}, prep, spine)
	if err != nil {
		s.storeError(w, "reading the event archive", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(appendTrainingSet(nil, req.Spine, set))
}

// trainingWants says what each member of a training-set request must be.
func trainingWants(field string) string {
	switch field {
	case "":
		return "a JSON object"
	case "service":
		return "a JSON string, the name of a service"
	case "features":
		return `a JSON array of feature names, like ["view:feature"]`
	case "time_column":
		return "a JSON string, the name of the rows' time member (default ts)"
	case "as_served":
		return "true or false"
	case "spine":
		return `a JSON array of row objects, like [{"ts": "2026-11-26T10:00:00Z", "<key>": ...}]`
	}
	return ""
}

// parseSpine reads the rows of a JSON spine: each an object with the time
// member and the key fields of every entity type the features are about.
func parseSpine(prep *query.Prepared, rows []json.RawMessage, timeColumn string) (*training.Spine, error) {
	sp := &training.Spine{Times: make([]int64, len(rows)), Keys: make([][]event.Value, len(prep.Entities))}
	for e, pe := range prep.Entities {
		sp.Keys[e] = make([]event.Value, 0, len(rows)*len(pe.Entity.KeyTypes))
	}
	var problems []eventjson.Problem
	bad := func(i int, field, format string, args ...any) {
		problems = append(problems, eventjson.Problem{Index: i, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for i, raw := range rows {
		if len(problems) >= eventjson.MaxDetails {
			break
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			bad(i, "", "a spine row must be an object like {%q: \"2026-11-26T10:00:00Z\", ...}", timeColumn)
			for e, pe := range prep.Entities {
				sp.Keys[e] = append(sp.Keys[e], make([]event.Value, len(pe.Entity.KeyTypes))...)
			}
			continue
		}
		for _, pe := range prep.Entities {
			for _, f := range pe.Features {
				if _, ok := obj[f.Name]; ok {
					bad(i, f.Name, "a row member named as a served value the training set adds: rename it")
				}
			}
		}
		if t, ok := obj[timeColumn]; !ok {
			bad(i, timeColumn, "missing: every row needs its time, as RFC 3339 or epoch milliseconds")
		} else if ts, msg := jsonTime(t); msg != "" {
			bad(i, timeColumn, "%s", msg)
		} else {
			sp.Times[i] = ts
		}
		for e, pe := range prep.Entities {
			for k, name := range pe.Entity.Def.Keys {
				v, ok := obj[name]
				var val event.Value
				switch {
				case !ok:
					bad(i, name, "missing: it is the key of entity %s", pe.Entity.Def.Name)
				default:
					var msg string
					val, msg = event.ParseJSON(pe.Entity.KeyTypes[k], v)
					switch {
					case msg != "":
						bad(i, name, "%s", msg)
					case val.Kind == event.Null:
						bad(i, name, "cannot be null: it is the key of entity %s", pe.Entity.Def.Name)
					}
				}
				sp.Keys[e] = append(sp.Keys[e], val)
			}
		}
	}
	if len(problems) > 0 {
		problems = problems[:min(len(problems), eventjson.MaxDetails)]
		return nil, &eventjson.RequestError{Message: fmt.Sprintf("%d problem(s) in the spine; nothing was computed", len(problems)), Details: problems}
	}
	return sp, nil
}

// jsonTime reads a row's time: epoch milliseconds as a JSON number or
// string, or an RFC 3339 string.
func jsonTime(raw json.RawMessage) (int64, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
				return ms, ""
			}
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t.UnixMilli(), ""
			}
		}
	} else if ms, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return ms, ""
	}
	text := string(raw)
	if len(text) > 40 {
		text = text[:40] + "…"
	}
	return 0, fmt.Sprintf("%s is not a time: write RFC 3339 (\"2026-11-26T10:00:00Z\") or epoch milliseconds", text)
}

// appendTrainingSet writes the answer: every row as it was sent, members
// in their order, with the set's values added after them.
func appendTrainingSet(out []byte, rows []json.RawMessage, set *training.Set) []byte {
	out = append(out, `{"rows":[`...)
	for i, raw := range rows {
		if i > 0 {
			out = append(out, ',')
		}
		obj := bytes.TrimSpace(raw)
		obj = bytes.TrimSpace(obj[:len(obj)-1]) // without its '}'
		out = append(out, obj...)
		first := len(obj) == 1 // "{": no member yet
		for c, f := range set.Features {
			if !first || c > 0 {
				out = append(out, ',')
			}
			out = appendString(out, f.Name)
			out = append(out, ':')
			out = appendValue(out, set.Columns[c].Value(i))
		}
		out = append(out, '}')
	}
	sum := set.Summary
	out = append(out, `],"summary":{"rows":`...)
	out = strconv.AppendInt(out, int64(sum.Rows), 10)
	out = append(out, `,"entities":`...)
	out = strconv.AppendInt(out, int64(sum.Entities), 10)
	out = append(out, `,"events_read":`...)
	out = strconv.AppendInt(out, sum.EventsRead, 10)
	out = append(out, `,"rows_outside_archive":`...)
	out = strconv.AppendInt(out, int64(sum.Uncovered), 10)
	out = append(out, `,"seconds":`...)
	out = strconv.AppendFloat(out, sum.Seconds, 'f', 3, 64)
	return append(out, "}}\n"...)
}
