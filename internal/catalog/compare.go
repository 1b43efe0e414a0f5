package catalog

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Kind is how a view stands against the catalog.
type Kind uint8

const (
	// Unchanged: the catalog has the view and its rows' layout, keys and
	// source are the project's (names of features may differ).
	Unchanged Kind = iota
	// New: the project has a view the catalog has not.
	New
	// Changed: the view's rows were written under another layout, key or
	// source: they no longer mean what the project says.
	Changed
	// Removed: the catalog has a view the project has not.
	Removed
)

var kindNames = [...]string{Unchanged: "unchanged", New: "new", Changed: "changed", Removed: "removed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// Change is how one view stands against the catalog.
type Change struct {
	View string
	Kind Kind
	// Differences say in words how the definition changed: for Changed,
	// what makes the rows unusable; for Unchanged, what changed without
	// touching the rows (a feature renamed), if anything.
	Differences []string
	// Stored is the catalog's record of the view; nil for New.
	Stored *View
	// Current is the project's description of the view (at the stored
	// generation and state for Unchanged); nil for Removed.
	Current *View
}

// Compare sets the catalog beside the project's views (compiled into
// plans) and returns a Change per view: the project's views in their
// order, then the removed ones by name.
func Compare(c *Catalog, p *definition.Project, plans map[*definition.View]*tile.Plan) []Change {
	var out []Change
	for _, v := range p.Views {
		stored := c.Views[v.Name]
		if stored == nil {
			out = append(out, Change{View: v.Name, Kind: New, Current: Describe(plans[v], 0, Ready)})
			continue
		}
		cur := Describe(plans[v], stored.Generation, stored.State)
		ch := Change{View: v.Name, Kind: Unchanged, Stored: stored, Current: cur}
		if cur.Layout != stored.Layout || !slices.Equal(cur.Keys, stored.Keys) || cur.Source != stored.Source {
			ch.Kind = Changed
		}
		ch.Differences = differences(stored, cur)
		if ch.Kind == Changed && len(ch.Differences) == 0 {
			ch.Differences = []string{fmt.Sprintf("row layout changed (tiles %s, before %s)", strings.Join(cur.Tiles, ", "), strings.Join(stored.Tiles, ", "))}
		}
		out = append(out, ch)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Views)) {
		if p.View(name) == nil {
			out = append(out, Change{View: name, Kind: Removed, Stored: c.Views[name]})
		}
	}
	return out
}

// differences words how the view described by was became now.
func differences(was, now *View) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	if !slices.Equal(was.Keys, now.Keys) {
		add("entity key changed from (%s) to (%s)", strings.Join(was.Keys, ", "), strings.Join(now.Keys, ", "))
	}
	if was.Entity != now.Entity {
		add("entity changed from %s to %s", was.Entity, now.Entity)
	}
	if was.Source != now.Source {
		add("source changed from %s to %s", was.Source, now.Source)
	} else {
		d = append(d, fieldDifferences(now.Source, was.SourceFields, now.SourceFields)...)
	}
	wasF := map[string]*Feature{}
	for i := range was.Features {
		wasF[was.Features[i].Name] = &was.Features[i]
	}
	nowF := map[string]*Feature{}
	for i := range now.Features {
		nowF[now.Features[i].Name] = &now.Features[i]
	}
	for _, f := range was.Features {
		if nowF[f.Name] == nil {
			add("feature %s removed", f.Name)
		}
	}
	var common, commonWas []string
	for _, f := range now.Features {
		old := wasF[f.Name]
		if old == nil {
			add("feature %s added", f.Name)
			continue
		}
		common = append(common, f.Name)
		if old.Agg != f.Agg {
			add("aggregation of feature %s changed from %s to %s", f.Name, old.Agg, f.Agg)
		}
		if old.Field != f.Field {
			add("field of feature %s changed from %s to %s", f.Name, orNone(old.Field), orNone(f.Field))
		}
		if old.Where != f.Where {
			add("filter of feature %s changed from %s to %s", f.Name, orNone(old.Where), orNone(f.Where))
		}
		d = append(d, windowDifferences(f.Name, old.Windows, f.Windows)...)
	}
	for _, f := range was.Features {
		if nowF[f.Name] != nil {
			commonWas = append(commonWas, f.Name)
		}
	}
	if !slices.Equal(common, commonWas) {
		add("features reordered (from %s to %s)", strings.Join(commonWas, ", "), strings.Join(common, ", "))
	}
	return d
}

func windowDifferences(feature string, was, now []string) []string {
	var d []string
	if len(was) == 0 && len(now) > 0 {
		return []string{fmt.Sprintf("feature %s changed from all time to windows %s", feature, strings.Join(now, ", "))}
	}
	if len(was) > 0 && len(now) == 0 {
		return []string{fmt.Sprintf("feature %s changed from windows %s to all time", feature, strings.Join(was, ", "))}
	}
	for _, w := range now {
		if !slices.Contains(was, w) {
			d = append(d, fmt.Sprintf("window %s added to feature %s", w, feature))
		}
	}
	for _, w := range was {
		if !slices.Contains(now, w) {
			d = append(d, fmt.Sprintf("window %s removed from feature %s", w, feature))
		}
	}
	return d
}

func fieldDifferences(source string, was, now []string) []string {
	var d []string
	split := func(fields []string) (names []string, types map[string]string) {
		types = map[string]string{}
		for _, f := range fields {
			name, typ, _ := strings.Cut(f, " ")
			names = append(names, name)
			types[name] = typ
		}
		return names, types
	}
	wasNames, wasTypes := split(was)
	nowNames, nowTypes := split(now)
	for _, n := range nowNames {
		switch old, ok := wasTypes[n]; {
		case !ok:
			d = append(d, fmt.Sprintf("field %s added to source %s", n, source))
		case old != nowTypes[n]:
			d = append(d, fmt.Sprintf("field %s of source %s changed from %s to %s", n, source, old, nowTypes[n]))
		}
	}
	for _, n := range wasNames {
		if _, ok := nowTypes[n]; !ok {
			d = append(d, fmt.Sprintf("field %s removed from source %s", n, source))
		}
	}
	var keptWas, keptNow []string
	for _, n := range wasNames {
		if _, ok := nowTypes[n]; ok {
			keptWas = append(keptWas, n)
		}
	}
	for _, n := range nowNames {
		if _, ok := wasTypes[n]; ok {
			keptNow = append(keptNow, n)
		}
	}
	if !slices.Equal(keptWas, keptNow) {
		d = append(d, fmt.Sprintf("fields of source %s reordered", source))
	}
	return d
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
