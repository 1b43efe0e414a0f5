package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Feast's feature server API, so that a Feast client switches to Kiln by
// changing its URL (docs/feast.md):
//
//   - POST /get-online-features takes Feast's request (features or
//     feature_service, entities as columns of join keys, full_feature_names)
//     and answers in Feast's shape: metadata.feature_names and one result
//     column per join key and feature, with statuses and event timestamps
//     when ?status=true asks for them, as Feast's Go server does.
//   - POST /push takes Feast's push (push_source_name, df as columns, to)
//     into the push source of that name.
//
// A Feast row carries a key of every entity the features are about; the
// read asks for each distinct key once, however many rows carry it, so no
// row is read twice, and answers each row from its keys' values.

// feastOnlineRequest is the JSON shape of POST /get-online-features.
type feastOnlineRequest struct {
	Features         []string        `json:"features"`
	FeatureService   string          `json:"feature_service"`
	Entities         json.RawMessage `json:"entities"`
	FullFeatureNames bool            `json:"full_feature_names"`
	// RequestContext feeds Feast's on-demand feature views, which Kiln
	// has none of: refused when given.
	RequestContext json.RawMessage `json:"request_context"`
}

// feastColumn is one join-key column of a request.
type feastColumn struct {
	name string
	raws []json.RawMessage
	vals []event.Value
	typ  event.Type
	used bool
}

// feastOutput is one feature column of the answer.
type feastOutput struct {
	name   string // as the answer names it
	entity int    // index in Prepared.Entities
	column int    // index in that entity's features
}

// feastState is the per-request memory of POST /get-online-features, pooled.
type feastState struct {
	req  query.Request
	res  query.Result
	out  []byte
	cols []feastColumn
	// rows[i][r] is the index, among the distinct keys of entity type i
	// the request reads, of row r's key.
	rows     [][]int32
	outputs  []feastOutput
	ints     map[int64]int32  // distinct keys of one int64 field
	tuples   map[string]int32 // distinct keys of other shapes
	tupleBuf []byte
}

var feastStates = sync.Pool{New: func() any {
	return &feastState{ints: map[int64]int32{}, tuples: map[string]int32{}}
}}

// feastStatus names a value's status as Feast does.
const (
	feastPresent  = "PRESENT"
	feastNotFound = "NOT_FOUND"
	feastNull     = "NULL_VALUE"
)

func (s *Server) handleFeastOnline(w http.ResponseWriter, r *http.Request) {
	if s.refuseReads(w) {
		return
	}
	withStatus := false
	for k, v := range r.URL.Query() {
		if k != "status" || len(v) != 1 || (v[0] != "true" && v[0] != "false") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s=%s: /get-online-features takes status=true or status=false, nothing else", k, strings.Join(v, ",")), nil)
			return
		}
		withStatus = v[0] == "true"
	}
	body, ok := readBody(w, r, MaxFeaturesBytes)
	if !ok {
		return
	}
	st := feastStates.Get().(*feastState)
	defer feastStates.Put(st)
	if err := s.parseFeastOnline(body, st); err != nil {
		writeRequestError(w, err)
		return
	}
	s.traceRead(r.Context(), &st.req)
	if err := s.engine.Read(r.Context(), &st.req, &st.res); err != nil {
		s.readError(w, err)
		return
	}
	st.out = appendFeastResult(st.out[:0], st, withStatus)
	w.Header().Set("Content-Type", "application/json")
	w.Write(st.out)
}

// feastExample is the shape of a request, for messages.
const feastExample = `send {"features": ["view:feature", ...] or "feature_service": "<name>", "entities": {"<join key>": [<value>, ...], ...}}`

