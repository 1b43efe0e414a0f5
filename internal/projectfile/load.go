// Package projectfile reads and checks a project file (the YAML a Kiln
// project is declared in) and resolves it into a definition.Project: every
// reference resolves, every aggregation has a field of a type it can
// aggregate, every window is in range.
//
// Load or Parse return the *definition.Project, or an *Errors listing every
// problem found, each with the file, line and what to write instead.
package projectfile

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// Limits of the project file syntax.
const (
	// NameMaxLen is the longest name (of a project, entity, source, field,
	// view, feature or service).
	NameMaxLen = 64
	// MaxFutureSkewMax bounds max_future_skew.
	MaxFutureSkewMax = 24 * time.Hour
)

// Error is one problem in a project file, at a position of the file.
type Error struct {
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Msg says what is wrong and what to write instead.
	Msg string
}

// Error formats e as "file:line:col: msg".
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Errors is every problem found in a project file, in file order.
type Errors struct {
	List []*Error
}

// Error returns one line per problem.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, err := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, err := range e.List {
		errs[i] = err
	}
	return errs
}

// Load reads, parses and checks the project file at path. Problems in the
// file are returned as *Errors.
func Load(path string) (*definition.Project, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read project file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and checks a project file; file names it in messages. It
// returns the resolved project, or an *Errors listing every problem found.
func Parse(file string, data []byte) (*definition.Project, error) {
	l := &loader{file: file}
	p := l.project(data)
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i], l.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		return nil, &Errors{List: l.errs}
	}
	p.File = file
	return p, nil
}

// pos is a position in the file.
type pos struct{ line, col int }

func (p pos) String() string { return "line " + strconv.Itoa(p.line) }

type loader struct {
	file string
	errs []*Error
	// broken holds, per source, the fields declared with an invalid type:
	// they are reported once, where declared, and not again where used.
	broken map[*definition.Source]map[string]bool
}

// isBroken reports whether name is a field of src declared with an invalid
// type.
func (l *loader) isBroken(src *definition.Source, name string) bool {
	return l.broken[src][name]
}

func (l *loader) errorf(p pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, args...)})
}

// ---- YAML helpers ----

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

// entry is one key: value of a mapping.
type entry struct {
	key  string
	kpos pos
	val  ast.Node // nil when the value is null
}

