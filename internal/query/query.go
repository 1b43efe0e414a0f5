// Package query owns the read path: it resolves feature names into a
// Prepared plan (once per service, or once per feature list), fetches every
// row a request needs in one multi-get, evaluates the windows of each row at
// one instant, and writes typed, columnar results.
//
// The HTTP and gRPC APIs both call Engine.Read, so they serve identical
// values. A Result is reusable: Read resets and refills it, and a caller
// that keeps one per goroutine (or in a sync.Pool) reads without allocating
// per entity or per value.
package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/tile"
)

// MaxEntities is the most entity keys one request may name, over all
// entity types.
const MaxEntities = 10_000

// RowSource is where the engine reads rows: a store.Store, or a cache in
// front of one. Its Get has the store's contract.
type RowSource interface {
	Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
}

// Config configures an Engine. Project and Plans are required, and Rows.
type Config struct {
	Project *definition.Project
	Plans   map[*definition.View]*tile.Plan
	Rows    RowSource
	// RawRows is where Engine.RawRows reads: the rows' bytes where they
	// live, without a cache in front (the store, and on the embedded store
	// the write path's rows not yet written back). Default: Rows.
	RawRows RowSource
	// Now is the evaluation clock in Unix ms. Default: the wall clock.
	Now func() int64
	// ObserveRead, if set, is told of every read Read answers: the
	// service it read ("" for a list of features), the values it served
	// and how long Read took. It must not block or allocate.
	ObserveRead func(service string, values int, d time.Duration)
}

// Engine evaluates feature requests. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	entities map[string]*Entity
	ordered  []*Entity
	outputs  map[string]outputRef
	services map[string]*Prepared

	// served counts the feature values of the reads answered.
	served atomic.Int64

	// unavailable holds the views reads of which are refused, with their
	// reasons (SetUnavailable); nil when there are none, so that a read
	// pays one atomic load. unavailableMu serializes its writers.
	unavailable   atomic.Pointer[map[*definition.View]func() string]
	unavailableMu sync.Mutex
}

// Entity is an entity type as the read path sees it.
type Entity struct {
	Def *definition.Entity
	// KeyTypes are the types of the key fields, in Def.Keys order.
	KeyTypes []event.Type
	views    []*viewInfo
	order    int
}

type viewInfo struct {
	view   *definition.View
	plan   *tile.Plan
	entity *Entity
	types  []event.Type // served type of each plan output
}

type outputRef struct {
	view   *viewInfo
	output int
}

// New builds an engine for the project.
func New(cfg Config) (*Engine, error) {
	if cfg.Project == nil || cfg.Plans == nil || cfg.Rows == nil {
		return nil, errors.New("query: Config needs Project, Plans and Rows")
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixMilli() }
	}
	if cfg.RawRows == nil {
		cfg.RawRows = cfg.Rows
	}
	e := &Engine{cfg: cfg, entities: map[string]*Entity{}, outputs: map[string]outputRef{}, services: map[string]*Prepared{}}
	for i, d := range cfg.Project.Entities {
		ent := &Entity{Def: d, order: i}
		e.entities[d.Name] = ent
		e.ordered = append(e.ordered, ent)
	}
	for _, v := range cfg.Project.Views {
		ent := e.entities[v.Entity.Name]
		if ent == nil {
			return nil, fmt.Errorf("query: view %s: unknown entity %s", v.Name, v.Entity.Name)
		}
		var types []event.Type
		for _, k := range v.Entity.Keys {
			i := v.Source.FieldIndex(k)
			if i < 0 {
				return nil, fmt.Errorf("query: view %s: key field %s is not in source %s", v.Name, k, v.Source.Name)
			}
			types = append(types, v.Source.Fields[i].Type)
		}
		if ent.KeyTypes == nil {
			ent.KeyTypes = types
		} else {
			for i := range types {
				if types[i] != ent.KeyTypes[i] {
					return nil, fmt.Errorf("query: entity %s: key %s is %v in view %s but %v in another view; give it one type in every source",
						ent.Def.Name, ent.Def.Keys[i], types[i], v.Name, ent.KeyTypes[i])
				}
			}
		}
		plan := cfg.Plans[v]
		if plan == nil {
			return nil, fmt.Errorf("query: no plan for view %s", v.Name)
		}
		vi := &viewInfo{view: v, plan: plan, entity: ent}
		for i, o := range plan.Outputs {
			vi.types = append(vi.types, o.Type())
			e.outputs[o.Name] = outputRef{view: vi, output: i}
		}
		ent.views = append(ent.views, vi)
	}
	for _, svc := range cfg.Project.Services {
		names := make([]string, len(svc.Features))
		for i, f := range svc.Features {
			names[i] = f.Name()
		}
		p, err := e.prepare(names)
		if err != nil {
			return nil, fmt.Errorf("query: service %s: %v", svc.Name, err)
		}
		p.Service = svc.Name
		e.services[svc.Name] = p
	}
	return e, nil
}

