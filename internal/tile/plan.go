package tile

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// slotKind says how a numeric slot of a tile merges and how it is encoded.
type slotKind uint8

const (
	slotCount slotKind = iota // a count: adds; encoded as a uvarint
	slotSum                   // a sum: adds; encoded as a float64
	slotMin                   // a minimum: min; empty is +Inf
	slotMax                   // a maximum: max; empty is -Inf
)

// identity is the value of an empty slot of the kind.
func (k slotKind) identity() float64 {
	switch k {
	case slotMin:
		return math.Inf(1)
	case slotMax:
		return math.Inf(-1)
	}
	return 0
}

// merge combines two values of a slot of kind k. It is associative and
// commutative, so tiles merge exactly in any order (sums up to rounding).
func (k slotKind) merge(a, b float64) float64 {
	switch k {
	case slotMin:
		return math.Min(a, b)
	case slotMax:
		return math.Max(a, b)
	}
	return a + b
}

// Plan is a feature view compiled for the tile engine: which tiles a row
// keeps, which slots of a tile each feature owns, and how every served value
// is computed. Make one with Compile; it is immutable and safe to share.
type Plan struct {
	View *definition.View
	// Levels hold one entry per distinct window length of the view, in
	// ascending length, after an all-time level when any feature has no
	// window.
	Levels []Level
	// Outputs are the served values in definition.View.Outputs order.
	Outputs []Output
	// Fingerprint identifies the layout of the view's rows and their
	// generation (WithGeneration); a row encoded under another layout or
	// generation is refused with ErrLayout.
	Fingerprint uint32
	// Layout is the fingerprint of the layout alone (generation 0): what a
	// stored catalog of layouts compares to tell whether a view changed.
	Layout uint32

	features  []feature
	allTime   bool  // Levels[0] is the all-time level
	lastCount int   // number of "last" features (they live on the all-time level)
	retention int64 // ms; 0: events are never too old (all-time features)
	nFields   int   // source fields, for pending events
	fieldType []event.Type
	gen       uint64 // WithGeneration's; 0 for a compiled plan
}

// Level is one tile size of a plan: the tiles of one window length.
type Level struct {
	Window Window
	// Slots is the number of numeric slots in each tile.
	Slots  int
	stride int // a tile's length in Row.tiles: its start and its slots
	kinds  []slotKind
	empty  []float64 // an empty tile: each slot's identity
}

// Output is one served value: a feature over one window.
type Output struct {
	Name    string
	Ref     definition.FeatureRef
	Level   int
	Slot    int // first slot of the feature in the level's tiles
	Agg     definition.Agg
	last    int // index among last states, for Agg == Last
	feature int
}

// Type is the type of the output's values: counts are int64, last has its
// field's type, the other aggregations are float64.
func (o *Output) Type() event.Type {
	switch o.Agg {
	case definition.Count:
		return event.Int64
	case definition.Last:
		src := o.Ref.View.Source
		return src.Fields[src.FieldIndex(o.Ref.Feature.Field)].Type
	}
	return event.Float64
}

// feature is one compiled feature of the view.
type feature struct {
	agg    definition.Agg
	field  int // index in the source fields; -1 for count
	where  []filter
	levels []levelSlot // where the feature folds, one per window
	last   int         // index among last states
}

type levelSlot struct{ level, slot int }

type filter struct {
	field  int
	values []event.Value
}