// parseFeastOnline reads and checks a request into st: the prepared
// features, the answer's columns, and the distinct keys of each entity.
func (s *Server) parseFeastOnline(body []byte, st *feastState) error {
	var req feastOnlineRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("request body is not a Feast get-online-features request: %s; %s", eventjson.JSONProblem(err, feastWants), feastExample)
	}
	if len(bytes.TrimSpace(req.RequestContext)) > 0 && string(bytes.TrimSpace(req.RequestContext)) != "null" {
		return errors.New("request_context is not supported: it feeds on-demand feature views, and Kiln computes every feature from events; leave it out")
	}
	var prep *query.Prepared
	var names []string
	var err error
	switch {
	case req.FeatureService != "" && len(req.Features) > 0:
		return errors.New(`give "features" or "feature_service", not both`)
	case req.FeatureService != "":
		if prep, err = s.engine.Service(req.FeatureService); err != nil {
			return err
		}
		for _, f := range s.cfg.Project.Service(req.FeatureService).Features {
			names = append(names, f.Name())
		}
	default:
		if prep, err = s.engine.Prepare(req.Features); err != nil {
			return err
		}
		names = req.Features
	}
	cols, err := parseFeastColumns(req.Entities, "entities", st.cols[:0])
	st.cols = cols
	if err != nil {
		return err
	}
	if n := len(cols[0].raws); n > query.MaxEntities {
		return fmt.Errorf("%d rows in one request; the limit is %d: split it", n, query.MaxEntities)
	}
	if err := s.feastKeys(prep, st); err != nil {
		return err
	}
	return s.feastOutputs(prep, names, req.FullFeatureNames, st)
}

// feastWants says what each member of a request must be.
func feastWants(field string) string {
	switch field {
	case "":
		return "a JSON object"
	case "features":
		return `a JSON array of feature names, like ["view:feature"]`
	case "feature_service":
		return "a JSON string, the name of a feature service"
	case "full_feature_names":
		return "true or false"
	}
	return ""
}

// parseFeastColumns reads an object of columns, {"<name>": [values], ...}
// (member, "entities" or "df", names it in messages), keeping the order the
// request gives its columns in: the answer's join-key columns come in that
// order.
func parseFeastColumns(raw json.RawMessage, member string, cols []feastColumn) ([]feastColumn, error) {
	shape := fmt.Sprintf(`%q must be a JSON object of names to equally long arrays of values, like {"user_id": [1, 2]}`, member)
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return cols, fmt.Errorf("%q is missing: %s", member, shape)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return cols, errors.New(shape)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return cols, errors.New(shape)
		}
		name := tok.(string) // an object's keys are strings
		for _, c := range cols {
			if c.name == name {
				return cols, fmt.Errorf("%s: column %q is given twice", member, name)
			}
		}
		var values []json.RawMessage
		if err := dec.Decode(&values); err != nil || values == nil {
			return cols, fmt.Errorf("%s.%s: %s", member, name, shape)
		}
		if len(values) == 0 {
			return cols, fmt.Errorf("%s.%s is empty: give at least one value", member, name)
		}
		if len(cols) > 0 && len(values) != len(cols[0].raws) {
			return cols, fmt.Errorf("%s.%s has %d values but %s.%s has %d: every column gives one value per row",
				member, name, len(values), member, cols[0].name, len(cols[0].raws))
		}
		cols = append(cols, feastColumn{name: name, raws: values})
	}
	if len(cols) == 0 {
		return cols, fmt.Errorf("%q is empty: %s", member, shape)
	}
	return cols, nil
}

// feastKeys types the join-key columns by the entities that use them and
// lays out the distinct keys of each entity type in st.req.
func (s *Server) feastKeys(prep *query.Prepared, st *feastState) error {
	// Which column holds each key field of each entity type.
	var joinKeys []string
	for _, pe := range prep.Entities {
		for k, field := range pe.Entity.Def.Keys {
			joinKeys = append(joinKeys, field)
			c := st.column(field)
			if c == nil {
				return fmt.Errorf("the requested features need join key %q of entity %s: add \"entities\": {%q: [...]}", field, pe.Entity.Def.Name, field)
			}
			if c.used && c.typ != pe.Entity.KeyTypes[k] {
				return fmt.Errorf("join key %q is %v in one entity and %v in another: request their features separately", field, c.typ, pe.Entity.KeyTypes[k])
			}
			c.used, c.typ = true, pe.Entity.KeyTypes[k]
		}
	}
	for i := range st.cols {
		if !st.cols[i].used {
			return fmt.Errorf("entities.%s is not a join key of the requested features (their join keys: %s)", st.cols[i].name, strings.Join(joinKeys, ", "))
		}
	}
	var problems []eventjson.Problem
	for i := range st.cols {
		c := &st.cols[i]
		c.vals = resize(c.vals, len(c.raws))
		for r, raw := range c.raws {
			v, msg := event.ParseJSON(c.typ, raw)
			switch {
			case msg != "":
				problems = append(problems, eventjson.Problem{Index: r, Field: c.name, Message: "join key " + msg})
			case v.Kind == event.Null:
				problems = append(problems, eventjson.Problem{Index: r, Field: c.name, Message: "join key cannot be null"})
			}
			c.vals[r] = v
			if len(problems) >= eventjson.MaxDetails {
				break
			}
		}
		if len(problems) >= eventjson.MaxDetails {
			break
		}
	}
	if len(problems) > 0 {
		return &eventjson.RequestError{Message: fmt.Sprintf("%d invalid join key value(s); details give the row as index", len(problems)), Details: problems}
	}

	// The distinct keys of each entity type, in order of first use.
	n := len(st.cols[0].vals)
	st.req.Prepared = prep
	st.req.Keys = resize(st.req.Keys, len(prep.Entities))
	st.rows = resize(st.rows, len(prep.Entities))
	for i, pe := range prep.Entities {
		fields := pe.Entity.Def.Keys
		keyCols := make([]*feastColumn, len(fields)) // at most a few
		for k, f := range fields {
			keyCols[k] = st.column(f)
		}
		keys := st.req.Keys[i][:0]
		rows := resize(st.rows[i], n)
		if len(fields) == 1 && keyCols[0].typ == event.Int64 {
			clear(st.ints)
			for r, v := range keyCols[0].vals {
				u, ok := st.ints[v.Int]
				if !ok {
					u = int32(len(keys))
					st.ints[v.Int] = u
					keys = append(keys, v)
				}
				rows[r] = u
			}
		} else {
			clear(st.tuples)
			for r := range n {
				st.tupleBuf = st.tupleBuf[:0]
				for _, c := range keyCols {
					st.tupleBuf = tile.AppendKey(st.tupleBuf, "", c.vals[r:r+1])
				}
				u, ok := st.tuples[string(st.tupleBuf)]
				if !ok {
					u = int32(len(keys) / len(fields))
					st.tuples[string(st.tupleBuf)] = u
					for _, c := range keyCols {
						keys = append(keys, c.vals[r])
					}
				}
				rows[r] = u
			}
		}
		st.req.Keys[i] = keys
		st.rows[i] = rows
	}
	return nil
}

// column returns the request's column of the join key, or nil.
func (st *feastState) column(name string) *feastColumn {
	for i := range st.cols {
		if st.cols[i].name == name {
			return &st.cols[i]
		}
	}
	return nil
}

// feastOutputs lays out the answer's feature columns in the order names
// gives them: each served name "view:feature" is named "feature", or
// "view__feature" with full feature names, as Feast names them.
func (s *Server) feastOutputs(prep *query.Prepared, names []string, full bool, st *feastState) error {
	// Within an entity type, the prepared features are in the order of
	// names: the next column of the name's entity is the name's.
	next := make([]int, len(prep.Entities)) // at most a few
	st.outputs = st.outputs[:0]
	for _, name := range names {
		view, feature, _ := strings.Cut(name, ":")
		v := s.cfg.Project.View(view)
		i := 0
		for i < len(prep.Entities) && prep.Entities[i].Entity.Def != v.Entity {
			i++
		}
		out := feature
		if full {
			out = view + "__" + feature
		}
		st.outputs = append(st.outputs, feastOutput{name: out, entity: i, column: next[i]})
		next[i]++
	}
	for a := range st.outputs {
		for b := range a {
			if st.outputs[a].name == st.outputs[b].name {
				return fmt.Errorf("features %q and %q are both named %q in the answer: set \"full_feature_names\": true to name them view__feature", names[b], names[a], st.outputs[a].name)
			}
		}
		for _, c := range st.cols {
			if st.outputs[a].name == c.name {
				return fmt.Errorf("feature %q is named %q in the answer, like a join key: set \"full_feature_names\": true to name it view__feature", names[a], c.name)
			}
		}
	}
	return nil
}

