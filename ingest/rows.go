package ingest

import (
	"unsafe"

	"github.com/kiln-dev/kiln/tile"
)

// rowMap holds an owner's rows in memory, found by the hash of their key
// (xxhash.Sum64, the hash that routes a key to its partition, computed once
// in Push). Its slots hold the hash, not the key, so a lookup reads the
// map's own memory and then the entry, where the key is stored inline,
// instead of chasing a key string: at a few million lookups a second these
// cache misses are much of the write path's cost. A key whose hash another
// key already holds (vanishingly rare) lives in clash.
type rowMap struct {
	byHash map[uint64]*entry
	clash  map[string]*entry
}

func newRowMap() rowMap {
	return rowMap{byHash: map[uint64]*entry{}, clash: map[string]*entry{}}
}

// get returns the row of key, whose hash is h, or nil.
func (m *rowMap) get(h uint64, key []byte) *entry {
	if e := m.byHash[h]; e != nil && e.key == string(key) {
		return e
	}
	if len(m.clash) == 0 {
		return nil
	}
	return m.clash[string(key)]
}

// put adds e, whose key the map does not hold.
func (m *rowMap) put(e *entry) {
	if m.byHash[e.hash] == nil {
		m.byHash[e.hash] = e
		return
	}
	m.clash[e.key] = e
}

// del removes e.
func (m *rowMap) del(e *entry) {
	if m.byHash[e.hash] == e {
		delete(m.byHash, e.hash)
		return
	}
	delete(m.clash, e.key)
}

func (m *rowMap) len() int { return len(m.byHash) + len(m.clash) }

// evict removes up to n entries for which drop is true.
func (m *rowMap) evict(n int, drop func(e *entry) bool) {
	for _, e := range m.clash {
		if n == 0 {
			return
		}
		if drop(e) {
			delete(m.clash, e.key)
			n--
		}
	}
	for h, e := range m.byHash {
		if n == 0 {
			return
		}
		if drop(e) {
			delete(m.byHash, h)
			n--
		}
	}
}

// inlineKey is the longest key newEntry stores in the entry's own
// allocation (RW1's keys are 20 to 30 bytes).
const inlineKey = 48

// newEntry returns an entry for the row of key (hash h) under plan, with an
// empty row. The entry, its row and (up to inlineKey bytes) its key are one
// allocation, so a fold that found the entry finds them in the same memory.
func newEntry(key []byte, h uint64, plan *tile.Plan) *entry {
	var e *entry
	if len(key) <= inlineKey {
		x := &struct {
			entry
			row tile.Row
			key [inlineKey]byte
		}{}
		n := copy(x.key[:], key)
		// The bytes are never written again: the string is immutable.
		x.entry.key = unsafe.String(&x.key[0], n)
		x.entry.row = &x.row
		e = &x.entry
	} else {
		x := &struct {
			entry
			row tile.Row
		}{}
		x.entry.key = string(key)
		x.entry.row = &x.row
		e = &x.entry
	}
	e.hash, e.plan = h, plan
	plan.Reset(e.row)
	return e
}