// matches reports whether the event passes every filter of the feature and
// carries the aggregated field.
func (f *feature) matches(ev *event.Event) bool {
	for i := range f.where {
		v := ev.Fields[f.where[i].field]
		ok := false
		for _, want := range f.where[i].values {
			if v.Equal(want) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return f.field < 0 || ev.Fields[f.field].Kind != event.Null
}

// slotsFor is the number of numeric slots an aggregation needs in a tile.
func slotsFor(a definition.Agg) []slotKind {
	switch a {
	case definition.Count:
		return []slotKind{slotCount}
	case definition.Sum:
		return []slotKind{slotSum}
	case definition.Mean:
		return []slotKind{slotSum, slotCount}
	case definition.Min:
		return []slotKind{slotMin}
	case definition.Max:
		return []slotKind{slotMax}
	}
	return nil // last keeps a LastState instead
}

// Compile builds the plan of a view.
func Compile(v *definition.View) (*Plan, error) {
	p := &Plan{View: v, nFields: len(v.Source.Fields)}
	for _, f := range v.Source.Fields {
		p.fieldType = append(p.fieldType, f.Type)
	}
	levelOf := map[Window]int{}
	var windows []Window
	for _, f := range v.Features {
		if len(f.Windows) == 0 {
			p.allTime = true
		}
		for _, d := range f.Windows {
			w := NewWindow(d)
			if _, ok := levelOf[w]; !ok {
				levelOf[w] = -1
				windows = append(windows, w)
			}
		}
	}
	// Ascending window length; insertion sort keeps it dependency-free.
	for i := 1; i < len(windows); i++ {
		for j := i; j > 0 && windows[j].Length < windows[j-1].Length; j-- {
			windows[j], windows[j-1] = windows[j-1], windows[j]
		}
	}
	if p.allTime {
		p.Levels = append(p.Levels, Level{Window: AllTime})
	}
	for _, w := range windows {
		levelOf[w] = len(p.Levels)
		p.Levels = append(p.Levels, Level{Window: w})
		if r := w.Retention(); r > p.retention {
			p.retention = r
		}
	}
	if p.allTime {
		p.retention = 0
	}
	for fi, f := range v.Features {
		cf := feature{agg: f.Agg, field: -1, last: -1}
		if f.Field != "" {
			cf.field = v.Source.FieldIndex(f.Field)
			if cf.field < 0 {
				return nil, fmt.Errorf("view %s: feature %s: field %q is not in source %s", v.Name, f.Name, f.Field, v.Source.Name)
			}
		}
		for _, w := range f.Where {
			idx := v.Source.FieldIndex(w.Field)
			if idx < 0 {
				return nil, fmt.Errorf("view %s: feature %s: filter field %q is not in source %s", v.Name, f.Name, w.Field, v.Source.Name)
			}
			cf.where = append(cf.where, filter{field: idx, values: w.Values})
		}
		if f.Agg == definition.Last {
			if len(f.Windows) != 0 {
				return nil, fmt.Errorf("view %s: feature %s: last has no window", v.Name, f.Name)
			}
			cf.last = p.lastCount
			p.lastCount++
		}
		kinds := slotsFor(f.Agg)
		add := func(level int) levelSlot {
			l := &p.Levels[level]
			ls := levelSlot{level: level, slot: l.Slots}
			l.kinds = append(l.kinds, kinds...)
			l.Slots += len(kinds)
			return ls
		}
		if len(f.Windows) == 0 {
			cf.levels = append(cf.levels, add(0))
		}
		for _, d := range f.Windows {
			cf.levels = append(cf.levels, add(levelOf[NewWindow(d)]))
		}
		p.features = append(p.features, cf)
		for i, ref := range outputsOf(v, f) {
			p.Outputs = append(p.Outputs, Output{
				Name: ref.Name(), Ref: ref, Level: cf.levels[i].level, Slot: cf.levels[i].slot,
				Agg: f.Agg, last: cf.last, feature: fi,
			})
		}
	}
	for li := range p.Levels {
		l := &p.Levels[li]
		l.stride = 1 + l.Slots
		for _, k := range l.kinds {
			l.empty = append(l.empty, k.identity())
		}
	}
	p.Fingerprint = p.fingerprint()
	p.Layout = p.Fingerprint
	return p, nil
}

// WithGeneration returns a plan like p whose rows are of generation gen of
// the view: its Fingerprint mixes gen in, so rows of any other generation
// (older rows of the same layout included) fail DecodeRow with ErrLayout,
// which both paths take as no row. Starting a view's rows afresh is then a
// matter of a new generation, without finding or deleting its old rows.
// Generation 0 is the compiled plan's own fingerprint, so rows written
// before generations existed stay readable.
func (p *Plan) WithGeneration(gen uint64) *Plan {
	if gen == p.gen {
		return p
	}
	q := *p
	q.gen = gen
	q.Fingerprint = q.fingerprint()
	return &q
}

// Generation is the generation of the view's rows the plan reads and
// writes (WithGeneration).
func (p *Plan) Generation() uint64 { return p.gen }

func outputsOf(v *definition.View, f *definition.Feature) []definition.FeatureRef {
	if len(f.Windows) == 0 {
		return []definition.FeatureRef{{View: v, Feature: f}}
	}
	refs := make([]definition.FeatureRef, len(f.Windows))
	for i, w := range f.Windows {
		refs[i] = definition.FeatureRef{View: v, Feature: f, Window: w, WindowName: f.WindowNames[i]}
	}
	return refs
}

// fingerprint hashes everything a row's encoding depends on: levels, slot
// kinds, last features and the source field types of pending events; and
// the generation, when not 0.
func (p *Plan) fingerprint() uint32 {
	var b []byte
	b = append(b, RowVersion)
	for _, l := range p.Levels {
		b = binary.AppendVarint(b, l.Window.Length)
		b = binary.AppendVarint(b, l.Window.Hop)
		for _, k := range l.kinds {
			b = append(b, byte(k))
		}
		b = append(b, 0xff)
	}
	b = binary.AppendUvarint(b, uint64(p.lastCount))
	for _, t := range p.fieldType {
		b = append(b, byte(t))
	}
	// Filters and fields change what a tile means without changing its
	// shape: a row built under other filters must not be reused either.
	for _, f := range p.features {
		b = append(b, byte(f.agg))
		b = binary.AppendVarint(b, int64(f.field))
		for _, w := range f.where {
			b = binary.AppendVarint(b, int64(w.field))
			for _, v := range w.values {
				b = append(b, v.String()...)
				b = append(b, 0)
			}
		}
		b = append(b, 0xfe)
	}
	if p.gen != 0 {
		b = append(b, 0xfd)
		b = binary.AppendUvarint(b, p.gen)
	}
	return crc32.Checksum(b, castagnoli)
}

// Retention is how old an event may be and still matter to the view: events
// older than now − Retention are dropped as late. Zero means no limit (the
// view has an all-time feature).
func (p *Plan) Retention() int64 { return p.retention }

// Late reports whether an event at ts, arriving at now, is covered by no
// evaluation of any of the view's windows at a time ≥ now and the view has
// no all-time feature: folding it would change nothing that can be served.
func (p *Plan) Late(ts, now int64) bool {
	if p.allTime {
		return false
	}
	for _, l := range p.Levels {
		if ts >= l.Window.Start(now) {
			return false
		}
	}
	return true
}

// LateBefore returns the event time below which Late(ts, now) holds: a
// caller checking many events against one now computes it once. It is
// math.MinInt64 when the view has an all-time feature (no event is late).
func (p *Plan) LateBefore(now int64) int64 {
	if p.allTime {
		return math.MinInt64
	}
	before := int64(math.MaxInt64)
	for _, l := range p.Levels {
		before = min(before, l.Window.Start(now))
	}
	return before
}

// CompileProject compiles every view of a project.
func CompileProject(p *definition.Project) (map[*definition.View]*Plan, error) {
	plans := make(map[*definition.View]*Plan, len(p.Views))
	for _, v := range p.Views {
		pl, err := Compile(v)
		if err != nil {
			return nil, err
		}
		plans[v] = pl
	}
	return plans, nil
}