// mapping returns the entries of the mapping n in file order, reporting and
// dropping duplicate keys. what names n for messages ("feature \"views\""),
// example shows what to write. A null n is an empty mapping; ok is false
// when n is not a mapping.
func (l *loader) mapping(n ast.Node, at pos, what, example string) (entries []entry, ok bool) {
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
		entries = append(entries, entry{key: key, kpos: kpos, val: val})
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
func (l *loader) keys(entries []entry, what string, allowed ...string) map[string]entry {
	m := make(map[string]entry, len(entries))
	for _, e := range entries {
		if !contains(allowed, e.key) {
			sorted := append([]string(nil), allowed...)
			sort.Strings(sorted)
			l.errorf(e.kpos, "unknown key %q in %s (%sallowed: %s)", clip(e.key), what, didYouMean(e.key, allowed), strings.Join(sorted, ", "))
			continue
		}
		m[e.key] = e
	}
	return m
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

// ---- names ----

// IsName reports whether s is a valid name: [a-z_][a-z0-9_]*, at most
// NameMaxLen bytes.
func IsName(s string) bool {
	if s == "" || len(s) > NameMaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// nameLike turns s into a valid name, for suggestions.
func nameLike(s string) string {
	if len(s) > 4*NameMaxLen {
		s = s[:4*NameMaxLen]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || strings.Trim(out, "_") == "" {
		return "my_name"
	}
	if out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	if len(out) > NameMaxLen {
		out = out[:NameMaxLen]
	}
	return out
}

// name checks that s is a valid name.
func (l *loader) name(s string, p pos, what string) bool {
	if IsName(s) {
		return true
	}
	if len(s) > NameMaxLen && IsName(s[:NameMaxLen]) {
		l.errorf(p, "%s %q is too long: a name has at most %d characters", what, clip(s), NameMaxLen)
		return false
	}
	l.errorf(p, "%s %q is not a valid name: use lower-case letters, digits and _, starting with a letter or _ (like %q)", what, clip(s), nameLike(s))
	return false
}

// clip shortens long texts quoted in messages.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:77] + "..."
}

// nameValue reads a scalar that must be a name.
func (l *loader) nameValue(n ast.Node, at pos, what, example string) (string, pos, bool) {
	s, p, ok := l.scalar(n, at, what, example)
	if !ok {
		return "", p, false
	}
	if !l.name(s, p, what) {
		return s, p, false
	}
	return s, p, true
}

// ---- durations ----

var durationUnits = map[byte]time.Duration{
	's': time.Second,
	'm': time.Minute,
	'h': time.Hour,
	'd': 24 * time.Hour,
}

// ParseDuration parses a window length or max_future_skew: a whole number
// followed by one unit, s, m, h or d (90s, 5m, 24h, 7d). It checks the
// syntax only, not the range; "0s" is accepted. The error says what to
// write instead.
func ParseDuration(s string) (time.Duration, error) {
	d, problem := parseDuration(s)
	if problem != "" {
		return 0, errors.New(problem)
	}
	return d, nil
}

// parseDuration returns the duration s spells, or a message saying what to
// write. Lengths too large for a time.Duration return math.MaxInt64.
func parseDuration(s string) (time.Duration, string) {
	d, syntaxOK := scanDuration(s)
	switch {
	case !syntaxOK:
		return 0, "write a whole number followed by s, m, h or d, like " + suggestDuration(s)
	case len(s) > 2 && s[0] == '0':
		return 0, "write the number without leading zeros, like " + strings.TrimLeft(s[:len(s)-1], "0") + s[len(s)-1:]
	}
	return d, ""
}

// scanDuration parses a whole number and a unit, without range checks;
// lengths too large for a time.Duration return math.MaxInt64.
func scanDuration(s string) (time.Duration, bool) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits != len(s)-1 {
		return 0, false
	}
	unit, ok := durationUnits[s[len(s)-1]]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// suggestDuration guesses the duration a badly written one means.
func suggestDuration(s string) string {
	t := strings.ToLower(strings.Join(strings.Fields(s), ""))
	if len(t) > 40 {
		return "24h"
	}
	if d, ok := scanDuration(t); ok && d > 0 && d != math.MaxInt64 {
		return strings.TrimLeft(t[:len(t)-1], "0") + t[len(t)-1:]
	}
	digits := 0
	for digits < len(t) && t[digits] >= '0' && t[digits] <= '9' {
		digits++
	}
	if digits > 0 && digits < 19 {
		n, _ := strconv.ParseInt(t[:digits], 10, 64)
		words := map[string]string{
			"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
			"m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
			"h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
			"d": "d", "day": "d", "days": "d",
		}
		rest := t[digits:]
		if u, ok := words[rest]; ok && n > 0 {
			return strconv.FormatInt(n, 10) + u
		}
		switch rest {
		case "w", "wk", "wks", "week", "weeks":
			if n > 0 && n < 1<<40 {
				return strconv.FormatInt(7*n, 10) + "d"
			}
		}
	}
	if d, err := time.ParseDuration(t); err == nil && d >= time.Second && d%time.Second == 0 {
		return definition.FormatWindow(d)
	}
	return "24h"
}

// window checks one window length; it returns 0 when it is not valid.
func (l *loader) window(n ast.Node, what string) (time.Duration, string) {
	s, p, ok := l.scalar(n, posOf(n), what, "24h")
	if !ok {
		return 0, ""
	}
	d, problem := parseDuration(s)
	switch {
	case problem != "":
		l.errorf(p, "window %q: %s", clip(s), problem)
		return 0, ""
	case d == 0:
		l.errorf(p, "window %q: a window must be at least %s long", s, definition.FormatWindow(definition.WindowMin))
		return 0, ""
	case d < definition.WindowMin:
		l.errorf(p, "window %q is shorter than the shortest window, %s", s, definition.FormatWindow(definition.WindowMin))
		return 0, ""
	case d > definition.WindowMax:
		l.errorf(p, "window %q is longer than the longest window, %s", clip(s), definition.FormatWindow(definition.WindowMax))
		return 0, ""
	}
	return d, s
}

// ---- the project ----

func (l *loader) project(data []byte) *definition.Project {
	f, err := parseYAML(data)
	if err != nil {
		l.syntaxError(err)
		return nil
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		l.errorf(pos{1, 1}, "the file is empty: a project file is a mapping with the keys project, entities, sources, views and services (see docs/definitions.md)")
		return nil
	}
	if len(docs) > 1 {
		l.errorf(posOf(docs[1].Body), "a project file holds one YAML document: remove this second document (and the --- before it), or move it to its own file")
	}
	body := docs[0].Body
	if _, isMap := body.(*ast.MappingNode); !isMap {
		if _, isMV := body.(*ast.MappingValueNode); !isMV {
			l.errorf(posOf(body), "a project file must be a mapping with the keys project, entities, sources, views and services; found %s", describe(body))
			return nil
		}
	}
	entries, ok := l.mapping(body, posOf(body), "the project file", "project: feed")
	if !ok {
		return nil
	}
	top := l.keys(entries, "the project file", "project", "online_store", "entities", "sources", "views", "services")
	start := posOf(body)

	p := &definition.Project{}
	if e, ok := top["project"]; ok {
		if name, _, ok := l.nameValue(e.val, e.kpos, "project name", "feed"); ok {
			p.Name = name
		}
	} else {
		l.errorf(start, "missing key \"project\": name the project, like project: feed")
	}

	if e, ok := top["entities"]; ok {
		l.entities(p, e)
	} else {
		l.errorf(start, "missing key \"entities\": declare the kinds of keys, like entities: {user: {keys: [user_id]}}")
	}
	if e, ok := top["sources"]; ok {
		l.sources(p, e)
	} else {
		l.errorf(start, "missing key \"sources\": declare where events come from, like sources: {engagements: {type: push, event_time: ts, fields: {user_id: int64}}}")
	}
	if e, ok := top["views"]; ok {
		l.views(p, e)
	} else {
		l.errorf(start, "missing key \"views\": declare at least one feature view (see docs/definitions.md)")
	}
	if e, ok := top["services"]; ok {
		l.services(p, e)
	}
	if e, ok := top["online_store"]; ok {
		l.onlineStore(p, e)
	}
	return p
}

// hostPort reads an address (of online_store, or a Kafka broker). In a flow
// list, YAML parses host:7000 as a one-entry mapping; written without spaces
// it is taken as the address. what names the address in messages ("address
// of online_store"), example shows one.
func (l *loader) hostPort(n ast.Node, at pos, what, example string) (string, pos, bool) {
	var mv *ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		if len(m.Values) == 1 {
			mv = m.Values[0]
		}
	case *ast.MappingValueNode:
		mv = m
	}
	if mv != nil {
		if k, ok := mv.Key.(*ast.StringNode); ok && !quoted(k) && mv.Value != nil {
			if tk := mv.Value.GetToken(); tk != nil {
				kp, vp := posOf(k), posOf(mv.Value)
				if kp.line == vp.line && vp.col == kp.col+len(k.Value)+1 {
					return k.Value + ":" + tk.Value, kp, true
				}
			}
		}
		l.errorf(posOf(n), "%s: write host:port with no spaces, like %s", what, example)
		return "", posOf(n), false
	}
	return l.scalar(n, at, what, example)
}

// onlineStore reads online_store: {type: redis, addrs: [host:port, ...]}.
func (l *loader) onlineStore(p *definition.Project, e entry) {
	const example = "{type: redis, addrs: [127.0.0.1:6379]}"
	entries, ok := l.mapping(e.val, e.kpos, "online_store", example)
	if !ok {
		return
	}
	m := l.keys(entries, "online_store", "type", "addrs", "timeout", "max_staleness")
	if te, ok := m["type"]; ok {
		if t, tp, ok := l.scalar(te.val, te.kpos, "type of online_store", "redis"); ok {
			st, ok := definition.ParseStoreType(t)
			if !ok {
				l.errorf(tp, "unknown online_store type %q (%sallowed: %s)", clip(t), didYouMean(t, strings.Split(definition.OnlineStoreTypes, ", ")), definition.OnlineStoreTypes)
				return
			}
			p.OnlineStore.Type = st
		}
	}
	if ae, ok := m["addrs"]; ok {
		items, ok := l.list(ae.val, "addrs of online_store", "[127.0.0.1:6379]")
		if ok {
			for _, it := range items {
				a, ap, ok := l.hostPort(it, ae.kpos, "address of online_store", "127.0.0.1:6379")
				if !ok {
					continue
				}
				if host, port, found := strings.Cut(a, ":"); !found || host == "" || !isIntText(port) {
					l.errorf(ap, "address %q of online_store: write host:port, like 127.0.0.1:6379", clip(a))
					continue
				}
				p.OnlineStore.Addrs = append(p.OnlineStore.Addrs, a)
			}
		}
	}
	for _, k := range []struct {
		key string
		dst *time.Duration
	}{{"timeout", &p.OnlineStore.Timeout}, {"max_staleness", &p.OnlineStore.MaxStaleness}} {
		if de, ok := m[k.key]; ok {
			s, sp, ok := l.scalar(de.val, de.kpos, k.key+" of online_store", "2s")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(s)
			if err != nil || d < time.Millisecond || d > time.Hour {
				l.errorf(sp, "%s %q of online_store: write a duration between 1ms and 1h, like 2s or 500ms", k.key, clip(s))
				continue
			}
			*k.dst = d
		}
	}
	switch {
	case p.OnlineStore.Type == definition.Redis && len(p.OnlineStore.Addrs) == 0:
		l.errorf(e.kpos, "online_store of type redis needs addrs: list the Redis (or Redis Cluster) addresses, like %s", example)
	case p.OnlineStore.Type == definition.Pebble && len(p.OnlineStore.Addrs) > 0:
		l.errorf(e.kpos, "online_store of type pebble is embedded and takes no addrs: remove addrs, or set type: redis")
	}
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

func (l *loader) entities(p *definition.Project, e entry) {
	const example = "{user: {keys: [user_id]}}"
	entries, ok := l.mapping(e.val, e.kpos, "entities", example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(e.kpos, "entities is empty: declare at least one entity, like entities: %s", example)
		return
	}
	for _, ee := range entries {
		l.name(ee.key, ee.kpos, "entity name")
		what := fmt.Sprintf("entity %q", clip(ee.key))
		ent := &definition.Entity{Name: ee.key}
		p.Entities = append(p.Entities, ent)
		fields, ok := l.mapping(ee.val, ee.kpos, what, "{keys: [user_id]}")
		if !ok {
			continue
		}
		m := l.keys(fields, what, "keys")
		ke, ok := m["keys"]
		if !ok {
			l.errorf(ee.kpos, "%s has no keys: add keys: with its key fields, like {keys: [%s_id]}", what, ee.key)
			continue
		}
		items, ok := l.list(ke.val, "keys of "+what, "[user_id]")
		if !ok {
			continue
		}
		if len(items) == 0 {
			l.errorf(ke.kpos, "keys of %s is empty: list at least one key field, like [%s_id]", what, ee.key)
			continue
		}
		seen := map[string]pos{}
		for _, it := range items {
			k, kp, ok := l.nameValue(it, ke.kpos, "key field of "+what, "user_id")
			if !ok {
				continue
			}
			if first, dup := seen[k]; dup {
				l.errorf(kp, "key field %q is listed twice in %s (first at %v): remove one", k, what, first)
				continue
			}
			seen[k] = kp
			ent.Keys = append(ent.Keys, k)
		}
	}
}

// sources reads the sources: mapping. Every source has a type, an event
// time and fields; kafka and nats sources also say where they read from
// (Source.Stream).
func (l *loader) sources(p *definition.Project, e entry) {
	const example = "{engagements: {type: push, event_time: ts, fields: {user_id: int64}}}"
	entries, ok := l.mapping(e.val, e.kpos, "sources", example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(e.kpos, "sources is empty: declare at least one source, like sources: %s", example)
		return
	}
	var streams []streamAt
	for _, se := range entries {
		l.name(se.key, se.kpos, "source name")
		what := fmt.Sprintf("source %q", clip(se.key))
		src := &definition.Source{Name: se.key, MaxFutureSkew: definition.DefaultMaxFutureSkew}
		p.Sources = append(p.Sources, src)
		kv, ok := l.mapping(se.val, se.kpos, what, "{type: push, event_time: ts, fields: {user_id: int64}}")
		if !ok {
			continue
		}
		// The type says which keys the source takes, so it is read first.
		src.Type = l.sourceType(kv, se.kpos, what)
		m := l.sourceKeys(kv, src.Type, what)
		if src.Type.Streaming() {
			at := streamAt{src: src, at: se.kpos}
			src.Stream = l.stream(p, src, m, &at, what)
			streams = append(streams, at)
		}

		var etPos pos
		if ee, ok := m["event_time"]; ok {
			if et, p, ok := l.nameValue(ee.val, ee.kpos, "event_time of "+what, "ts"); ok {
				src.EventTime, etPos = et, p
			}
		} else {
			l.errorf(se.kpos, "%s has no event_time: add event_time: with the name of the event-time field, like event_time: ts", what)
		}

		if me, ok := m["max_future_skew"]; ok {
			if s, sp, ok := l.scalar(me.val, me.kpos, "max_future_skew of "+what, "1m"); ok {
				d, problem := parseDuration(s)
				switch {
				case problem != "":
					l.errorf(sp, "max_future_skew %q: %s", clip(s), problem)
				case d > MaxFutureSkewMax:
					l.errorf(sp, "max_future_skew %q is longer than the maximum, %s", clip(s), definition.FormatWindow(MaxFutureSkewMax))
				default:
					src.MaxFutureSkew = d
				}
			}
		}

		fe, ok := m["fields"]
		if !ok {
			l.errorf(se.kpos, "%s has no fields: add fields: with the event schema, like fields: {user_id: int64, kind: string}", what)
			continue
		}
		fields, ok := l.mapping(fe.val, fe.kpos, "fields of "+what, "{user_id: int64, kind: string}")
		if !ok {
			continue
		}
		if len(fields) == 0 {
			l.errorf(fe.kpos, "fields of %s is empty: declare at least one field, like {user_id: int64}", what)
			continue
		}
		typeNames := strings.Split(event.TypeNames, ", ")
		for _, f := range fields {
			l.name(f.key, f.kpos, "field name")
			if f.key == src.EventTime {
				l.errorf(f.kpos, "field %q is the event_time of %s (%v) and must not also be in fields: remove it from fields (its value becomes the event time)", f.key, what, etPos)
				continue
			}
			fwhat := fmt.Sprintf("type of field %q of %s", f.key, what)
			tn, tp, ok := l.scalar(f.val, f.kpos, fwhat, "int64")
			if !ok {
				l.markBroken(src, f.key)
				continue
			}
			t, ok := event.ParseType(tn)
			if !ok {
				l.errorf(tp, "unknown type %q of field %q in %s (%sallowed: %s)", clip(tn), f.key, what, didYouMean(tn, typeNames, typeAliases), event.TypeNames)
				l.markBroken(src, f.key)
				continue
			}
			src.Fields = append(src.Fields, definition.Field{Name: f.key, Type: t})
		}
	}
	l.checkStreams(streams)
}

// ---- source types and streaming sources ----

// MaxMessageBytesMax bounds max_message_bytes.
const MaxMessageBytesMax = 64 << 20

const (
	// kafkaTopicMaxLen is the longest Kafka topic name.
	kafkaTopicMaxLen = 249
	// natsNameMaxLen is the longest JetStream stream or consumer name, and
	// the longest consumer group name Kiln accepts.
	natsNameMaxLen = 255
)

// The keys of a source, by the types that take them.
var (
	pushSourceKeys   = []string{"type", "event_time", "max_future_skew", "fields"}
	kafkaOnlyKeys    = []string{"brokers", "topic", "group"}
	natsOnlyKeys     = []string{"url", "stream", "subject", "durable"}
	streamSourceKeys = []string{"format", "start", "max_message_bytes", "dead_letter", "session_timeout"}

	// kafkaEquivalent and natsEquivalent name the key of one streaming
	// type that does the job of a key of the other.
	kafkaEquivalent = map[string]string{"url": "brokers", "stream": "topic", "subject": "topic", "durable": "group"}
	natsEquivalent  = map[string]string{"brokers": "url", "topic": "stream (or subject)", "group": "durable"}
)

var sourceTypeAliases = map[string]string{
	"http": "push", "api": "push", "jetstream": "nats", "nats_jetstream": "nats", "redpanda": "kafka",
}

var startAliases = map[string]string{
	"beginning": "earliest", "oldest": "earliest", "first": "earliest", "smallest": "earliest", "all": "earliest",
	"end": "latest", "newest": "latest", "last": "latest", "largest": "latest", "now": "latest", "new": "latest",
}

// sourceType reads the type of a source: push, kafka or nats, or 0 when it
// is missing or not one of these (reported here).
func (l *loader) sourceType(kv []entry, at pos, what string) definition.SourceType {
	for _, e := range kv {
		if e.key != "type" {
			continue
		}
		t, tp, ok := l.scalar(e.val, e.kpos, "type of "+what, "push")
		if !ok {
			return 0
		}
		if st, ok := definition.ParseSourceType(t); ok {
			return st
		}
		l.errorf(tp, "unknown type %q of %s (%sallowed: %s)", clip(t), what, didYouMean(t, strings.Split(definition.SourceTypes, ", "), sourceTypeAliases), definition.SourceTypes)
		return 0
	}
	// Guess the type from the keys the source has.
	kafka, nats, stream := false, false, false
	for _, e := range kv {
		kafka = kafka || contains(kafkaOnlyKeys, e.key)
		nats = nats || contains(natsOnlyKeys, e.key)
		stream = stream || contains(streamSourceKeys, e.key)
	}
	switch {
	case kafka && !nats:
		l.errorf(at, "%s has no type: add type: kafka", what)
	case nats && !kafka:
		l.errorf(at, "%s has no type: add type: nats", what)
	case kafka || nats || stream:
		l.errorf(at, "%s has no type: add type: kafka or type: nats", what)
	default:
		l.errorf(at, "%s has no type: add type: push", what)
	}
	return 0
}

// sourceKeys checks the keys of a source of type typ and returns them by
// key. A key of another type says which type takes it; when typ is 0
// (missing or unknown) the keys of every type are accepted.
func (l *loader) sourceKeys(kv []entry, typ definition.SourceType, what string) map[string]entry {
	var allowed []string
	switch typ {
	case definition.Push:
		allowed = pushSourceKeys
	case definition.Kafka:
		allowed = concat(pushSourceKeys, kafkaOnlyKeys, streamSourceKeys)
	case definition.NATS:
		allowed = concat(pushSourceKeys, natsOnlyKeys, streamSourceKeys)
	default:
		return l.keys(kv, what, concat(pushSourceKeys, kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)...)
	}
	m := make(map[string]entry, len(kv))
	for _, e := range kv {
		k := e.key
		switch {
		case contains(allowed, k):
			m[k] = e
		case typ == definition.Push && contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type push: remove it, or set type: kafka", k, what)
		case typ == definition.Push && contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type push: remove it, or set type: nats", k, what)
		case typ == definition.Push && contains(streamSourceKeys, k):
			l.errorf(e.kpos, "key %q is for kafka and nats sources, but %s has type push (its events arrive through the push API): remove it, or set type: kafka or type: nats", k, what)
		case typ == definition.Kafka && contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type kafka: use %s instead (or set type: nats)", k, what, kafkaEquivalent[k])
		case typ == definition.NATS && contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type nats: use %s instead (or set type: kafka)", k, what, natsEquivalent[k])
		default:
			// A typo of a key of another type says so.
			if c := closest(k, concat(kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)); c != "" && c != closest(k, allowed) && !contains(allowed, c) {
				sorted := append([]string(nil), allowed...)
				sort.Strings(sorted)
				l.errorf(e.kpos, "unknown key %q in %s (did you mean %q? it is a key of %s sources; allowed for type %s: %s)", clip(k), what, c, streamTypesOf(c), typ, strings.Join(sorted, ", "))
				continue
			}
			l.keys([]entry{e}, what, allowed...)
		}
	}
	return m
}

// streamTypesOf names the source types that take a streaming key.
func streamTypesOf(key string) string {
	switch {
	case contains(kafkaOnlyKeys, key):
		return "kafka"
	case contains(natsOnlyKeys, key):
		return "nats"
	}
	return "kafka and nats"
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// streamAt remembers where a streaming source is declared, for the checks
// across sources.
type streamAt struct {
	src *definition.Source
	// at is the source's name; consumerAt its group or durable (at when
	// defaulted); fileAt its dead_letter file (at when defaulted).
	at, consumerAt, fileAt pos
}

// stream reads the keys of a kafka or nats source.
func (l *loader) stream(p *definition.Project, src *definition.Source, m map[string]entry, at *streamAt, what string) *definition.Stream {
	st := &definition.Stream{Format: "json", Start: "earliest", MaxMessageBytes: definition.DefaultMaxMessageBytes}
	at.consumerAt, at.fileAt = at.at, at.at
	consumer := "kiln-" + p.Name + "-" + src.Name
	if src.Type == definition.Kafka {
		st.Group = consumer
		l.kafkaSource(src, st, m, at, what)
	} else {
		st.Durable = consumer
		l.natsSource(src, st, m, at, what)
	}

	if fe, ok := m["format"]; ok {
		if f, fp, ok := l.scalar(fe.val, fe.kpos, "format of "+what, "json"); ok && f != "json" {
			l.errorf(fp, "unknown format %q of %s (%sallowed: json, one event object per message): write format: json, or leave format out", clip(f), what, didYouMean(f, []string{"json"}))
		}
	}
	if se, ok := m["session_timeout"]; ok {
		if v, vp, ok := l.scalar(se.val, se.kpos, "session_timeout of "+what, "10s"); ok {
			d, problem := parseDuration(v)
			switch {
			case problem != "":
				l.errorf(vp, "session_timeout %q of %s: %s", clip(v), what, problem)
			case d < time.Second || d > 30*time.Minute:
				l.errorf(vp, "session_timeout %q of %s is out of range: give 1s to 30m (Kafka brokers usually allow 6s to 30m), or leave it out for the default (45s for kafka, 10s for nats)", clip(v), what)
			default:
				st.SessionTimeout = d
			}
		}
	}
	if se, ok := m["start"]; ok {
		if s, sp, ok := l.scalar(se.val, se.kpos, "start of "+what, "earliest"); ok {
			switch s {
			case "earliest", "latest":
				st.Start = s
			default:
				holder := "topic"
				if src.Type == definition.NATS {
					holder = "stream"
				}
				l.errorf(sp, "unknown start %q of %s (%sallowed: earliest, to read all the %s still holds, or latest, to read only what arrives after Kiln starts)", clip(s), what, didYouMean(s, []string{"earliest", "latest"}, startAliases), holder)
			}
		}
	}
	if me, ok := m["max_message_bytes"]; ok {
		if n, ok := l.maxMessageBytes(me, what); ok {
			st.MaxMessageBytes = n
		}
	}
	if de, ok := m["dead_letter"]; ok {
		l.deadLetter(src, st, de, at, what)
	}
	return st
}

func (l *loader) kafkaSource(src *definition.Source, st *definition.Stream, m map[string]entry, at *streamAt, what string) {
	if be, ok := m["brokers"]; ok {
		l.brokers(st, be, what)
	} else {
		l.errorf(at.at, "%s of type kafka has no brokers: add brokers: with the host:port of some of the Kafka brokers, like brokers: [kafka-1:9092]", what)
	}
	if te, ok := m["topic"]; ok {
		if t, tp, ok := l.scalar(te.val, te.kpos, "topic of "+what, topicLike(src.Name)); ok && l.kafkaTopic(t, tp, "topic", what) {
			st.Topic = t
		}
	} else {
		l.errorf(at.at, "%s of type kafka has no topic: add topic: with the Kafka topic to read, like topic: %s", what, topicLike(src.Name))
	}
	if ge, ok := m["group"]; ok {
		if g, gp, ok := l.scalar(ge.val, ge.kpos, "group of "+what, st.Group); ok {
			if problem := groupProblem(g); problem != "" {
				l.errorf(gp, "group %q of %s: %s: %s, or leave group out for the default, %s", clip(g), what, problem,
					nameFix(g, groupLike(g), natsNameMaxLen), st.Group)
			} else {
				st.Group, at.consumerAt = g, gp
			}
		}
	}
}

// brokers reads the seed brokers of a kafka source.
func (l *loader) brokers(st *definition.Stream, be entry, what string) {
	const example = "[kafka-1:9092, kafka-2:9092]"
	items, ok := l.list(be.val, "brokers of "+what, example)
	if !ok {
		return
	}
	if len(items) == 0 {
		l.errorf(be.kpos, "brokers of %s is empty: list the host:port of at least one Kafka broker, like brokers: %s", what, example)
		return
	}
	seen := map[string]pos{}
	for _, it := range items {
		a, ap, ok := l.hostPort(it, be.kpos, "broker of "+what, "kafka-1:9092")
		if !ok {
			continue
		}
		if !validHostPort(a) {
			l.errorf(ap, "broker %q of %s: write host:port, like %s", clip(a), what, suggestHostPort(a, "9092"))
			continue
		}
		if first, dup := seen[a]; dup {
			l.errorf(ap, "broker %q is listed twice in %s (first at %v): remove one", a, what, first)
			continue
		}
		seen[a] = ap
		st.Brokers = append(st.Brokers, a)
	}
}

// validHostPort reports whether a is host:port with a port from 1 to 65535.
func validHostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/@") || !isIntText(port) || port[0] == '+' || port[0] == '-' {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// suggestHostPort guesses the host:port a bad address means.
func suggestHostPort(a, defaultPort string) string {
	host := a
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.TrimRight(host, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[:i], ":") {
		host = host[:i]
	}
	host = strings.Trim(host, "[]")
	if host == "" || strings.ContainsAny(host, " \t/@") || len(host) > 80 {
		host = "kafka-1"
	}
	return net.JoinHostPort(host, defaultPort)
}

func topicChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// kafkaTopic checks a Kafka topic name; key is "topic" or "dead_letter
// topic", for messages.
func (l *loader) kafkaTopic(t string, p pos, key, what string) bool {
	if problem := topicProblem(t); problem != "" {
		l.errorf(p, "%s %q of %s: %s: %s", key, clip(t), what, problem, nameFix(t, topicLike(t), kafkaTopicMaxLen))
		return false
	}
	return true
}

// nameFix is the advice for a bad name s: a valid name like it, or to
// shorten it when it is longer than maxLen.
func nameFix(s, like string, maxLen int) string {
	if len(s) > maxLen {
		return "shorten it"
	}
	return fmt.Sprintf("write it like %q", like)
}

// topicProblem says what is wrong with a Kafka topic name, or "".
func topicProblem(t string) string {
	problem := ""
	switch {
	case t == "":
		problem = "a Kafka topic name cannot be empty"
	case len(t) > kafkaTopicMaxLen:
		problem = fmt.Sprintf("a Kafka topic name has at most %d characters", kafkaTopicMaxLen)
	case t == "." || t == "..":
		problem = "a Kafka topic name cannot be . or .."
	default:
		for _, r := range t {
			if !topicChar(r) {
				problem = fmt.Sprintf("a Kafka topic name has only letters, digits, '.', '_' and '-', not %q", string(r))
				break
			}
		}
	}
	return problem
}

// topicLike turns s into a valid Kafka topic name, for suggestions.
func topicLike(s string) string {
	out := replaceRunes(s, func(r rune) bool { return !topicChar(r) }, '_', kafkaTopicMaxLen)
	if strings.Trim(out, "._") == "" {
		return "events"
	}
	return out
}

// groupProblem says what is wrong with a Kafka consumer group name, or "".
func groupProblem(g string) string {
	if g == "" {
		return "a consumer group name cannot be empty"
	}
	if len(g) > natsNameMaxLen {
		return fmt.Sprintf("a consumer group name has at most %d characters", natsNameMaxLen)
	}
	for _, r := range g {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "a consumer group name has no spaces or control characters"
		}
	}
	return ""
}

func groupLike(g string) string {
	out := replaceRunes(g, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }, '-', natsNameMaxLen)
	if strings.Trim(out, "-") == "" {
		return "kiln-consumers"
	}
	return out
}

// replaceRunes replaces the runes of s that bad reports with with, and cuts
// the result to max bytes.
func replaceRunes(s string, bad func(rune) bool, with rune, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if bad(r) {
			r = with
		}
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > max {
		out = out[:max]
	}
	return out
}

func (l *loader) natsSource(src *definition.Source, st *definition.Stream, m map[string]entry, at *streamAt, what string) {
	if ue, ok := m["url"]; ok {
		if u, up, ok := l.scalar(ue.val, ue.kpos, "url of "+what, "nats://127.0.0.1:4222"); ok {
			if shown, suggestion, ok := checkNATSURL(u); ok {
				st.URL = u
			} else {
				l.errorf(up, "url %q of %s: write nats://host:port, like %s", clip(shown), what, suggestion)
			}
		}
	} else {
		l.errorf(at.at, "%s of type nats has no url: add url: with the NATS server, like url: nats://127.0.0.1:4222", what)
	}
	streamExample := strings.ToUpper(natsNameLike(src.Name))
	if se, ok := m["stream"]; ok {
		if s, sp, ok := l.scalar(se.val, se.kpos, "stream of "+what, streamExample); ok && l.natsName(s, sp, "stream", what) {
			st.Name = s
		}
	} else {
		l.errorf(at.at, "%s of type nats has no stream: add stream: with the name of the JetStream stream to read, like stream: %s", what, streamExample)
	}
	if se, ok := m["subject"]; ok {
		if s, sp, ok := l.subjectValue(se.val, se.kpos, "subject of "+what); ok {
			if problem := subjectProblem(s, true); problem != "" {
				l.errorf(sp, "subject %q of %s: %s", clip(s), what, problem)
			} else {
				st.Subject = s
			}
		}
	}
	if de, ok := m["durable"]; ok {
		if d, dp, ok := l.scalar(de.val, de.kpos, "durable of "+what, st.Durable); ok && l.natsName(d, dp, "durable", what) {
			st.Durable, at.consumerAt = d, dp
		}
	}
}

// checkNATSURL checks a NATS server URL. When it is not valid it returns
// the URL to show in a message (without a password) and one to write.
func checkNATSURL(s string) (shown, suggestion string, ok bool) {
	rest, hasScheme := strings.CutPrefix(s, "nats://")
	if !hasScheme {
		if i := strings.Index(s, "://"); i >= 0 {
			rest = s[i+3:]
		}
	}
	shown = s
	u, err := url.Parse("nats://" + rest)
	if err != nil {
		return shown, "nats://127.0.0.1:4222", false
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			shown = u.Redacted()
		}
	}
	port := u.Port()
	portOK := isIntText(port) && port[0] != '+' && port[0] != '-'
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		portOK = false
	}
	host := u.Hostname()
	if hasScheme && host != "" && portOK && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery && !strings.ContainsAny(host, " \t") {
		return "", "", true
	}
	if host == "" || strings.ContainsAny(host, " \t/") || len(host) > 80 {
		host = "127.0.0.1"
	}
	if !portOK {
		port = "4222"
	}
	return shown, "nats://" + net.JoinHostPort(host, port), false
}

func badNATSNameRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/\\", r)
}

// natsName checks the name of a JetStream stream or durable consumer; key
// is "stream" or "durable", for messages.
func (l *loader) natsName(s string, p pos, key, what string) bool {
	if problem := natsNameProblem(s); problem != "" {
		l.errorf(p, "%s %q of %s: %s: %s", key, clip(s), what, problem, nameFix(s, natsNameLike(s), natsNameMaxLen))
		return false
	}
	return true
}

// natsNameProblem says what is wrong with a JetStream stream or consumer
// name, or "".
func natsNameProblem(s string) string {
	problem := ""
	switch {
	case s == "":
		problem = "a JetStream name cannot be empty"
	case len(s) > natsNameMaxLen:
		problem = fmt.Sprintf("a JetStream name has at most %d characters", natsNameMaxLen)
	default:
		for _, r := range s {
			if badNATSNameRune(r) {
				problem = fmt.Sprintf("a JetStream name has no spaces, '.', '*', '>', '/' or '\\', and %q is one", string(r))
				break
			}
		}
	}
	return problem
}

func natsNameLike(s string) string {
	out := replaceRunes(s, badNATSNameRune, '_', natsNameMaxLen)
	if strings.Trim(out, "_") == "" {
		return "EVENTS"
	}
	return out
}

