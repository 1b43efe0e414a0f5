package training

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/event"
)

// MaxShards bounds N in a shard i/N.
const MaxShards = 10_000

// Shard is part i of N of a spine, split by time (ParseShard, Rows).
// The zero value is not valid; Whole is the whole spine.
type Shard struct {
	I, N int
}

// Whole is the spine as one shard.
var Whole = Shard{I: 0, N: 1}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// ParseShard reads "i/N": part i (from 0) of N, 0 ≤ i < N ≤ MaxShards.
func ParseShard(text string) (Shard, error) {
	a, b, ok := strings.Cut(text, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: write i/N, part i (from 0) of N, like 0/3", text)
	}
	if n < 1 || n > MaxShards || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard %q: want 0 ≤ i < N ≤ %d", text, MaxShards)
	}
	return Shard{I: i, N: n}, nil
}

// Rows returns the spine rows of the shard in output order: by time, rows
// of the same time in spine order. The N shards split the spine's time
// line at the times of its rows number ⌊j·n/N⌋ in that order (j = 1 … N−1):
// shard i holds the rows with from ≤ time < to, where from and to are its
// boundaries (−∞ before the first, +∞ after the last). Rows of one time
// are in one shard, so the shards are time ranges: the rows of shards
// 0 … N−1 in turn are the rows of Whole, in order. A shard may be empty
// (more shards than rows, or many rows at one time).
//
// Every process of a split reads the whole spine, so that they agree on
// the boundaries without talking to each other.
func (s Shard) Rows(times []int64) (rows []int, from, to int64) {
	order := make([]int, len(times))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(times[x], times[y]) })
	bound := func(j int) int64 {
		switch {
		case j == 0:
			return math.MinInt64
		case j == s.N:
			return math.MaxInt64
		}
		return times[order[j*len(order)/s.N]]
	}
	from, to = bound(s.I), bound(s.I+1)
	lo, _ := slices.BinarySearchFunc(order, from, func(r int, t int64) int { return cmp.Compare(times[r], t) })
	hi, _ := slices.BinarySearchFunc(order, to, func(r int, t int64) int { return cmp.Compare(times[r], t) })
	if s.I == s.N-1 {
		hi = len(order) // to is +∞: MaxInt64 itself belongs to the last shard
	}
	return order[lo:hi], from, to
}

// Select returns the spine of the given rows, in that order.
func (sp *Spine) Select(rows []int) *Spine {
	out := &Spine{Times: make([]int64, len(rows)), Keys: make([][]event.Value, len(sp.Keys))}
	for j, r := range rows {
		out.Times[j] = sp.Times[r]
	}
	n := len(sp.Times)
	for e, keys := range sp.Keys {
		k := 0
		if n > 0 {
			k = len(keys) / n
		}
		sel := make([]event.Value, 0, len(rows)*k)
		for _, r := range rows {
			sel = append(sel, keys[r*k:(r+1)*k]...)
		}
		out.Keys[e] = sel
	}
	return out
}

// Select returns the table of the given rows, in that order.
func (t *Table) Select(rows []int) *Table {
	out := &Table{Columns: make([]TableColumn, len(t.Columns)), Rows: len(rows)}
	for j, c := range t.Columns {
		oc := TableColumn{Name: c.Name, Key: c.Key, Node: c.Node}
		if c.Node == nil {
			oc.Text = make([]string, len(rows))
			for x, r := range rows {
				oc.Text[x] = c.Text[r]
			}
		} else {
			oc.Values = make([]parquet.Value, len(rows))
			for x, r := range rows {
				oc.Values[x] = c.Values[r]
			}
		}
		out.Columns[j] = oc
	}
	return out
}