// appendFeastResult writes the answer in Feast's shape: join-key columns
// first, in request order, then one column per feature. With statuses, a
// column is {"event_timestamps": [...], "statuses": [...], "values": [...]}
// (the order Feast's server writes); without, {"values": [...]}.
func appendFeastResult(out []byte, st *feastState, withStatus bool) []byte {
	res := &st.res
	n := len(st.cols[0].vals)
	out = append(out, `{"metadata":{"feature_names":[`...)
	for i, c := range st.cols {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, c.name)
	}
	for _, o := range st.outputs {
		out = append(out, ',')
		out = appendString(out, o.name)
	}
	out = append(out, `]},"results":[`...)
	for i, c := range st.cols {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '{')
		if withStatus {
			// A join key is present, stamped with the time of the read.
			out = append(out, `"event_timestamps":[`...)
			for r := range n {
				if r > 0 {
					out = append(out, ',')
				}
				out = appendFeastTime(out, res.At)
			}
			out = append(out, `],"statuses":[`...)
			for r := range n {
				if r > 0 {
					out = append(out, ',')
				}
				out = append(out, `"`+feastPresent+`"`...)
			}
			out = append(out, "],"...)
		}
		out = append(out, `"values":[`...)
		for r, v := range c.vals {
			if r > 0 {
				out = append(out, ',')
			}
			out = appendValue(out, v)
		}
		out = append(out, "]}"...)
	}
	for _, o := range st.outputs {
		er := &res.Entities[o.entity]
		col := &er.Columns[o.column]
		rows := st.rows[o.entity]
		out = append(out, ',', '{')
		if withStatus {
			out = append(out, `"event_timestamps":[`...)
			for r, u := range rows {
				if r > 0 {
					out = append(out, ',')
				}
				if er.Present[u] {
					out = appendFeastTime(out, er.EventTime[u])
				} else {
					out = appendFeastTime(out, 0)
				}
			}
			out = append(out, `],"statuses":[`...)
			for r, u := range rows {
				if r > 0 {
					out = append(out, ',')
				}
				out = append(out, '"')
				switch {
				case !er.Present[u]:
					out = append(out, feastNotFound...)
				case !col.Valid[u] || col.Type == event.Float64 && (math.IsNaN(col.Floats[u]) || math.IsInf(col.Floats[u], 0)):
					out = append(out, feastNull...)
				default:
					out = append(out, feastPresent...)
				}
				out = append(out, '"')
			}
			out = append(out, "],"...)
		}
		out = append(out, `"values":[`...)
		for r, u := range rows {
			if r > 0 {
				out = append(out, ',')
			}
			out = appendValue(out, col.Value(int(u)))
		}
		out = append(out, "]}"...)
	}
	return append(out, "]}\n"...)
}

// appendFeastTime writes a time as Feast does: RFC 3339 in UTC, to the
// second.
func appendFeastTime(out []byte, ms int64) []byte {
	out = append(out, '"')
	out = time.UnixMilli(ms).UTC().AppendFormat(out, time.RFC3339)
	return append(out, '"')
}

// feastPushRequest is the JSON shape of POST /push.
type feastPushRequest struct {
	PushSourceName string          `json:"push_source_name"`
	DF             json.RawMessage `json:"df"`
	To             string          `json:"to"`
	// AllowRegistryCache is a Feast client's hint about its registry;
	// Kiln has none, so it is taken and changes nothing.
	AllowRegistryCache *bool `json:"allow_registry_cache"`
}

