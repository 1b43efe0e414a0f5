package projectfile

import (
	"fmt"
	"math"
	"strconv"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

func (l *loader) where(feat *definition.Feature, src *definition.Source, we keyValue, what string) {
	const example = "{kind: view} or {kind: [like, share]}"
	entries, ok := l.filledMapping(we.val, we.kpos, "where of "+what, example, "add field: value, like where: "+example+", or remove where")
	if !ok {
		return
	}
	for _, e := range entries {
		if !l.name(e.key, e.kpos, "filter field") {
			continue
		}
		var field definition.Field
		known := false
		if src != nil {
			i := src.FieldIndex(e.key)
			switch {
			case i >= 0:
				field, known = src.Fields[i], true
			case l.isBroken(src, e.key):
			case e.key == src.EventTime:
				l.errorf(e.kpos, "%s: cannot filter on %q, the event time of source %q: windows select events by time", what, e.key, src.Name)
			default:
				l.errorf(e.kpos, "%s: where field %q is not a field of source %q (%sfields: %s)", what, e.key, src.Name, didYouMean(e.key, fieldNames(src)), orNone(fieldNames(src)))
			}
		}
		fwhat := fmt.Sprintf("where %s of %s", e.key, what)
		var items []ast.Node
		if s, isSeq := e.val.(*ast.SequenceNode); isSeq {
			items = s.Values
			if len(items) == 0 {
				l.errorf(e.kpos, "%s: the list of values is empty: list at least one value, like %s: [a, b]", fwhat, e.key)
				continue
			}
		} else if e.val == nil {
			l.errorf(e.kpos, "%s: no value: write the value to keep, like %s: value, or a list like %s: [a, b]", fwhat, e.key, e.key)
			continue
		} else {
			items = []ast.Node{e.val}
		}
		if !known {
			continue
		}
		filter := definition.Filter{Field: e.key}
		for _, it := range items {
			v, ok := l.filterValue(it, field, fwhat)
			if !ok {
				continue
			}
			dup := false
			for _, prev := range filter.Values {
				if prev.Equal(v) {
					dup = true
				}
			}
			if dup {
				l.errorf(posOf(it), "%s: value %s is listed twice: remove one", fwhat, clip(v.String()))
				continue
			}
			filter.Values = append(filter.Values, v)
		}
		if len(filter.Values) > 0 {
			feat.Where = append(feat.Where, filter)
		}
	}
}

// filterValue converts a where value to the type of field.
func (l *loader) filterValue(n ast.Node, field definition.Field, what string) (event.Value, bool) {
	p := posOf(n)
	if isNull(n) {
		l.errorf(p, "%s: null is not a value a filter can match: write a %s value", what, field.Type)
		return event.Value{}, false
	}
	if !l.supported(n) {
		return event.Value{}, false
	}
	raw := ""
	if tk := n.GetToken(); tk != nil {
		raw = tk.Value
	}
	bad := func(want string) (event.Value, bool) {
		l.errorf(p, "%s: %s is not a %s value: write %s", what, describe(n), field.Type, want)
		return event.Value{}, false
	}
	switch field.Type {
	case event.String:
		switch n := n.(type) {
		case *ast.StringNode:
			return event.StringValue(n.Value), true
		case *ast.LiteralNode:
			if n.Value != nil {
				return event.StringValue(n.Value.Value), true
			}
		case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
			// A plain scalar means its text for a string field.
			return event.StringValue(raw), true
		}
		return bad("a string, like view")

	case event.Int64:
		switch n := n.(type) {
		case *ast.IntegerNode:
			switch v := n.Value.(type) {
			case int64:
				return event.IntValue(v), true
			case uint64:
				if v <= math.MaxInt64 {
					return event.IntValue(int64(v)), true
				}
			}
			l.errorf(p, "%s: %s is out of range for int64", what, clip(raw))
			return event.Value{}, false
		case *ast.StringNode:
			if quoted(n) {
				if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
					l.errorf(p, "%s: %q is a string but the field is int64: write the number without quotes", what, n.Value)
					return event.Value{}, false
				}
				return bad("a whole number, like 42")
			}
			if isIntText(n.Value) {
				l.errorf(p, "%s: %s is out of range for int64", what, clip(n.Value))
				return event.Value{}, false
			}
		}
		return bad("a whole number, like 42")

	case event.Float64:
		switch n := n.(type) {
		case *ast.IntegerNode:
			switch v := n.Value.(type) {
			case int64:
				return event.FloatValue(float64(v)), true
			case uint64:
				return event.FloatValue(float64(v)), true
			}
		case *ast.FloatNode:
			fv := event.FloatValue(n.Value)
			if fv.Valid() != nil {
				l.errorf(p, "%s: %s is not a finite number", what, clip(raw))
				return event.Value{}, false
			}
			return fv, true
		case *ast.InfinityNode, *ast.NanNode:
			l.errorf(p, "%s: %s is not a finite number: write a number, like 1.5", what, raw)
			return event.Value{}, false
		case *ast.StringNode:
			if !quoted(n) {
				if f, err := strconv.ParseFloat(n.Value, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
					return event.FloatValue(f), true
				}
			}
		}
		return bad("a number, like 1.5")

	case event.Bool:
		if b, ok := n.(*ast.BoolNode); ok {
			return event.BoolValue(b.Value), true
		}
		return bad("true or false")
	}
	return bad("a value")
}
