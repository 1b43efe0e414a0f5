package ingest

import (
	"math/bits"
	"unsafe"

	"github.com/kiln-dev/kiln/internal/tile"
)

// rowMap holds a partition's rows in memory, found by the hash of their key
// (store.KeyHash, the hash that routes a key to its partition, computed once
// in Push). It is an open-addressing table of (hash, held row) slots, so that
// a group of lookups can first load their slots in one pass of independent
// loads (touch), which the processor overlaps, and then probe memory that is
// already in cache: at a few million lookups a second, each lookup's cache
// misses taken one after the other were much of the write path's cost. A
// key whose hash another key already holds (vanishingly rare) lives in
// clash.
type rowMap struct {
	slots []rowSlot // a power of two; linear probing from home
	shift uint      // home(h) = h >> shift
	n     int       // rows in slots
	dead  int       // slots of removed rows (tombstone)
	hand  int       // where evict goes on looking
	clash map[string]*heldRow
}

type rowSlot struct {
	hash uint64
	e    *heldRow // nil: never used; tombstone: removed
}

// tombstone marks a slot whose row was removed: probes go on past it.
var tombstone = &heldRow{}

func newRowMap() rowMap {
	m := rowMap{clash: map[string]*heldRow{}}
	m.resize(64)
	return m
}

func (m *rowMap) resize(size int) {
	old := m.slots
	m.slots = make([]rowSlot, size)
	m.shift = uint(64 - bits.TrailingZeros(uint(size)))
	m.n, m.dead = 0, 0
	for _, s := range old {
		if s.e != nil && s.e != tombstone {
			m.insert(s.hash, s.e)
		}
	}
}

// home is the slot a hash's probe starts at: the hash's top bits (its low
// bits pick the partition, so within one they are all alike).
func (m *rowMap) home(h uint64) int { return int(h >> m.shift) }

// touch loads the home slot of h, so that a lookup of h that follows
// finds it in cache. Its result only keeps the load from being optimised
// away.
func (m *rowMap) touch(h uint64) uint64 { return m.slots[m.home(h)].hash }

// find returns the held row in slots whose hash is h, whatever its key, or nil.
func (m *rowMap) find(h uint64) *heldRow {
	mask := len(m.slots) - 1
	for i := m.home(h); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.e == nil {
			return nil
		}
		if s.hash == h && s.e != tombstone {
			return s.e
		}
	}
}

// get returns the row of key, whose hash is h, or nil.
func (m *rowMap) get(h uint64, key []byte) *heldRow {
	if e := m.find(h); e != nil && e.key == string(key) {
		return e
	}
	if len(m.clash) == 0 {
		return nil
	}
	return m.clash[string(key)]
}

// put adds e, whose key the map does not hold.
func (m *rowMap) put(e *heldRow) {
	if m.find(e.hash) != nil {
		m.clash[e.key] = e
		return
	}
	if (m.n+m.dead+1)*4 > len(m.slots)*3 {
		size := len(m.slots)
		if (m.n+1)*2 > size {
			size *= 2 // else only tombstones filled it: same size, swept
		}
		m.resize(size)
	}
	m.insert(e.hash, e)
}

// insert puts (h, e) in the first free slot of h's probe.
func (m *rowMap) insert(h uint64, e *heldRow) {
	mask := len(m.slots) - 1
	for i := m.home(h); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.e == nil || s.e == tombstone {
			if s.e == tombstone {
				m.dead--
			}
			s.hash, s.e = h, e
			m.n++
			return
		}
	}
}

// del removes e.
func (m *rowMap) del(e *heldRow) {
	if m.clash[e.key] == e {
		delete(m.clash, e.key)
		return
	}
	mask := len(m.slots) - 1
	for i := m.home(e.hash); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.e == nil {
			return
		}
		if s.e == e {
			s.e = tombstone
			m.n--
			m.dead++
			return
		}
	}
}

func (m *rowMap) len() int { return m.n + len(m.clash) }

// clear removes every row, keeping the table's size.
func (m *rowMap) clear() {
	clear(m.slots)
	m.n, m.dead = 0, 0
	clear(m.clash)
}

// evict removes up to n rows for which drop is true. It goes on from
// where the last call stopped, round the table once at most, so that
// rows leave in turn and calls that each find a few cost a few.
func (m *rowMap) evict(n int, drop func(e *heldRow) bool) {
	for _, e := range m.clash {
		if n == 0 {
			return
		}
		if drop(e) {
			delete(m.clash, e.key)
			n--
		}
	}
	mask := len(m.slots) - 1
	for range m.slots {
		if n == 0 {
			return
		}
		m.hand = (m.hand + 1) & mask
		s := &m.slots[m.hand]
		if s.e != nil && s.e != tombstone && drop(s.e) {
			s.e = tombstone
			m.n--
			m.dead++
			n--
		}
	}
}

// inlineKey is the longest key newHeldRow stores in the held row's own
// allocation (RW1's keys are 20 to 30 bytes). The key comes last: a fold
// reads the held row and its tiles, and only a lookup the key.
const inlineKey = 48

// newHeldRow returns a held row for the row of key (hash h) under plan,
// with an empty row. The held row, its tile.Row and its key (up to
// inlineKey bytes) are one allocation, so a fold that found the held row
// finds them in the same memory.
func newHeldRow(key []byte, h uint64, plan *tile.Plan) *heldRow {
	var e *heldRow
	if len(key) <= inlineKey {
		x := &struct {
			heldRow
			row tile.Row
			key [inlineKey]byte
		}{}
		n := copy(x.key[:], key)
		// The bytes are never written again: the string is immutable.
		x.heldRow.key = unsafe.String(&x.key[0], n)
		x.heldRow.row = &x.row
		e = &x.heldRow
	} else {
		x := &struct {
			heldRow
			row tile.Row
		}{}
		x.heldRow.key = string(key)
		x.heldRow.row = &x.row
		e = &x.heldRow
	}
	e.hash, e.plan = h, plan
	plan.Reset(e.row)
	return e
}