// handleFeastPush takes a Feast push into the push source of that name:
// its columns become events, checked and applied as POST /v1/push's are.
func (s *Server) handleFeastPush(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Writer == nil {
		writeError(w, http.StatusForbidden, "this process only serves (--role=serve): push events to the ingest process", nil)
		return
	}
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, "/push takes no query parameters", nil)
		return
	}
	body, ok := readBody(w, r, MaxPushBytes)
	if !ok {
		return
	}
	pb, _ := s.pushes.Get().(*pushBuffer)
	if pb == nil {
		pb = new(pushBuffer)
	}
	defer s.pushes.Put(pb)
	var err error
	if pb.body, err = s.feastPushBody(body, pb.body[:0]); err != nil {
		writeRequestError(w, err)
		return
	}
	src, events, err := s.decoder.DecodePushInto(pb.body, s.cfg.Writer.Now(), &pb.events)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	res, err := s.push(r.Context(), src, events)
	if err != nil {
		s.storeError(w, "push", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(appendPushAnswer(nil, res))
}

// feastPushBody turns a Feast push into the body of a Kiln push, appended
// to dst: {"source": name, "events": [one object per row of df]}. A row's
// null values are left out, as a missing field. The event-time column may
// also hold times as pandas writes them, "2026-11-26 10:00:00[.ffffff]",
// taken as UTC when they carry no zone.
func (s *Server) feastPushBody(body, dst []byte) ([]byte, error) {
	var req feastPushRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return dst, fmt.Errorf(`request body is not a Feast push: %s; send {"push_source_name": "<source>", "df": {"<field>": [<value>, ...], ...}, "to": "online"}`,
			eventjson.JSONProblem(err, feastPushWants))
	}
	switch req.To {
	case "", "online", "online_and_offline":
	case "offline":
		return dst, errors.New(`"to": "offline" is not supported: Kiln applies a pushed event to its views and keeps it in its archive together; push with "to": "online" or "online_and_offline"`)
	default:
		return dst, fmt.Errorf(`"to": %q: write "online" or "online_and_offline"`, req.To)
	}
	if req.PushSourceName == "" {
		return dst, errors.New(`"push_source_name" is missing: name the push source the rows belong to`)
	}
	src := s.cfg.Project.Source(req.PushSourceName)
	if src == nil {
		return dst, fmt.Errorf("push source %q is not defined (sources: %s)", req.PushSourceName, s.sourceNames())
	}
	cols, err := parseFeastColumns(req.DF, "df", nil)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"source":`...)
	dst = appendString(dst, src.Name)
	dst = append(dst, `,"events":[`...)
	for r := range cols[0].raws {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		first := true
		for _, c := range cols {
			raw := bytes.TrimSpace(c.raws[r])
			if string(raw) == "null" {
				continue
			}
			if c.name == src.EventTime {
				raw = pandasTime(raw)
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, c.name)
			dst = append(dst, ':')
			dst = append(dst, raw...)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...), nil
}

// feastPushWants says what each member of a push must be.
func feastPushWants(field string) string {
	switch field {
	case "":
		return "a JSON object"
	case "push_source_name":
		return "a JSON string, the name of a push source"
	case "df":
		return `a JSON object of columns, like {"user_id": [1, 2], "ts": [...]}`
	case "to":
		return `a JSON string, "online" or "online_and_offline"`
	case "allow_registry_cache":
		return "true or false"
	}
	return ""
}

func (s *Server) sourceNames() string {
	names := make([]string, len(s.cfg.Project.Sources))
	for i, src := range s.cfg.Project.Sources {
		names[i] = src.Name
	}
	return strings.Join(names, ", ")
}

// pandasTime rewrites a JSON string holding a time as pandas and Python
// write it, "2026-11-26 10:00:00" with a space and perhaps no zone, as RFC
// 3339 ("2026-11-26T10:00:00Z", UTC when it has no zone). Anything else is
// returned as it is, for the push's own checks to judge.
func pandasTime(raw []byte) []byte {
	var str string
	if len(raw) < 21 || raw[0] != '"' || raw[11] != ' ' || json.Unmarshal(raw, &str) != nil {
		return raw
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, str); err == nil {
			b, _ := json.Marshal(t.UTC().Format(time.RFC3339Nano))
			return b
		}
	}
	return raw
}

// resize returns s with length n, reusing its memory when it can.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