// subjectValue reads a NATS subject, explaining the quotes a subject that
// starts with * or > needs in YAML.
func (l *loader) subjectValue(n ast.Node, at pos, what string) (string, pos, bool) {
	switch n.(type) {
	case *ast.AliasNode:
		l.errorf(posOf(n), "%s: YAML reads a value that starts with * as an alias: quote the subject, like \"*.engagements\"", what)
		return "", posOf(n), false
	case *ast.LiteralNode:
		l.errorf(posOf(n), "%s: YAML reads a value that starts with > or | as a block of text: quote the subject, like \">\"", what)
		return "", posOf(n), false
	}
	return l.scalar(n, at, what, "engagements.>")
}

// subjectProblem says what is wrong with a NATS subject, or "". A filter
// subject may hold the wildcards * (one token) and > (the rest); a subject
// to publish to may not.
func subjectProblem(s string, wildcards bool) string {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "a subject has no spaces or control characters"
		}
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return "a subject is tokens separated by single dots, like engagements.web: no empty token, leading, trailing or double dot"
		case !strings.ContainsAny(t, "*>"):
		case !wildcards:
			return "dead letters are published to this subject, so it cannot hold the wildcards * or >: write a plain subject, like engagements.dead"
		case t == "*":
		case t == ">" && i == len(tokens)-1:
		case t == ">":
			return "> matches the rest of a subject and must be its last token, like engagements.>"
		default:
			return "a wildcard is a whole token: write engagements.* or engagements.>, not engagements*"
		}
	}
	return ""
}

