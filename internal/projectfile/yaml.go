package projectfile

import (
	"errors"
	"fmt"
	"slices"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

func tokenPos(tk *token.Token) pos {
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

// posOf returns where n starts in the file.
func posOf(n ast.Node) pos {
	switch n := n.(type) {
	case nil:
		return pos{}
	case *ast.DocumentNode:
		return posOf(n.Body)
	case *ast.MappingNode:
		// A block mapping's token is the ':' after its first key.
		if !n.IsFlowStyle && len(n.Values) > 0 && n.Values[0] != nil {
			return posOf(n.Values[0].Key)
		}
		return tokenPos(n.Start)
	case *ast.MappingValueNode:
		return posOf(n.Key)
	}
	return tokenPos(n.GetToken())
}

// describe names the kind of a node for messages: "a list", "a mapping".
func describe(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "true/false"
	}
	return "a " + n.Type().String()
}

// isNull reports whether n is absent or a YAML null.
func isNull(n ast.Node) bool {
	switch n.(type) {
	case nil, *ast.NullNode:
		return true
	}
	return false
}

// supported reports an error and returns false for YAML features a project
// file does not use: anchors, aliases, tags and merge keys.
func (l *loader) supported(n ast.Node) bool {
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode:
		l.errorf(posOf(n), "anchors and aliases (&name, *name) are not supported in a project file: write the value out in full")
		return false
	case *ast.TagNode:
		l.errorf(posOf(n), "tags (like !!str) are not supported in a project file: remove the tag")
		return false
	case *ast.MergeKeyNode:
		l.errorf(posOf(n), "merge keys (<<) are not supported in a project file: write the keys out in full")
		return false
	case *ast.DirectiveNode, *ast.CommentNode, *ast.CommentGroupNode, *ast.DocumentNode, *ast.MappingKeyNode:
		l.errorf(posOf(n), "unexpected %s here", n.Type())
		return false
	}
	return true
}

// keyValue is one key: value of a mapping, with where the key is.
type keyValue struct {
	key  string
	kpos pos
	val  ast.Node // nil when the value is null
}

// mapping returns the entries of the mapping n in file order, reporting and
// dropping duplicate keys. what names n for messages ("feature \"views\""),
// example shows what to write. A null n is an empty mapping; ok is false
// when n is not a mapping.
func (l *loader) mapping(n ast.Node, at pos, what, example string) (entries []keyValue, ok bool) {
	if isNull(n) {
		return nil, true
	}
	if !l.supported(n) {
		return nil, false
	}
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		l.errorf(posOf(n), "%s must be a mapping of key: value, like %s; found %s", what, example, describe(n))
		return nil, false
	}
	seen := make(map[string]pos, len(values))
	for _, mv := range values {
		if mv == nil {
			continue
		}
		key, kpos, ok := l.keyText(mv.Key)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			l.errorf(kpos, "duplicate key %q in %s (first at %v): remove one of them", clip(key), what, first)
			continue
		}
		seen[key] = kpos
		val := mv.Value
		if isNull(val) {
			val = nil
		}
		entries = append(entries, keyValue{key: key, kpos: kpos, val: val})
	}
	return entries, true
}

// keyText returns the text of a mapping key.
func (l *loader) keyText(k ast.MapKeyNode) (string, pos, bool) {
	if k == nil {
		return "", pos{}, false
	}
	p := posOf(k)
	switch k := k.(type) {
	case *ast.StringNode:
		return k.Value, p, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode, *ast.InfinityNode, *ast.NanNode:
		if tk := k.GetToken(); tk != nil {
			return tk.Value, p, true
		}
	case *ast.MappingKeyNode:
		l.errorf(p, "complex keys (? key) are not supported in a project file: write key: value")
		return "", p, false
	case *ast.MergeKeyNode, *ast.AnchorNode, *ast.AliasNode, *ast.TagNode:
		l.supported(k)
		return "", p, false
	}
	l.errorf(p, "a key must be a plain name; found %s", describe(k))
	return "", p, false
}

// keys checks entries against the allowed keys of a mapping and returns
// them by key.
func (l *loader) keys(entries []keyValue, what string, allowed ...string) map[string]keyValue {
	m := make(map[string]keyValue, len(entries))
	for _, e := range entries {
		if !slices.Contains(allowed, e.key) {
			l.errorf(e.kpos, "unknown key %q in %s (%sallowed: %s)", clip(e.key), what, didYouMean(e.key, allowed), sortedList(allowed))
			continue
		}
		m[e.key] = e
	}
	return m
}

// declaration checks the name of a declared entity, source, view or
// service (kind) and reads the mapping that declares it; what names it in
// messages: view "clicks".
func (l *loader) declaration(d keyValue, kind, example string) (what string, kv []keyValue, ok bool) {
	l.name(d.key, d.kpos, kind+" name")
	what = fmt.Sprintf("%s %q", kind, clip(d.key))
	kv, ok = l.mapping(d.val, d.kpos, what, example)
	return what, kv, ok
}

// need returns the entry of key in m. When there is none it reports, at
// at, "<what> has no <key>: add <key>:<advice>".
func (l *loader) need(m map[string]keyValue, key string, at pos, what, advice string) (keyValue, bool) {
	e, ok := m[key]
	if !ok {
		l.errorf(at, "%s has no %s: add %s:%s", what, key, key, advice)
	}
	return e, ok
}

