package eventjson

import (
	"hash/maphash"
	"sync/atomic"
)

// Interning of string values.
const (
	// internSlots is the size of an interner's table (a power of two).
	internSlots = 1024
	// internMaxLen is the longest string interned, in bytes.
	internMaxLen = 32
)

// interner shares the strings of short values that recur — the kind of an
// event, a country — between the events that carry them, so that decoding
// such a value allocates nothing. It is a direct-mapped cache: a string
// enters its slot when it misses there twice in a row, so values that do
// not recur (ids) cost their own allocation and no more, and cannot evict
// the ones that do. It holds at most internSlots strings of up to
// internMaxLen bytes, and is safe for concurrent use: each slot holds an
// atomic pointer to an immutable string.
type interner struct {
	seed  maphash.Seed
	slots [internSlots]struct {
		s    atomic.Pointer[string]
		miss atomic.Uint64 // the hash of the value that missed last
	}
}

func newInterner() *interner { return &interner{seed: maphash.MakeSeed()} }

// get returns string(b), shared if b recurs.
func (in *interner) get(b []byte) string {
	if len(b) == 0 || len(b) > internMaxLen {
		return string(b)
	}
	h := maphash.Bytes(in.seed, b)
	slot := &in.slots[h%internSlots]
	if p := slot.s.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	if slot.miss.Load() == h {
		p := new(string)
		*p = s
		slot.s.Store(p)
	} else {
		slot.miss.Store(h)
	}
	return s
}
