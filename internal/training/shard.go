package training

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxShards bounds N in a shard i/N.
const MaxShards = 10_000

// Shard is part i of N of a spine, split by time. The N shards split the
// spine's time line at the times of its rows number ⌊j·n/N⌋ in time order
// (j = 1 … N−1; rows of one time in spine order): shard i holds the rows
// with from ≤ time < to, where from and to are its boundaries (−∞ before
// the first, +∞ after the last). Rows of one time are in one shard, so the
// shards are time ranges: the rows of shards 0 … N−1 in turn are the rows
// of Whole, in order. A shard may be empty (more shards than rows, or many
// rows at one time). Every process of a split reads the whole spine, so
// that they agree on the boundaries without talking to each other
// (BuildFile).
//
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
