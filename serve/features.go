package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/event"
	"github.com/kiln-dev/kiln/ingest"
	"github.com/kiln-dev/kiln/tile"
)

// query is a resolved feature list: per entity, the views to read and the
// values to serve, in the order the list names them.
type query struct {
	entities []*entityQuery // in project order
}

type entityQuery struct {
	info  *entityInfo
	views []*viewInfo // views of the entity that serve at least one value
	items []item      // values in request order
}

type item struct {
	name   []byte // JSON-quoted name, ready to write
	view   int    // index in entityQuery.views
	output int    // index in the plan's Outputs
}

// resolve turns served names into a query; unknown or repeated names are
// an error listing what exists.
func (s *Server) resolve(names []string) (*query, error) {
	if len(names) == 0 {
		return nil, errors.New(`no features requested: give "service" or a non-empty "features" list`)
	}
	byEntity := map[*entityInfo]*entityQuery{}
	seen := map[string]bool{}
	var unknown []string
	for _, name := range names {
		ref, ok := s.outputs[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("feature %q is requested twice", name)
		}
		seen[name] = true
		eq := byEntity[ref.view.entity]
		if eq == nil {
			eq = &entityQuery{info: ref.view.entity}
			byEntity[ref.view.entity] = eq
		}
		vi := -1
		for i, v := range eq.views {
			if v == ref.view {
				vi = i
			}
		}
		if vi < 0 {
			vi = len(eq.views)
			eq.views = append(eq.views, ref.view)
		}
		eq.items = append(eq.items, item{name: appendString(nil, name), view: vi, output: ref.output})
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown feature(s) %s; served names look like view:feature_window (e.g. %s)",
			strings.Join(quoteAll(unknown), ", "), s.exampleName())
	}
	q := &query{}
	for _, eq := range byEntity {
		q.entities = append(q.entities, eq)
	}
	sort.Slice(q.entities, func(i, j int) bool { return q.entities[i].info.order < q.entities[j].info.order })
	return q, nil
}