// Stats are the engine's counters.
type Stats struct {
	// ValuesServed counts the feature values of the reads answered: keys
	// times features, over every entity type of each request.
	ValuesServed int64 `json:"values_served"`
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{ValuesServed: e.served.Load()}
}

// Now is the engine's clock in Unix ms.
func (e *Engine) Now() int64 { return e.cfg.Now() }

// Project is the project the engine serves.
func (e *Engine) Project() *definition.Project { return e.cfg.Project }

// Entity returns the named entity type, or nil.
func (e *Engine) Entity(name string) *Entity { return e.entities[name] }

// Prepared is a resolved feature list: for each entity type it is about,
// the rows to read and the values to serve, in request order. It is
// immutable and may be reused by any number of requests.
type Prepared struct {
	// Service is the service it was made from, or "".
	Service string
	// Entities are the entity types the features are about, in project
	// order.
	Entities []*PreparedEntity
}

// PreparedEntity is the part of a Prepared about one entity type.
type PreparedEntity struct {
	Entity *Entity
	// Features are the served values, in the order asked for.
	Features []Feature
	views    []*viewInfo
	items    []item
}

// Feature is one served value of a prepared list.
type Feature struct {
	Name string
	Type event.Type
}

type item struct {
	view   int // index in PreparedEntity.views
	output int // index in the view plan's Outputs
}

// Service returns the prepared feature list of a service, or an error
// naming the services that exist.
func (e *Engine) Service(name string) (*Prepared, error) {
	p := e.services[name]
	if p == nil {
		names := slices.Sorted(maps.Keys(e.services))
		return nil, &Error{Msg: fmt.Sprintf("service %q is not defined (defined: %s)", name, strings.Join(names, ", "))}
	}
	return p, nil
}

// Prepare resolves a list of served names ("view:feature_window").
func (e *Engine) Prepare(names []string) (*Prepared, error) {
	p, err := e.prepare(names)
	if err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	return p, nil
}

func (e *Engine) prepare(names []string) (*Prepared, error) {
	if len(names) == 0 {
		return nil, errors.New(`no features requested: name a service or list features`)
	}
	byEntity := map[*Entity]*PreparedEntity{}
	seen := map[string]bool{}
	var unknown []string
	for _, name := range names {
		ref, ok := e.outputs[name]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", name))
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("feature %q is requested twice", name)
		}
		seen[name] = true
		pe := byEntity[ref.view.entity]
		if pe == nil {
			pe = &PreparedEntity{Entity: ref.view.entity}
			byEntity[ref.view.entity] = pe
		}
		vi := -1
		for i, v := range pe.views {
			if v == ref.view {
				vi = i
			}
		}
		if vi < 0 {
			vi = len(pe.views)
			pe.views = append(pe.views, ref.view)
		}
		pe.items = append(pe.items, item{view: vi, output: ref.output})
		pe.Features = append(pe.Features, Feature{Name: name, Type: ref.view.types[ref.output]})
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown feature(s) %s; served names look like view:feature_window (e.g. %s)",
			strings.Join(unknown, ", "), e.exampleName())
	}
	p := &Prepared{Entities: slices.SortedFunc(maps.Values(byEntity), func(a, b *PreparedEntity) int {
		return cmp.Compare(a.Entity.order, b.Entity.order)
	})}
	return p, nil
}

func (e *Engine) exampleName() string {
	for _, v := range e.cfg.Project.Views {
		if p := e.cfg.Plans[v]; p != nil && len(p.Outputs) > 0 {
			return p.Outputs[0].Name
		}
	}
	return "view:feature"
}

// Views returns the views whose rows pe reads, in the order Item numbers
// them. The slice is the caller's.
func (pe *PreparedEntity) Views() []*definition.View {
	views := make([]*definition.View, len(pe.views))
	for i, v := range pe.views {
		views[i] = v.view
	}
	return views
}

// Item says where served value c of pe (Features[c]) comes from: the index
// of its view in Views, and of its output in that view's plan
// (tile.Plan.Outputs). A training set computes the same values this way.
func (pe *PreparedEntity) Item(c int) (view, output int) {
	it := pe.items[c]
	return it.view, it.output
}

// Entity returns the prepared part for the named entity type, or nil.
func (p *Prepared) Entity(name string) *PreparedEntity {
	for _, pe := range p.Entities {
		if pe.Entity.Def.Name == name {
			return pe
		}
	}
	return nil
}

// Error is a request the engine refuses: the caller's mistake, not the
// server's (a 400 / INVALID_ARGUMENT).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }
