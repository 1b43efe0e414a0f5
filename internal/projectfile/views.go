package projectfile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// resolve finds a declared name; it reports an error listing the declared
// ones when there is none.
func (l *loader) resolve(kind, name string, p pos, defined []string) bool {
	if slices.Contains(defined, name) {
		return true
	}
	if len(defined) == 0 {
		l.errorf(p, "%s %q is not defined (no %ss are defined)", kind, clip(name), kind)
		return false
	}
	l.errorf(p, "%s %q is not defined (%sdefined: %s)", kind, clip(name), didYouMean(name, defined), strings.Join(defined, ", "))
	return false
}

func (l *loader) views(p *definition.Project, e keyValue) {
	const example = "{user_engagement: {entity: user, source: engagements, features: {views: {agg: count, windows: [1h]}}}}"
	entries, ok := l.filledMapping(e.val, e.kpos, "views", example, "declare at least one feature view, like views: "+example)
	if !ok {
		return
	}
	entityNames := namesOf(p.Entities, func(e *definition.Entity) string { return e.Name })
	sourceNames := namesOf(p.Sources, func(s *definition.Source) string { return s.Name })
	for _, ve := range entries {
		v := &definition.View{Name: ve.key}
		p.Views = append(p.Views, v)
		what, kv, ok := l.declaration(ve, "view", "{entity: user, source: engagements, features: {...}}")
		if !ok {
			continue
		}
		m := l.keys(kv, what, "entity", "source", "features")

		var entityPos pos
		if ee, ok := l.need(m, "entity", ve.kpos, what, " with one of the entities ("+orNone(entityNames)+")"); ok {
			if name, np, ok := l.scalar(ee.val, ee.kpos, "entity of "+what, "user"); ok {
				entityPos = np
				if l.resolve("entity", name, np, entityNames) {
					v.Entity = p.Entity(name)
				}
			}
		}
		if se, ok := l.need(m, "source", ve.kpos, what, " with one of the sources ("+orNone(sourceNames)+")"); ok {
			if name, np, ok := l.scalar(se.val, se.kpos, "source of "+what, "engagements"); ok {
				if l.resolve("source", name, np, sourceNames) {
					v.Source = p.Source(name)
				}
			}
		}
		if v.Entity != nil && v.Source != nil {
			l.checkKeys(v, entityPos)
		}

		fe, ok := l.need(m, "features", ve.kpos, what, ", like features: {views: {agg: count, windows: [1h, 24h]}}")
		if !ok {
			continue
		}
		features, ok := l.filledMapping(fe.val, fe.kpos, "features of "+what, "{views: {agg: count, windows: [1h, 24h]}}", "declare at least one feature, like {views: {agg: count, windows: [1h, 24h]}}")
		if !ok {
			continue
		}
		// served name -> what serves it
		served := map[string]string{}
		for _, f := range features {
			feat := l.feature(v, f)
			v.Features = append(v.Features, feat)
			names, labels := []string{feat.Name}, []string{fmt.Sprintf("feature %q", feat.Name)}
			if len(feat.Windows) > 0 {
				names, labels = nil, nil
				for _, w := range feat.WindowNames {
					names = append(names, feat.Name+"_"+w)
					labels = append(labels, fmt.Sprintf("feature %q window %s", feat.Name, w))
				}
			}
			for i, n := range names {
				if other, dup := served[n]; dup {
					l.errorf(f.kpos, "served name %q of %s is also the served name of %s: rename one of the features", v.Name+":"+n, labels[i], other)
					continue
				}
				served[n] = labels[i]
			}
		}
	}
}

// checkKeys checks that the key fields of v's entity are fields of its
// source of a key type.
func (l *loader) checkKeys(v *definition.View, p pos) {
	for _, k := range v.Entity.Keys {
		i := v.Source.FieldIndex(k)
		if i < 0 && l.isBroken(v.Source, k) {
			continue
		}
		if i < 0 {
			if k == v.Source.EventTime {
				l.errorf(p, "view %q: key field %q of entity %q is the event_time of source %q: a key must be an ordinary field of type int64 or string", v.Name, k, v.Entity.Name, v.Source.Name)
				continue
			}
			l.errorf(p, "view %q: source %q has no field %q, the key of entity %q: add %s: int64 (or string) to the fields of source %q", v.Name, v.Source.Name, k, v.Entity.Name, k, v.Source.Name)
			continue
		}
		if t := v.Source.Fields[i].Type; t != event.Int64 && t != event.String {
			l.errorf(p, "view %q: key field %q of entity %q has type %s in source %q: a key field must be int64 or string", v.Name, k, v.Entity.Name, t, v.Source.Name)
		}
	}
}

func (l *loader) feature(v *definition.View, fe keyValue) *definition.Feature {
	feat := &definition.Feature{Name: fe.key}
	l.name(fe.key, fe.kpos, "feature name")
	what := fmt.Sprintf("feature %q of view %q", clip(fe.key), clip(v.Name))
	kv, ok := l.mapping(fe.val, fe.kpos, what, "{agg: count, windows: [1h, 24h]}")
	if !ok {
		return feat
	}
	if fe.val == nil {
		l.errorf(fe.kpos, "%s is empty: write its aggregation, like {agg: count, windows: [1h, 24h]}", what)
		return feat
	}
	m := l.keys(kv, what, "agg", "field", "where", "windows")
	src := v.Source

	ae, ok := m["agg"]
	if !ok {
		l.errorf(fe.kpos, "%s has no agg: add agg: with one of %s", what, definition.AggNames)
	} else if s, sp, ok := l.scalar(ae.val, ae.kpos, "agg of "+what, "count"); ok {
		if a, ok := definition.ParseAgg(s); ok {
			feat.Agg = a
		} else {
			l.errorf(sp, "unknown agg %q in %s (%sallowed: %s)", clip(s), what, didYouMean(s, strings.Split(definition.AggNames, ", "), aggAliases), definition.AggNames)
		}
	}

	// field
	if ff, ok := m["field"]; ok {
		if feat.Agg == definition.Count {
			l.errorf(ff.kpos, "%s: count counts events; remove field, or use sum to add up a field", what)
		} else if name, np, ok := l.nameValue(ff.val, ff.kpos, "field of "+what, "dwell_ms"); ok {
			feat.Field = name
			if src != nil {
				l.checkAggField(feat, src, np, what)
			}
		}
	} else if feat.Agg != 0 && feat.Agg != definition.Count {
		l.errorf(fe.kpos, "%s: agg %s needs a field: add field: with %s", what, feat.Agg, fieldChoices(feat.Agg, src))
	}

	// windows
	if we, ok := m["windows"]; ok {
		if feat.Agg == definition.Last {
			l.errorf(we.kpos, "%s: last has no window: remove windows (last is the latest value over all time)", what)
		} else {
			l.windows(feat, we, what)
		}
	}

	// where
	if we, ok := m["where"]; ok {
		l.where(feat, src, we, what)
	}
	return feat
}

// fieldChoices says which fields of src agg can aggregate.
func fieldChoices(agg definition.Agg, src *definition.Source) string {
	if src == nil {
		return "the field to aggregate"
	}
	var names []string
	for _, f := range src.Fields {
		if agg == definition.Last || f.Type.Numeric() {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		if agg == definition.Last {
			return fmt.Sprintf("a field of source %q", src.Name)
		}
		return fmt.Sprintf("a numeric field (source %q has none)", src.Name)
	}
	if agg == definition.Last {
		return "one of the fields of source " + strconv.Quote(src.Name) + " (" + strings.Join(names, ", ") + ")"
	}
	return "one of the numeric fields of source " + strconv.Quote(src.Name) + " (" + strings.Join(names, ", ") + ")"
}

func (l *loader) checkAggField(feat *definition.Feature, src *definition.Source, p pos, what string) {
	i := src.FieldIndex(feat.Field)
	if i < 0 && l.isBroken(src, feat.Field) {
		return
	}
	if i < 0 {
		if feat.Field == src.EventTime {
			l.errorf(p, "%s: %q is the event time of source %q, not a field to aggregate: use %s", what, feat.Field, src.Name, fieldChoices(feat.Agg, src))
			return
		}
		l.errorf(p, "%s: field %q is not a field of source %q (%sfields: %s)", what, feat.Field, src.Name, didYouMean(feat.Field, fieldNames(src)), orNone(fieldNames(src)))
		return
	}
	if t := src.Fields[i].Type; feat.Agg != definition.Last && feat.Agg != 0 && !t.Numeric() {
		l.errorf(p, "%s: %s needs a numeric field (int64 or float64) but %q is %s: use %s, or agg last", what, feat.Agg, feat.Field, t, fieldChoices(feat.Agg, src))
	}
}

func fieldNames(src *definition.Source) []string {
	return namesOf(src.Fields, func(f definition.Field) string { return f.Name })
}

func (l *loader) windows(feat *definition.Feature, we keyValue, what string) {
	items, ok := l.filledList(we.val, we.kpos, "windows of "+what, "[1h, 24h]", "list at least one window, like [1h, 24h], or remove windows for an all-time feature")
	if !ok {
		return
	}
	first := map[time.Duration]string{}
	firstPos := map[time.Duration]pos{}
	for _, it := range items {
		d, name := l.window(it, "window of "+what)
		if d == 0 {
			continue
		}
		p := posOf(it)
		if prev, dup := first[d]; dup {
			if prev == name {
				l.errorf(p, "window %s is listed twice in %s (first at %v): remove one", name, what, firstPos[d])
			} else {
				l.errorf(p, "window %s is the same length as window %s (%v) in %s: remove one", name, prev, firstPos[d], what)
			}
			continue
		}
		first[d], firstPos[d] = name, p
		feat.Windows = append(feat.Windows, d)
		feat.WindowNames = append(feat.WindowNames, name)
	}
}
