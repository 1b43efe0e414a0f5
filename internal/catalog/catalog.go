// Package catalog owns the stored catalog of view layouts: a record, kept in
// the online store beside the rows, of the definition each view's rows were
// written under — its layout fingerprint (tile.Plan.Layout), a description
// detailed enough to say how a view changed (entity keys, source and its
// fields, each feature's aggregation, field, filter and windows, the tile
// plan), the generation of its rows (tile.Plan.WithGeneration) and whether
// they are ready or being rebuilt.
//
// Compare sets the catalog beside a project and says, per view, whether it
// is unchanged, new, changed (and how, in words), or removed. The caller
// (package node) decides what to do, assigns generations with
// NextGeneration, and saves the catalog with Save before it writes any row
// of a new generation.
//
// The catalog is one JSON document under Key, which begins with
// store.ReservedPrefix and so never meets a row key. On a store that
// several processes write (store.ConditionalWriter: Redis), Save writes it
// only over the value Load read, so two processes never lose each other's
// change: the loser gets ErrConflict and must load it again.
package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Key is the store key of the catalog.
var Key = []byte(store.ReservedPrefix + "kiln-catalog")

// version is the catalog document's format; Load refuses others.
const version = 1

// State is where a view's rows stand.
type State string

const (
	// Ready: the rows hold every event the view should have folded.
	Ready State = "ready"
	// Rebuilding: the rows of the view's generation are being replayed
	// from the event archive; until that ends they are incomplete. A
	// catalog that says so at start means the rebuild was interrupted.
	Rebuilding State = "rebuilding"
)

// Catalog is the stored record of every view's layout. Load reads it; the
// zero value (and what Load returns from a store without one) holds no
// view. It is not safe for concurrent use.
type Catalog struct {
	// Views by name.
	Views map[string]*View `json:"views"`
	// LastGeneration is the greatest generation ever given to any view's
	// rows: a new generation is always greater (NextGeneration), so a view
	// removed and added again never meets its old rows.
	LastGeneration uint64 `json:"last_generation"`

	found bool   // the store held a catalog
	raw   []byte // the stored value Load read or Save wrote; nil: none
}

// View is the catalog's record of one view.
type View struct {
	// Layout is tile.Plan.Layout of the definition the rows were written
	// under.
	Layout uint32 `json:"layout"`
	// Generation of the rows (tile.Plan.WithGeneration).
	Generation uint64 `json:"generation"`
	State      State  `json:"state"`
	Entity     string `json:"entity"`
	// Keys are the entity's key fields: a row's key is made of them.
	Keys   []string `json:"keys"`
	Source string   `json:"source"`
	// SourceFields are the source's fields as "name type", in schema
	// order: pending events in a row carry every one of them.
	SourceFields []string  `json:"source_fields"`
	Features     []Feature `json:"features"`
	// Tiles are the plan's tile sizes, "length/hop" per level ("all time"
	// for the all-time level).
	Tiles []string `json:"tiles"`
}

// Feature describes one feature of a view.
type Feature struct {
	Name    string   `json:"name"`
	Agg     string   `json:"agg"`
	Field   string   `json:"field,omitempty"`
	Where   string   `json:"where,omitempty"` // as Describe words it; empty: no filter
	Windows []string `json:"windows,omitempty"`
}

// Describe returns the catalog's record of the view whose plan is p, at
// generation gen, in state st.
func Describe(p *tile.Plan, gen uint64, st State) *View {
	v := p.View
	d := &View{
		Layout: p.Layout, Generation: gen, State: st,
		Entity: v.Entity.Name, Keys: slices.Clone(v.Entity.Keys), Source: v.Source.Name,
	}
	for _, f := range v.Source.Fields {
		d.SourceFields = append(d.SourceFields, f.Name+" "+f.Type.String())
	}
	for _, f := range v.Features {
		d.Features = append(d.Features, Feature{
			Name: f.Name, Agg: f.Agg.String(), Field: f.Field, Where: describeWhere(f.Where),
			Windows: slices.Clone(f.WindowNames),
		})
	}
	for _, l := range p.Levels {
		if l.Window.IsAllTime() {
			d.Tiles = append(d.Tiles, "all time")
			continue
		}
		d.Tiles = append(d.Tiles, fmt.Sprintf("%s/%s", formatMs(l.Window.Length), formatMs(l.Window.Hop)))
	}
	return d
}

