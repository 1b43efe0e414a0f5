package projectfile

import (
	"fmt"
	"slices"
	"strings"
)

var sourceTypeAliases = map[string]string{
	"http": "push", "api": "push", "jetstream": "nats", "nats_jetstream": "nats", "redpanda": "kafka",
}

var startAliases = map[string]string{
	"beginning": "earliest", "oldest": "earliest", "first": "earliest", "smallest": "earliest", "all": "earliest",
	"end": "latest", "newest": "latest", "last": "latest", "largest": "latest", "now": "latest", "new": "latest",
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

// namesOf returns the names of list's elements, in order; nil for none.
func namesOf[T any](list []T, name func(T) string) []string {
	var names []string
	for _, x := range list {
		names = append(names, name(x))
	}
	return names
}

// sortedList lists names in sorted order, for messages.
func sortedList(names []string) string {
	return strings.Join(slices.Sorted(slices.Values(names)), ", ")
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