// subjectMatches reports whether subject (without wildcards) matches the
// filter subject filter.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || t != "*" && t != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// maxMessageBytes reads max_message_bytes: a whole number of bytes, or a
// whole number followed by KiB or MiB.
func (l *loader) maxMessageBytes(me entry, what string) (int, bool) {
	s, sp, ok := l.scalar(me.val, me.kpos, "max_message_bytes of "+what, "1MiB")
	if !ok {
		return 0, false
	}
	n, syntaxOK := parseByteSize(s)
	switch {
	case strings.HasPrefix(s, "-") || syntaxOK && n == 0:
		l.errorf(sp, "max_message_bytes %q of %s must be positive: write the size of the largest message to accept, like 1MiB", clip(s), what)
	case !syntaxOK:
		l.errorf(sp, "max_message_bytes %q of %s: write a whole number of bytes, or a whole number followed by KiB or MiB, like %s", clip(s), what, suggestByteSize(s))
	case n > MaxMessageBytesMax:
		l.errorf(sp, "max_message_bytes %q of %s is more than the maximum, %s", clip(s), what, formatByteSize(MaxMessageBytesMax))
	default:
		return int(n), true
	}
	return 0, false
}

var byteUnits = map[string]int64{"": 1, "KiB": 1 << 10, "MiB": 1 << 20}