// filledMapping is mapping for a mapping that must not be empty: an empty
// one is reported at at, "<what> is empty: <advice>", and ok is false.
func (l *loader) filledMapping(n ast.Node, at pos, what, example, advice string) (entries []keyValue, ok bool) {
	entries, ok = l.mapping(n, at, what, example)
	if ok && len(entries) == 0 {
		l.errorf(at, "%s is empty: %s", what, advice)
		return nil, false
	}
	return entries, ok
}

// filledList is list for a list that must not be empty: an empty one is
// reported at at, "<what> is empty: <advice>", and ok is false.
func (l *loader) filledList(n ast.Node, at pos, what, example, advice string) (items []ast.Node, ok bool) {
	items, ok = l.list(n, what, example)
	if ok && len(items) == 0 {
		l.errorf(at, "%s is empty: %s", what, advice)
		return nil, false
	}
	return items, ok
}

// firstListing reports whether s is listed for the first time, recording
// where in seen; a repeat is reported as "<kind> "s" is listed twice in
// <what> (first at line N): remove one".
func (l *loader) firstListing(seen map[string]pos, kind, s string, p pos, what string) bool {
	if first, dup := seen[s]; dup {
		l.errorf(p, "%s %q is listed twice in %s (first at %v): remove one", kind, s, what, first)
		return false
	}
	seen[s] = p
	return true
}

// list returns the items of the sequence n. A null n is an empty list; ok
// is false when n is not a list.
func (l *loader) list(n ast.Node, what, example string) (items []ast.Node, ok bool) {
	if isNull(n) {
		return nil, true
	}
	if !l.supported(n) {
		return nil, false
	}
	s, isSeq := n.(*ast.SequenceNode)
	if !isSeq {
		l.errorf(posOf(n), "%s must be a list, like %s; found %s", what, example, describe(n))
		return nil, false
	}
	return s.Values, true
}

// scalar returns the text of a scalar as written (without quotes). It
// reports an error when n is null, a list or a mapping.
func (l *loader) scalar(n ast.Node, at pos, what, example string) (string, pos, bool) {
	if isNull(n) {
		p := at
		if n != nil {
			p = posOf(n)
		}
		l.errorf(p, "%s is empty: write a value, like %s", what, example)
		return "", p, false
	}
	if !l.supported(n) {
		return "", posOf(n), false
	}
	p := posOf(n)
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, p, true
	case *ast.LiteralNode:
		if n.Value != nil {
			return n.Value.Value, p, true
		}
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, p, true
		}
	}
	l.errorf(p, "%s must be a single value, like %s; found %s", what, example, describe(n))
	return "", p, false
}

// quoted reports whether n is a quoted string.
func quoted(n ast.Node) bool {
	s, ok := n.(*ast.StringNode)
	if !ok || s.Token == nil {
		return false
	}
	return s.Token.Type == token.DoubleQuoteType || s.Token.Type == token.SingleQuoteType
}

// hostPort reads an address (of online_store, or a Kafka broker). In a flow
// list, YAML parses host:7000 as a one-keyValue mapping; written without spaces
// it is taken as the address. what names the address in messages ("address
// of online_store"), example shows one.
func (l *loader) hostPort(n ast.Node, at pos, what, example string) (string, pos, bool) {
	if text, kp, pair, ok := colonPair(n, tokenText); pair {
		if ok {
			return text, kp, true
		}
		l.errorf(posOf(n), "%s: write host:port with no spaces, like %s", what, example)
		return "", posOf(n), false
	}
	return l.scalar(n, at, what, example)
}

// colonPair reads a:b in a flow list, which YAML parses as a mapping of
// one keyValue. pair reports whether n is such a mapping; ok, that a is a
// plain string, b's text is accepted by value, and the two are written
// with no space around the colon; text is then "a:b", at a's position.
func colonPair(n ast.Node, value func(ast.Node) (string, bool)) (text string, p pos, pair, ok bool) {
	var mv *ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		if len(m.Values) == 1 {
			mv = m.Values[0]
		}
	case *ast.MappingValueNode:
		mv = m
	}
	if mv == nil {
		return "", pos{}, false, false
	}
	k, isString := mv.Key.(*ast.StringNode)
	if !isString || quoted(k) || mv.Value == nil {
		return "", pos{}, true, false
	}
	v, valueOK := value(mv.Value)
	kp, vp := posOf(k), posOf(mv.Value)
	if !valueOK || kp.line != vp.line || vp.col != kp.col+len(k.Value)+1 {
		return "", pos{}, true, false
	}
	return k.Value + ":" + v, kp, true, true
}

// tokenText returns the text of a scalar as written.
func tokenText(n ast.Node) (string, bool) {
	if tk := n.GetToken(); tk != nil {
		return tk.Value, true
	}
	return "", false
}

// plainString returns the value of an unquoted string.
func plainString(n ast.Node) (string, bool) {
	s, ok := n.(*ast.StringNode)
	if !ok || quoted(s) {
		return "", false
	}
	return s.Value, true
}

// parseYAML parses data into a YAML syntax tree, keeping duplicate keys
// (the checker reports them with both lines). A panic in the YAML parser on
// malformed input is turned into an error: Parse never panics.
func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("the YAML parser failed on this file (%v): check its syntax", r)
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// syntaxError reports a YAML syntax error from the parser.
func (l *loader) syntaxError(err error) {
	var withToken interface {
		GetToken() *token.Token
		GetMessage() string
	}
	if errors.As(err, &withToken) {
		p := tokenPos(withToken.GetToken())
		if p.line == 0 {
			p = pos{1, 1}
		}
		l.errorf(p, "YAML syntax error: %s", withToken.GetMessage())
		return
	}
	l.errorf(pos{1, 1}, "YAML syntax error: %v", err)
}
