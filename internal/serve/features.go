package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/query"
)

// featuresRequest is the JSON shape of POST /v1/features.
type featuresRequest struct {
	Service  string                       `json:"service"`
	Features []string                     `json:"features"`
	Entities map[string][]json.RawMessage `json:"entities"`
}

// readState is the per-request memory of the read path, pooled.
type readState struct {
	req query.Request
	res query.Result
	out []byte
}

var readStates = sync.Pool{New: func() any { return new(readState) }}

// parseFeatures reads and checks a features request body into st.req.
// It answers the client itself when the request is bad.
func (s *Server) parseFeatures(w http.ResponseWriter, r *http.Request, st *readState) bool {
	body, ok := readBody(w, r, MaxFeaturesBytes)
	if !ok {
		return false
	}
	var req featuresRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not a features request: "+s.featuresProblem(body, err)+
			`; send {"service": "<name>" or "features": ["view:feature", ...], "entities": {"<entity>": [{"<key>": ...}, ...]}}`, nil)
		return false
	}
	var prep *query.Prepared
	var err error
	switch {
	case req.Service != "" && len(req.Features) > 0:
		err = errors.New(`give "service" or "features", not both`)
	case req.Service != "":
		prep, err = s.engine.Service(req.Service)
	default:
		prep, err = s.engine.Prepare(req.Features)
	}
	if err == nil {
		err = s.parseKeys(prep, req.Entities, &st.req)
	}
	if err != nil {
		writeRequestError(w, err)
		return false
	}
	return true
}

// featuresProblem words what is wrong with a features request body that
// encoding/json refused. A list of keys that is not an array is named by
// its entity, which encoding/json does not say.
func (s *Server) featuresProblem(body []byte, err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field == "entities" && typ.Type != nil && typ.Type.Kind() == reflect.Slice {
		var probe struct {
			Entities map[string]json.RawMessage `json:"entities"`
		}
		if json.Unmarshal(body, &probe) == nil {
			for _, name := range slices.Sorted(maps.Keys(probe.Entities)) {
				if raw := bytes.TrimSpace(probe.Entities[name]); len(raw) > 0 && raw[0] != '[' && raw[0] != 'n' {
					field := "entities." + name
					return eventjson.JSONProblem(&json.UnmarshalTypeError{Value: typ.Value, Type: typ.Type, Field: field}, s.featuresWants)
				}
			}
		}
	}
	return eventjson.JSONProblem(err, s.featuresWants)
}

// featuresWants says what each member of a features request must be.
func (s *Server) featuresWants(field string) string {
	switch field {
	case "":
		return "a JSON object"
	case "service":
		return "a JSON string, the name of a service"
	case "features":
		return `a JSON array of feature names, like ["view:feature"]`
	case "entities":
		return `a JSON object of entity names to lists of keys, like {"<entity>": [{"<key>": ...}, ...]}`
	}
	if name, ok := strings.CutPrefix(field, "entities."); ok {
		return fmt.Sprintf("a JSON array of key objects, like [%s]", s.keyExample(name))
	}
	return ""
}

// keyExample is a key object of the named entity, like {"user_id": 1}.
func (s *Server) keyExample(name string) string {
	if s.engine != nil {
		if e := s.engine.Entity(name); e != nil {
			if e.KeyTypes[0] == event.String {
				return fmt.Sprintf(`{%q: "a"}`, e.Def.Keys[0])
			}
			return fmt.Sprintf(`{%q: 1}`, e.Def.Keys[0])
		}
	}
	return `{"<key>": ...}`
}

// refuseReads answers a read in a process that only ingests.
func (s *Server) refuseReads(w http.ResponseWriter) bool {
	if s.engine != nil {
		return false
	}
	writeError(w, http.StatusForbidden, "this process only ingests (--role=ingest): read features from a serve process", nil)
	return true
}

func (s *Server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	if s.refuseReads(w) {
		return
	}
	st := readStates.Get().(*readState)
	defer readStates.Put(st)
	if !s.parseFeatures(w, r, st) {
		return
	}
	s.traceRead(r.Context(), &st.req)
	if err := s.engine.Read(r.Context(), &st.req, &st.res); err != nil {
		s.readError(w, err)
		return
	}
	st.out = appendResult(st.out[:0], &st.req, &st.res)
	w.Header().Set("Content-Type", "application/json")
	w.Write(st.out)
}