// parseByteSize parses a whole number of bytes, optionally followed by KiB
// or MiB. Sizes too large for an int64 return math.MaxInt64.
func parseByteSize(s string) (int64, bool) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	unit, ok := byteUnits[s[digits:]]
	if digits == 0 || !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return math.MaxInt64, true
	}
	return n * unit, true
}

// suggestByteSize guesses the size a badly written one means.
func suggestByteSize(s string) string {
	t := strings.ToLower(strings.ReplaceAll(strings.Join(strings.Fields(s), ""), "_", ""))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	f, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || f <= 0 || f > 1<<40 {
		return "1MiB"
	}
	unit := map[string]float64{
		"": 1, "b": 1, "byte": 1, "bytes": 1,
		"k": 1 << 10, "kb": 1 << 10, "ki": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mi": 1 << 20, "mib": 1 << 20,
	}
	u, ok := unit[t[i:]]
	if !ok {
		return "1MiB"
	}
	n := int64(f * u)
	if n > MaxMessageBytesMax {
		return formatByteSize(MaxMessageBytesMax)
	}
	if n < 1 {
		return "1MiB"
	}
	return formatByteSize(n)
}

// formatByteSize writes a size in the largest of MiB, KiB and bytes that
// divides it exactly.
func formatByteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// deadLetter reads dead_letter: exactly one of topic: (kafka), subject:
// (nats) or file:.
func (l *loader) deadLetter(src *definition.Source, st *definition.Stream, de entry, at *streamAt, what string) {
	dwhat := "dead_letter of " + what
	place, example := "topic", "{topic: "+topicLike(src.Name+"-dead")+"}"
	if src.Type == definition.NATS {
		place, example = "subject", "{subject: "+topicLike(src.Name+".dead")+"}"
	}
	entries, ok := l.mapping(de.val, de.kpos, dwhat, example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(de.kpos, "%s is empty: write one of %s: or file:, like dead_letter: %s, or remove dead_letter for the default file, dead-letter/%s.jsonl under the server's --data directory", dwhat, place, example, src.Name)
		return
	}
	var first *entry
	for i := range entries {
		e := &entries[i]
		switch {
		case e.key == "file" || e.key == place:
		case e.key == "subject":
			l.errorf(e.kpos, "key \"subject\" of %s is for nats sources: a kafka source sends its dead letters to a topic: or a file:", dwhat)
			continue
		case e.key == "topic":
			l.errorf(e.kpos, "key \"topic\" of %s is for kafka sources: a nats source sends its dead letters to a subject: or a file:", dwhat)
			continue
		default:
			l.keys([]entry{*e}, dwhat, place, "file")
			continue
		}
		if first != nil {
			l.errorf(e.kpos, "%s has both %s and %s: keep one of them (dead letters go to one place)", dwhat, first.key, e.key)
			continue
		}
		first = e
	}
	if first == nil {
		return
	}
	e := *first
	switch e.key {
	case "topic":
		t, tp, ok := l.scalar(e.val, e.kpos, "dead_letter topic of "+what, topicLike(src.Name+"-dead"))
		if !ok || !l.kafkaTopic(t, tp, "dead_letter topic", what) {
			return
		}
		if t == st.Topic {
			l.errorf(tp, "dead_letter topic %q of %s is the topic it reads: its dead letters would be read again; use another topic, like %s", clip(t), what, topicLike(t+"-dead"))
			return
		}
		st.DeadLetter.Topic = t
	case "subject":
		s, sp, ok := l.subjectValue(e.val, e.kpos, "dead_letter subject of "+what)
		if !ok {
			return
		}
		if problem := subjectProblem(s, false); problem != "" {
			l.errorf(sp, "dead_letter subject %q of %s: %s", clip(s), what, problem)
			return
		}
		if st.Subject != "" && subjectMatches(st.Subject, s) {
			l.errorf(sp, "dead_letter subject %q of %s matches its filter subject %q: its dead letters would be read again; use a subject the stream does not hold, or a file:", clip(s), what, st.Subject)
			return
		}
		st.DeadLetter.Subject = s
	case "file":
		f, fp, ok := l.scalar(e.val, e.kpos, "dead_letter file of "+what, "dead-letter/"+src.Name+".jsonl")
		if !ok {
			return
		}
		if strings.ContainsRune(f, 0) || strings.HasSuffix(f, "/") || filepath.Clean(f) == "." || filepath.Base(filepath.Clean(f)) == ".." {
			l.errorf(fp, "dead_letter file %q of %s is not a file name: write the path of a file, like dead-letter/%s.jsonl", clip(f), what, src.Name)
			return
		}
		st.DeadLetter.File, at.fileAt = f, fp
	}
}

