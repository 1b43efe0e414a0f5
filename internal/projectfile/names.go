package projectfile

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
)

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

// nameFix is the advice for a bad name s: a valid name like it, or to
// shorten it when it is longer than maxLen.
func nameFix(s, like string, maxLen int) string {
	if len(s) > maxLen {
		return "shorten it"
	}
	return fmt.Sprintf("write it like %q", like)
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