func (s *Server) exampleName() string {
	for _, v := range s.cfg.Project.Views {
		if p := s.cfg.Plans[v]; p != nil && len(p.Outputs) > 0 {
			return p.Outputs[0].Name
		}
	}
	return "view:feature"
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// featuresRequest is the JSON shape of POST /v1/features.
type featuresRequest struct {
	Service  string                       `json:"service"`
	Features []string                     `json:"features"`
	Entities map[string][]json.RawMessage `json:"entities"`
}

func (s *Server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, MaxFeaturesBytes)
	if !ok {
		return
	}
	var req featuresRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body is not a features request: "+err.Error()+
			`; send {"service": "<name>" or "features": ["view:feature", ...], "entities": {"<entity>": [{"<key>": ...}, ...]}}`, nil)
		return
	}
	q, err := s.queryOf(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	keys, err := s.parseKeys(q, req.Entities)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	out, err := s.read(r, q, keys)
	if err != nil {
		s.storeError(w, "reading features", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// queryOf resolves the request's service or feature list.
func (s *Server) queryOf(req *featuresRequest) (*query, error) {
	switch {
	case req.Service != "" && len(req.Features) > 0:
		return nil, errors.New(`give "service" or "features", not both`)
	case req.Service != "":
		q := s.services[req.Service]
		if q == nil {
			names := make([]string, 0, len(s.services))
			for n := range s.services {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("service %q is not defined (defined: %s)", req.Service, strings.Join(names, ", "))
		}
		return q, nil
	}
	return s.resolve(req.Features)
}

// parseKeys checks the request's entities against the query: every entity
// the features need is given, no other, and every key has the entity's key
// fields with their types. keys[i] holds the keys of q.entities[i].
func (s *Server) parseKeys(q *query, given map[string][]json.RawMessage) ([][][]event.Value, error) {
	for name := range given {
		needed := false
		for _, eq := range q.entities {
			needed = needed || eq.info.entity.Name == name
		}
		if !needed {
			if s.entities[name] == nil {
				return nil, fmt.Errorf("entity %q is not defined (entities: %s)", name, s.entityNames())
			}
			return nil, fmt.Errorf("entity %q is given but none of the requested features is about it", name)
		}
	}
	keys := make([][][]event.Value, len(q.entities))
	total := 0
	var problems []ingest.Problem
	for i, eq := range q.entities {
		e := eq.info.entity
		list, ok := given[e.Name]
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("the requested features need entity %q: add \"entities\": {%q: [{%q: ...}]}", e.Name, e.Name, e.Keys[0])
		}
		total += len(list)
		if total > MaxEntities {
			return nil, fmt.Errorf("more than %d entities in one request: split it", MaxEntities)
		}
		vals := make([]event.Value, len(list)*len(e.Keys))
		keys[i] = make([][]event.Value, len(list))
		for j, raw := range list {
			k := vals[j*len(e.Keys) : (j+1)*len(e.Keys)]
			keys[i][j] = k
			problems = parseKey(e.Name, eq.info, raw, j, k, problems)
			if len(problems) >= ingest.MaxDetails {
				break
			}
		}
	}
	if len(problems) > 0 {
		return nil, &ingest.RequestError{Message: fmt.Sprintf("%d invalid entity key(s)", len(problems)), Details: problems}
	}
	return keys, nil
}

func (s *Server) entityNames() string {
	names := make([]string, len(s.cfg.Project.Entities))
	for i, e := range s.cfg.Project.Entities {
		names[i] = e.Name
	}
	return strings.Join(names, ", ")
}

// parseKey reads one key object {"field": value, ...} into dst.
func parseKey(entity string, info *entityInfo, raw json.RawMessage, idx int, dst []event.Value, problems []ingest.Problem) []ingest.Problem {
	bad := func(field, format string, args ...any) {
		problems = append(problems, ingest.Problem{Index: idx, Field: field, Message: entity + " key: " + fmt.Sprintf(format, args...)})
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		bad("", "must be an object like {%q: ...}", info.entity.Keys[0])
		return problems
	}
	for name := range obj {
		known := false
		for _, k := range info.entity.Keys {
			known = known || k == name
		}
		if !known {
			bad(name, "not a key field of %s (keys: %s)", entity, strings.Join(info.entity.Keys, ", "))
		}
	}
	for i, k := range info.entity.Keys {
		v, ok := obj[k]
		if !ok {
			bad(k, "missing")
			continue
		}
		val, msg := event.ParseJSON(info.keyTypes[i], v)
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

// read fetches every row the query needs in one multi-get, evaluates them
// at the server's clock, and returns the response JSON.
func (s *Server) read(r *http.Request, q *query, keys [][][]event.Value) ([]byte, error) {
	now := s.cfg.Now()
	// Row keys, laid out entity by entity, instance by instance, view by view.
	var rowKeys [][]byte
	var buf []byte
	var offs []int
	for i, eq := range q.entities {
		for _, k := range keys[i] {
			for _, v := range eq.views {
				offs = append(offs, len(buf))
				buf = tile.AppendKey(buf, v.view.Name, k)
			}
		}
	}
	offs = append(offs, len(buf))
	rowKeys = make([][]byte, len(offs)-1)
	for i := range rowKeys {
		rowKeys[i] = buf[offs[i]:offs[i+1]]
	}
	plans := make([]*tile.Plan, 0, len(rowKeys))
	for i, eq := range q.entities {
		for range keys[i] {
			for _, v := range eq.views {
				plans = append(plans, v.plan)
			}
		}
	}
	rows := make([]*tile.Row, len(rowKeys))
	defer func() {
		for i, row := range rows {
			if row != nil {
				s.rowPools[plans[i]].Put(row)
			}
		}
	}()
	var decodeErr error
	err := s.cfg.Store.Get(r.Context(), rowKeys, func(i int, value []byte, found bool) {
		if !found {
			return
		}
		row := s.rowPools[plans[i]].Get().(*tile.Row)
		if err := plans[i].DecodeRow(value, row); err != nil {
			s.rowPools[plans[i]].Put(row)
			if errors.Is(err, tile.ErrLayout) {
				return // written under an older definition: as good as absent
			}
			if decodeErr == nil {
				decodeErr = err
			}
			return
		}
		rows[i] = row
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, err
	}

	out := make([]byte, 0, 256+len(rowKeys)*64)
	out = append(out, `{"entities":{`...)
	var vals [][]event.Value
	at := 0
	for i, eq := range q.entities {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, eq.info.entity.Name)
		out = append(out, ":["...)
		if cap(vals) < len(eq.views) {
			vals = make([][]event.Value, len(eq.views))
		}
		vals = vals[:len(eq.views)]
		for vi, v := range eq.views {
			if len(vals[vi]) < len(v.plan.Outputs) {
				vals[vi] = make([]event.Value, len(v.plan.Outputs))
			}
		}
		for j, k := range keys[i] {
			if j > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"key":{`...)
			for ki, f := range eq.info.entity.Keys {
				if ki > 0 {
					out = append(out, ',')
				}
				out = appendString(out, f)
				out = append(out, ':')
				out = appendValue(out, k[ki])
			}
			out = append(out, '}')
			present := false
			newest := tile.NoTime
			for vi, v := range eq.views {
				row := rows[at+vi]
				if row != nil && !row.Empty() {
					present = true
					newest = max(newest, row.Newest)
				}
				v.plan.Eval(row, now, vals[vi])
			}
			at += len(eq.views)
			if present {
				out = append(out, `,"status":"present","event_time":"`...)
				out = time.UnixMilli(newest).UTC().AppendFormat(out, "2006-01-02T15:04:05.000Z07:00")
				out = append(out, `","features":{`...)
			} else {
				out = append(out, `,"status":"not_found","event_time":null,"features":{`...)
			}
			for ii, it := range eq.items {
				if ii > 0 {
					out = append(out, ',')
				}
				out = append(out, it.name...)
				out = append(out, ':')
				if present {
					out = appendValue(out, vals[it.view][it.output])
				} else {
					out = append(out, "null"...)
				}
			}
			out = append(out, "}}"...)
		}
		out = append(out, ']')
	}
	return append(out, "}}\n"...), nil
}