// checkStreams checks what streaming sources must not share: a Kafka
// consumer group on one topic, a durable consumer on one stream, a
// dead-letter file written out.
func (l *loader) checkStreams(streams []streamAt) {
	consumers := map[string]streamAt{}
	files := map[string]streamAt{}
	for _, s := range streams {
		st := s.src.Stream
		key := ""
		switch {
		case s.src.Type == definition.Kafka && st.Topic != "":
			key = "kafka\x00" + st.Topic + "\x00" + st.Group
		case s.src.Type == definition.NATS && st.Name != "":
			key = "nats\x00" + st.Name + "\x00" + st.Durable
		}
		if first, dup := consumers[key]; key != "" && dup {
			if s.src.Type == definition.Kafka {
				l.errorf(s.consumerAt, "source %q reads topic %q in consumer group %q, as source %q does (%v): the two would share the topic's partitions and each see only part of its events; set another group: for one of them", s.src.Name, st.Topic, st.Group, first.src.Name, first.at)
			} else {
				l.errorf(s.consumerAt, "source %q reads stream %q with durable consumer %q, as source %q does (%v): the two would share its messages and each see only part of them; set another durable: for one of them", s.src.Name, st.Name, st.Durable, first.src.Name, first.at)
			}
		} else if key != "" {
			consumers[key] = s
		}
		// A relative file is relative to the server's working directory, and
		// the default files are under its data directory: only files written
		// out are compared.
		if f := st.DeadLetter.File; f != "" {
			f = filepath.Clean(f)
			if first, dup := files[f]; dup {
				l.errorf(s.fileAt, "dead_letter file %q of source %q is also the dead_letter file of source %q (%v): give each source its own file", clip(st.DeadLetter.File), s.src.Name, first.src.Name, first.fileAt)
			} else {
				files[f] = s
			}
		}
	}
}

func (l *loader) markBroken(src *definition.Source, name string) {
	if l.broken == nil {
		l.broken = map[*definition.Source]map[string]bool{}
	}
	if l.broken[src] == nil {
		l.broken[src] = map[string]bool{}
	}
	l.broken[src][name] = true
}

var typeAliases = map[string]string{
	"int": "int64", "integer": "int64", "long": "int64", "int32": "int64", "uint64": "int64",
	"float": "float64", "double": "float64", "number": "float64", "float32": "float64", "decimal": "float64",
	"str": "string", "text": "string", "varchar": "string",
	"boolean": "bool",
}

var aggAliases = map[string]string{
	"avg": "mean", "average": "mean", "cnt": "count", "total": "sum",
	"latest": "last", "minimum": "min", "maximum": "max",
}

// resolve finds a declared name; it reports an error listing the declared
// ones when there is none.
func (l *loader) resolve(kind, name string, p pos, defined []string) bool {
	if contains(defined, name) {
		return true
	}
	if len(defined) == 0 {
		l.errorf(p, "%s %q is not defined (no %ss are defined)", kind, clip(name), kind)
		return false
	}
	l.errorf(p, "%s %q is not defined (%sdefined: %s)", kind, clip(name), didYouMean(name, defined), strings.Join(defined, ", "))
	return false
}