func formatMs(ms int64) string {
	return definition.FormatWindow(time.Duration(ms) * time.Millisecond)
}

// describeWhere words a feature's filters: `kind = "view" and
// device in ("ios", "android")`.
func describeWhere(where []definition.Filter) string {
	var parts []string
	for _, w := range where {
		if len(w.Values) == 1 {
			parts = append(parts, w.Field+" = "+w.Values[0].String())
			continue
		}
		vals := make([]string, len(w.Values))
		for i, v := range w.Values {
			vals[i] = v.String()
		}
		parts = append(parts, w.Field+" in ("+strings.Join(vals, ", ")+")")
	}
	return strings.Join(parts, " and ")
}

// Getter reads keys from a store (store.Store has this method).
type Getter interface {
	Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
}

// Writer writes a batch to a store (store.Store has this method). A Writer
// that is also a store.ConditionalWriter is written with compare-and-set.
type Writer interface {
	Write(ctx context.Context, batch []store.KV) error
}

// ErrConflict is wrapped by Save's error when another process changed the
// catalog since Load.
var ErrConflict = errors.New("catalog: changed by another process since it was read")

// Load reads the catalog from st. A store without one gives an empty
// catalog whose Exists is false.
func Load(ctx context.Context, st Getter) (*Catalog, error) {
	c := &Catalog{Views: map[string]*View{}}
	var decodeErr error
	err := st.Get(ctx, [][]byte{Key}, func(_ int, value []byte, found bool) {
		if !found {
			return
		}
		c.found = true
		c.raw = slices.Clone(value)
		decodeErr = c.decode(value)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the catalog of view layouts: %w", err)
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("the catalog of view layouts in the store is damaged: %w (restore the store from a backup)", decodeErr)
	}
	return c, nil
}

// document is the stored form.
type document struct {
	Version int `json:"version"`
	*Catalog
}

func (c *Catalog) decode(data []byte) error {
	var doc document
	doc.Catalog = &Catalog{}
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	if doc.Version != version {
		return fmt.Errorf("catalog format %d; this build reads format %d (run the newer kiln that wrote it)", doc.Version, version)
	}
	for name, v := range doc.Views {
		if v == nil || (v.State != Ready && v.State != Rebuilding) {
			return fmt.Errorf("view %s: no state or an unknown one", name)
		}
	}
	c.Views = doc.Views
	if c.Views == nil {
		c.Views = map[string]*View{}
	}
	c.LastGeneration = doc.LastGeneration
	return nil
}

// Exists reports whether the store held a catalog when it was loaded, or
// it has been saved since.
func (c *Catalog) Exists() bool { return c.found }

// NextGeneration returns a generation no view's rows have had yet, and
// records it as given.
func (c *Catalog) NextGeneration() uint64 {
	c.LastGeneration++
	return c.LastGeneration
}

// Save writes the catalog to st, unless it is what st holds already: on a
// store.ConditionalWriter only over the value Load read (or the last Save
// wrote), else plainly.
func (c *Catalog) Save(ctx context.Context, st Writer) error {
	data, err := json.MarshalIndent(document{Version: version, Catalog: c}, "", " ")
	if err != nil {
		return err
	}
	if c.found && bytes.Equal(data, c.raw) {
		// Nothing changed: processes starting at once on one store with
		// the same project do not conflict.
		return nil
	}
	if cw, ok := st.(store.ConditionalWriter); ok {
		conflict := false
		err = cw.WriteIf(ctx, []store.CondKV{{Key: Key, Value: data, Old: c.raw}}, func(int) { conflict = true })
		if err == nil && conflict {
			return fmt.Errorf("%w: start again", ErrConflict)
		}
	} else {
		err = st.Write(ctx, []store.KV{{Key: Key, Value: data}})
	}
	if err != nil {
		return fmt.Errorf("writing the catalog of view layouts: %w", err)
	}
	c.raw, c.found = data, true
	return nil
}
