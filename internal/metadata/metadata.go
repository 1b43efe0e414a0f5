// Package metadata owns the description of a project as its users see it:
// its entities with their key types, its sources with their fields, its
// views with their features, windows, aggregations and tile plans, and its
// services with the served names they return.
//
// Describe builds it once from a project and its compiled plans; the HTTP
// API serves it as JSON (GET /v1/metadata), the gRPC API as a message, and
// kiln validate prints it with WriteText, so the three never disagree.
package metadata

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Project describes a project. Its JSON is the body of GET /v1/metadata.
type Project struct {
	Name     string    `json:"project"`
	Entities []Entity  `json:"entities"`
	Sources  []Source  `json:"sources"`
	Views    []View    `json:"views"`
	Services []Service `json:"services"`
}

// Entity is an entity type and its key fields.
type Entity struct {
	Name string  `json:"name"`
	Keys []Field `json:"keys"`
}

// Field is a named, typed field. Type is int64, float64, string or bool;
// a key field no view reads has no type, "".
type Field struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Source is where events come from: its type (push, kafka, nats), its
// event-time field and its other fields.
type Source struct {
	Name      string  `json:"name"`
	Type      string  `json:"type"`
	EventTime string  `json:"event_time"`
	Fields    []Field `json:"fields"`
}

// View is a feature view: its features as declared, the values it serves
// and its tile plan.
type View struct {
	Name     string    `json:"name"`
	Entity   string    `json:"entity"`
	Source   string    `json:"source"`
	Features []Feature `json:"features"`
	// Served are the served values, one per feature and window, in the
	// order the view declares them.
	Served []Served `json:"served"`
	Plan   Plan     `json:"plan"`
}

// Feature is one aggregation of a view over its windows.
type Feature struct {
	Name string `json:"name"`
	Agg  string `json:"agg"`
	// Field is the aggregated field; empty for count.
	Field string `json:"field,omitempty"`
	// Where are the filters an event must pass, as field: allowed values.
	Where []Filter `json:"where,omitempty"`
	// Windows are spelled as the project file spells them; none means all
	// time.
	Windows []string `json:"windows"`
}

// Filter keeps events whose field has one of the values.
type Filter struct {
	Field  string `json:"field"`
	Values []any  `json:"values"`
}

// Served is one served value: what /v1/features and the gRPC API return
// under Name, with the type of its values.
type Served struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Feature string `json:"feature"`
	Agg     string `json:"agg"`
	// Window is the window as the project file spells it; "" for all time.
	Window string `json:"window"`
}

// Plan is a view's tile plan: one level per window length, and the size
// of a row.
type Plan struct {
	Levels []Level `json:"levels"`
	// RowBytesEmpty and RowBytesFull estimate one entity's row: with no
	// events, and active in every tile of every window.
	RowBytesEmpty int `json:"row_bytes_empty"`
	RowBytesFull  int `json:"row_bytes_full"`
	// LateHorizon is how old an event may be and still count, like
	// "182h"; "" when all-time features keep every event.
	LateHorizon string `json:"late_horizon"`
}

// Level is the tiles of one window length. An all-time level has Window
// "" and no tile size.
type Level struct {
	Window string `json:"window"`
	// TileSize is the hop: the window advances by one tile at a time.
	TileSize string `json:"tile_size"`
	// TilesRead is the number of tiles an evaluation reads.
	TilesRead int64 `json:"tiles_read"`
	// Covers is the span a value may cover: from the window's length up
	// to it plus one tile ("1h" to "65m").
	CoversMin string `json:"covers_min"`
	CoversMax string `json:"covers_max"`
	// MaxDeviation is the worst relative excess of the span covered over
	// the window, 0.083 for 8.3%.
	MaxDeviation float64 `json:"max_deviation"`
	// Features are the features with a value on this level.
	Features []string `json:"features"`
}

// Service is a named list of served values, in the order they are
// answered, and the entities a request must give keys of.
type Service struct {
	Name     string   `json:"name"`
	Features []string `json:"features"`
	Entities []string `json:"entities"`
}

// Describe describes a project whose views plans holds compiled plans of
// (tile.CompileProject's).
func Describe(p *definition.Project, plans map[*definition.View]*tile.Plan) *Project {
	out := &Project{Name: p.Name, Entities: []Entity{}, Sources: []Source{}, Views: []View{}, Services: []Service{}}
	for _, e := range p.Entities {
		d := Entity{Name: e.Name}
		for _, k := range e.Keys {
			d.Keys = append(d.Keys, Field{Name: k, Type: keyType(p, e, k)})
		}
		out.Entities = append(out.Entities, d)
	}
	for _, s := range p.Sources {
		d := Source{Name: s.Name, Type: s.Type.String(), EventTime: s.EventTime, Fields: []Field{}}
		for _, f := range s.Fields {
			d.Fields = append(d.Fields, Field{Name: f.Name, Type: f.Type.String()})
		}
		out.Sources = append(out.Sources, d)
	}
	for _, v := range p.Views {
		out.Views = append(out.Views, describeView(v, plans[v]))
	}
	for _, s := range p.Services {
		d := Service{Name: s.Name, Features: []string{}, Entities: []string{}}
		for _, f := range s.Features {
			d.Features = append(d.Features, f.Name())
		}
		for _, e := range p.Entities {
			for _, f := range s.Features {
				if f.View.Entity == e {
					d.Entities = append(d.Entities, e.Name)
					break
				}
			}
		}
		out.Services = append(out.Services, d)
	}
	return out
}