func (l *loader) views(p *definition.Project, e entry) {
	const example = "{user_engagement: {entity: user, source: engagements, features: {views: {agg: count, windows: [1h]}}}}"
	entries, ok := l.mapping(e.val, e.kpos, "views", example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(e.kpos, "views is empty: declare at least one feature view, like views: %s", example)
		return
	}
	var entityNames, sourceNames []string
	for _, ent := range p.Entities {
		entityNames = append(entityNames, ent.Name)
	}
	for _, src := range p.Sources {
		sourceNames = append(sourceNames, src.Name)
	}
	for _, ve := range entries {
		l.name(ve.key, ve.kpos, "view name")
		what := fmt.Sprintf("view %q", clip(ve.key))
		v := &definition.View{Name: ve.key}
		p.Views = append(p.Views, v)
		kv, ok := l.mapping(ve.val, ve.kpos, what, "{entity: user, source: engagements, features: {...}}")
		if !ok {
			continue
		}
		m := l.keys(kv, what, "entity", "source", "features")

		var entityPos pos
		if ee, ok := m["entity"]; ok {
			if name, np, ok := l.scalar(ee.val, ee.kpos, "entity of "+what, "user"); ok {
				entityPos = np
				if l.resolve("entity", name, np, entityNames) {
					v.Entity = p.Entity(name)
				}
			}
		} else {
			l.errorf(ve.kpos, "%s has no entity: add entity: with one of the entities (%s)", what, orNone(entityNames))
		}
		if se, ok := m["source"]; ok {
			if name, np, ok := l.scalar(se.val, se.kpos, "source of "+what, "engagements"); ok {
				if l.resolve("source", name, np, sourceNames) {
					v.Source = p.Source(name)
				}
			}
		} else {
			l.errorf(ve.kpos, "%s has no source: add source: with one of the sources (%s)", what, orNone(sourceNames))
		}
		if v.Entity != nil && v.Source != nil {
			l.checkKeys(v, entityPos)
		}

		fe, ok := m["features"]
		if !ok {
			l.errorf(ve.kpos, "%s has no features: add features:, like features: {views: {agg: count, windows: [1h, 24h]}}", what)
			continue
		}
		features, ok := l.mapping(fe.val, fe.kpos, "features of "+what, "{views: {agg: count, windows: [1h, 24h]}}")
		if !ok {
			continue
		}
		if len(features) == 0 {
			l.errorf(fe.kpos, "features of %s is empty: declare at least one feature, like {views: {agg: count, windows: [1h, 24h]}}", what)
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

func (l *loader) feature(v *definition.View, fe entry) *definition.Feature {
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
	var names []string
	for _, f := range src.Fields {
		names = append(names, f.Name)
	}
	return names
}

func (l *loader) windows(feat *definition.Feature, we entry, what string) {
	items, ok := l.list(we.val, "windows of "+what, "[1h, 24h]")
	if !ok {
		return
	}
	if len(items) == 0 {
		l.errorf(we.kpos, "windows of %s is empty: list at least one window, like [1h, 24h], or remove windows for an all-time feature", what)
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

func (l *loader) where(feat *definition.Feature, src *definition.Source, we entry, what string) {
	const example = "{kind: view} or {kind: [like, share]}"
	entries, ok := l.mapping(we.val, we.kpos, "where of "+what, example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(we.kpos, "where of %s is empty: add field: value, like where: %s, or remove where", what, example)
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

func isIntText(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (l *loader) services(p *definition.Project, e entry) {
	entries, ok := l.mapping(e.val, e.kpos, "services", "{user_profile: {views: [user_engagement]}}")
	if !ok {
		return
	}
	var viewNames []string
	for _, v := range p.Views {
		viewNames = append(viewNames, v.Name)
	}
	for _, se := range entries {
		l.name(se.key, se.kpos, "service name")
		what := fmt.Sprintf("service %q", clip(se.key))
		svc := &definition.Service{Name: se.key}
		p.Services = append(p.Services, svc)
		kv, ok := l.mapping(se.val, se.kpos, what, "{views: [user_engagement]}")
		if !ok {
			continue
		}
		// served name -> where it was added
		added := map[string]string{}
		listed := 0
		for _, ke := range kv {
			switch ke.key {
			case "views":
				items, ok := l.list(ke.val, "views of "+what, "[user_engagement]")
				if !ok {
					continue
				}
				listed += len(items)
				seenView := map[string]pos{}
				for _, it := range items {
					name, np, ok := l.scalar(it, ke.kpos, "view of "+what, "user_engagement")
					if !ok || !l.resolve("view", name, np, viewNames) {
						continue
					}
					if first, dup := seenView[name]; dup {
						l.errorf(np, "view %q is listed twice in %s (first at %v): remove one", name, what, first)
						continue
					}
					seenView[name] = np
					for _, ref := range p.View(name).Outputs() {
						l.addRef(svc, ref, added, np, fmt.Sprintf("via view %q at %v", name, np), what)
					}
				}
			case "features":
				items, ok := l.list(ke.val, "features of "+what, "[user_engagement:views_1h]")
				if !ok {
					continue
				}
				listed += len(items)
				for _, it := range items {
					text, np, ok := l.servedName(it, ke.kpos, what)
					if !ok {
						continue
					}
					ref, ok := l.findServed(p, viewNames, text, np, what)
					if !ok {
						continue
					}
					l.addRef(svc, ref, added, np, "at "+np.String(), what)
				}
			default:
				l.errorf(ke.kpos, "unknown key %q in %s (%sallowed: features, views)", clip(ke.key), what, didYouMean(ke.key, []string{"features", "views"}))
			}
		}
		if listed == 0 {
			l.errorf(se.kpos, "%s lists no features: add views: [a view] to serve all of a view, or features: [view:feature_window]", what)
		}
	}
}

// addRef adds ref to svc unless it is already there.
func (l *loader) addRef(svc *definition.Service, ref definition.FeatureRef, added map[string]string, p pos, from, what string) {
	name := ref.Name()
	if first, dup := added[name]; dup {
		l.errorf(p, "feature %q is listed twice in %s (first %s): remove one", name, what, first)
		return
	}
	added[name] = from
	svc.Features = append(svc.Features, ref)
}

// servedName reads a served name from a services features list. The YAML
// parser reads view:feature in a flow list as a one-entry mapping; accept it
// when it is written with no space around the colon.
func (l *loader) servedName(n ast.Node, at pos, what string) (string, pos, bool) {
	var mv *ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		if len(m.Values) == 1 {
			mv = m.Values[0]
		}
	case *ast.MappingValueNode:
		mv = m
	}
	if mv != nil {
		k, kok := mv.Key.(*ast.StringNode)
		v, vok := mv.Value.(*ast.StringNode)
		if kok && vok && !quoted(k) && !quoted(v) {
			kp, vp := posOf(k), posOf(v)
			if kp.line == vp.line && vp.col == kp.col+len(k.Value)+1 {
				return k.Value + ":" + v.Value, kp, true
			}
		}
		l.errorf(posOf(n), "features of %s: write each served name as view:feature_window with no spaces, like user_engagement:views_1h", what)
		return "", posOf(n), false
	}
	return l.scalar(n, at, "feature of "+what, "user_engagement:views_1h")
}

// findServed resolves a served name "view:feature[_window]".
func (l *loader) findServed(p *definition.Project, viewNames []string, text string, np pos, what string) (definition.FeatureRef, bool) {
	viewName, short, ok := strings.Cut(text, ":")
	if !ok {
		var matches []string
		for _, v := range p.Views {
			for _, ref := range v.Outputs() {
				if ref.Name() == v.Name+":"+text {
					matches = append(matches, ref.Name())
				}
			}
		}
		hint := "like user_engagement:views_1h"
		if len(matches) > 0 {
			hint = "like " + strings.Join(matches, " or ")
		}
		l.errorf(np, "feature %q in %s: write view:feature_window, %s", clip(text), what, hint)
		return definition.FeatureRef{}, false
	}
	if !contains(viewNames, viewName) {
		l.errorf(np, "feature %q in %s: view %q is not defined (%sdefined: %s)", clip(text), what, clip(viewName), didYouMean(viewName, viewNames), orNone(viewNames))
		return definition.FeatureRef{}, false
	}
	v := p.View(viewName)
	var shorts []string
	for _, ref := range v.Outputs() {
		if ref.Name() == text {
			return ref, true
		}
		shorts = append(shorts, strings.TrimPrefix(ref.Name(), viewName+":"))
	}
	hint := ""
	if s := didYouMean(short, shorts); s != "" {
		hint = strings.Replace(s, `"`, `"`+viewName+":", 1)
	}
	l.errorf(np, "feature %q in %s: view %q serves no %q (%sits served names: %s)", clip(text), what, viewName, clip(short), hint, orNone(shorts))
	return definition.FeatureRef{}, false
}

// ---- small helpers ----

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// didYouMean returns `did you mean "x"? ` for the candidate closest to s,
// or "" when none is close. aliases map common other spellings to a
// candidate.
func didYouMean(s string, candidates []string, aliases ...map[string]string) string {
	if c := closest(s, candidates, aliases...); c != "" {
		return fmt.Sprintf("did you mean %q? ", c)
	}
	return ""
}

// closest returns the candidate closest to s, or "" when none is close.
func closest(s string, candidates []string, aliases ...map[string]string) string {
	if len(s) > 2*NameMaxLen {
		return ""
	}
	lower := strings.ToLower(s)
	for _, a := range aliases {
		if c, ok := a[lower]; ok {
			return c
		}
	}
	best, bestDist := "", 0
	for _, c := range candidates {
		if len(c) > 2*NameMaxLen {
			continue
		}
		d := editDistance(lower, c)
		limit := 2
		if len(c) <= 3 {
			limit = 1
		}
		if len(lower) >= 3 && (strings.HasPrefix(c, lower) || strings.HasPrefix(lower, c)) {
			d = min(d, limit)
		}
		if d <= limit && d < len(c) && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