// handleRows reads the rows of a features request from the store and
// nothing else: no cache, no decoding, no windows. Set beside /v1/features,
// it shows what the store itself costs.
func (s *Server) handleRows(w http.ResponseWriter, r *http.Request) {
	if s.refuseReads(w) {
		return
	}
	st := readStates.Get().(*readState)
	defer readStates.Put(st)
	if !s.parseFeatures(w, r, st) {
		return
	}
	s.traceRead(r.Context(), &st.req)
	found, size, err := s.engine.RawRows(r.Context(), &st.req, &st.res)
	if err != nil {
		s.readError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"rows_found":%d,"bytes":%d}`+"\n", found, size)
}

func (s *Server) readError(w http.ResponseWriter, err error) {
	var qe *query.Error
	if errors.As(err, &qe) {
		writeError(w, http.StatusBadRequest, qe.Msg, nil)
		return
	}
	s.storeError(w, "reading features", err)
}

// parseKeys checks the request's entities against the prepared features:
// every entity the features need is given, no other, and every key has the
// entity's key fields with their types.
func (s *Server) parseKeys(prep *query.Prepared, given map[string][]json.RawMessage, req *query.Request) error {
	for name := range given {
		if prep.Entity(name) == nil {
			if s.engine.Entity(name) == nil {
				return fmt.Errorf("entity %q is not defined (entities: %s)", name, s.entityNames())
			}
			return fmt.Errorf("entity %q is given but none of the requested features is about it", name)
		}
	}
	req.Prepared = prep
	if cap(req.Keys) < len(prep.Entities) {
		req.Keys = make([][]event.Value, len(prep.Entities))
	}
	req.Keys = req.Keys[:len(prep.Entities)]
	total := 0
	var problems []eventjson.Problem
	for i, pe := range prep.Entities {
		e := pe.Entity.Def
		list, ok := given[e.Name]
		if ok && len(list) == 0 {
			return fmt.Errorf("entities.%s is empty: give at least one key, like %s", e.Name, s.keyExample(e.Name))
		}
		if len(list) == 0 {
			return fmt.Errorf("the requested features need entity %q: add \"entities\": {%q: [{%q: ...}]}", e.Name, e.Name, e.Keys[0])
		}
		total += len(list)
		if total > query.MaxEntities {
			return fmt.Errorf("more than %d entities in one request: split it", query.MaxEntities)
		}
		k := len(e.Keys)
		vals := req.Keys[i][:0]
		for range len(list) * k {
			vals = append(vals, event.Value{})
		}
		req.Keys[i] = vals
		for j, raw := range list {
			problems = parseKey(pe.Entity, raw, j, vals[j*k:(j+1)*k], problems)
			if len(problems) >= eventjson.MaxDetails {
				break
			}
		}
	}
	if len(problems) > 0 {
		return &eventjson.RequestError{Message: fmt.Sprintf("%d invalid entity key(s)", len(problems)), Details: problems}
	}
	return nil
}

func (s *Server) entityNames() string {
	names := make([]string, len(s.cfg.Project.Entities))
	for i, e := range s.cfg.Project.Entities {
		names[i] = e.Name
	}
	return strings.Join(names, ", ")
}

// parseKey reads one key object {"field": value, ...} into dst.
func parseKey(ent *query.Entity, raw json.RawMessage, idx int, dst []event.Value, problems []eventjson.Problem) []eventjson.Problem {
	name := ent.Def.Name
	bad := func(field, format string, args ...any) {
		problems = append(problems, eventjson.Problem{Index: idx, Field: field, Message: name + " key: " + fmt.Sprintf(format, args...)})
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		bad("", "must be an object like {%q: ...}", ent.Def.Keys[0])
		return problems
	}
	for field := range obj {
		if !slices.Contains(ent.Def.Keys, field) {
			bad(field, "not a key field of %s (keys: %s)", name, strings.Join(ent.Def.Keys, ", "))
		}
	}
	for i, k := range ent.Def.Keys {
		v, ok := obj[k]
		if !ok {
			bad(k, "missing")
			continue
		}
		val, msg := event.ParseJSON(ent.KeyTypes[i], v)
		switch {
		case msg != "":
			bad(k, "%s", msg)
		case val.Kind == event.Null:
			bad(k, "cannot be null")
		default:
			dst[i] = val
		}
	}
	return problems
}

// appendResult writes the JSON answer of a features request.
func appendResult(out []byte, req *query.Request, res *query.Result) []byte {
	prep := req.Prepared
	out = append(out, `{"entities":{`...)
	for i, pe := range prep.Entities {
		er := &res.Entities[i]
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, pe.Entity.Def.Name)
		out = append(out, ":["...)
		keys := req.Keys[i]
		k := len(pe.Entity.Def.Keys)
		for j := range er.N {
			if j > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"key":{`...)
			for ki, f := range pe.Entity.Def.Keys {
				if ki > 0 {
					out = append(out, ',')
				}
				out = appendString(out, f)
				out = append(out, ':')
				out = appendValue(out, keys[j*k+ki])
			}
			out = append(out, '}')
			if er.Present[j] {
				out = append(out, `,"status":"present","event_time":"`...)
				out = time.UnixMilli(er.EventTime[j]).UTC().AppendFormat(out, "2006-01-02T15:04:05.000Z07:00")
				out = append(out, `","features":{`...)
			} else {
				out = append(out, `,"status":"not_found","event_time":null,"features":{`...)
			}
			for c, f := range pe.Features {
				if c > 0 {
					out = append(out, ',')
				}
				out = appendString(out, f.Name)
				out = append(out, ':')
				out = appendValue(out, er.Columns[c].Value(j))
			}
			out = append(out, "}}"...)
		}
		out = append(out, ']')
	}
	return append(out, "}}\n"...)
}