// keyType is the type of an entity's key field: its type in the sources
// of the entity's views, which the project file checks agree.
func keyType(p *definition.Project, e *definition.Entity, key string) string {
	for _, v := range p.Views {
		if v.Entity == e {
			if i := v.Source.FieldIndex(key); i >= 0 {
				return v.Source.Fields[i].Type.String()
			}
		}
	}
	return ""
}

func describeView(v *definition.View, p *tile.Plan) View {
	d := View{Name: v.Name, Entity: v.Entity.Name, Source: v.Source.Name}
	for _, f := range v.Features {
		df := Feature{Name: f.Name, Agg: f.Agg.String(), Field: f.Field, Windows: []string{}}
		df.Windows = append(df.Windows, f.WindowNames...)
		for _, w := range f.Where {
			flt := Filter{Field: w.Field}
			for _, val := range w.Values {
				flt.Values = append(flt.Values, jsonValue(val))
			}
			df.Where = append(df.Where, flt)
		}
		d.Features = append(d.Features, df)
	}
	for i := range p.Outputs {
		o := &p.Outputs[i]
		d.Served = append(d.Served, Served{Name: o.Name, Type: o.Type().String(), Feature: o.Ref.Feature.Name,
			Agg: o.Agg.String(), Window: o.Ref.WindowName})
	}
	for li, l := range p.Levels {
		dl := Level{Features: []string{}}
		for _, o := range p.Outputs {
			if o.Level == li {
				dl.Features = append(dl.Features, o.Ref.Feature.Name)
				if dl.Window == "" {
					dl.Window = o.Ref.WindowName
				}
			}
		}
		if l.Window.IsAllTime() {
			dl.TilesRead = 1
		} else {
			length := time.Duration(l.Window.Length) * time.Millisecond
			hop := time.Duration(l.Window.Hop) * time.Millisecond
			dl.TileSize = definition.FormatWindow(hop)
			dl.TilesRead = l.Window.TilesRead()
			dl.CoversMin = dl.Window
			dl.CoversMax = definition.FormatWindow(length + hop)
			dl.MaxDeviation = l.Window.Deviation()
		}
		d.Plan.Levels = append(d.Plan.Levels, dl)
	}
	d.Plan.RowBytesEmpty, d.Plan.RowBytesFull = p.RowBytes()
	if r := p.Retention(); r > 0 {
		d.Plan.LateHorizon = definition.FormatWindow(time.Duration(r) * time.Millisecond)
	}
	return d
}

// jsonValue is a filter value as JSON shows it.
func jsonValue(v event.Value) any {
	switch v.Kind {
	case event.Int64:
		return v.Int
	case event.Float64:
		return v.Float
	case event.String:
		return v.Str
	case event.Bool:
		return v.Bool
	}
	return nil
}

// WriteText prints the project's summary and each view's tile plan, as
// kiln validate shows them: per window its tile size, the tiles an
// evaluation reads, the span covered and the worst-case deviation, then
// the row size and the late-event horizon. file names the project file.
func (p *Project) WriteText(w io.Writer, file string) error {
	fmt.Fprintf(w, "%s: project %s is valid: %d entities, %d sources, %d views, %d services\n",
		file, p.Name, len(p.Entities), len(p.Sources), len(p.Views), len(p.Services))
	for _, v := range p.Views {
		fmt.Fprintf(w, "\nview %s (entity %s, source %s): %d served values\n", v.Name, v.Entity, v.Source, len(v.Served))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  window\ttile size (hop)\ttiles read\tspan covered\tmax deviation\tfeatures")
		for _, l := range v.Plan.Levels {
			features := strings.Join(l.Features, ", ")
			if l.TileSize == "" {
				fmt.Fprintf(tw, "  all time\t-\t1\tevery event\t0\t%s\n", features)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t[%s, %s)\t%.1f%%\t%s\n",
				l.Window, l.TileSize, l.TilesRead, l.CoversMin, l.CoversMax, 100*l.MaxDeviation, features)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		horizon := "none (all-time features keep every event)"
		if v.Plan.LateHorizon != "" {
			horizon = v.Plan.LateHorizon
		}
		fmt.Fprintf(w, "  bytes per row (one entity): %d with no events, %d when active in every tile (events from the future add theirs until their time)\n",
			v.Plan.RowBytesEmpty, v.Plan.RowBytesFull)
		if _, err := fmt.Fprintf(w, "  late-event horizon: %s\n", horizon); err != nil {
			return err
		}
	}
	return nil
}
