package rowcache

import (
	"bytes"
	"sync"
)

// EntryOverheadBytes is what the cache accounts for one entry beyond its key
// and value bytes: the entry record (48 B), its index map slot with the map's
// spare room (~32 B), and its free-list slot, rounded up.
const EntryOverheadBytes = 96

// entry is one cached row or cached absence. A slot of shard.entries is free
// when live is false.
type entry struct {
	buf   []byte // key, then value; cache-owned
	hash  uint64
	stamp int64 // see Cache.stamp; when the value was known to be current
	klen  int32
	live  bool
	found bool // false: the store has no row for the key
	ref   bool // CLOCK reference bit: set by a hit, cleared by the hand
}

func (e *entry) key() []byte { return e.buf[:e.klen] }

// value is the row, or nil for a cached absence.
func (e *entry) value() []byte {
	if !e.found {
		return nil
	}
	return e.buf[e.klen:]
}

func (e *entry) cost() int64 { return int64(cap(e.buf)) + EntryOverheadBytes }

type counters struct {
	hits, misses, expired, coalesced, evictions, fillsDropped, oversize uint64
}

// shard is one independently locked part of the cache.
type shard struct {
	mu sync.Mutex
	// index maps a key's hash to its slot in entries. Two keys with the same
	// 64-bit hash cannot both be cached: the later one replaces the earlier.
	index   map[uint64]int32 // guarded by mu
	entries []entry          // guarded by mu
	free    []int32          // free slots of entries; guarded by mu
	hand    int              // CLOCK hand: next slot to look at; guarded by mu
	bytes   int64            // accounted memory of live entries; guarded by mu
	// inflight registers the keys being loaded, by hash. Two keys being
	// loaded under one hash cannot both be registered: the later one is
	// loaded unregistered and does not fill the cache.
	inflight map[uint64]flightKey // guarded by mu
	counters counters             // guarded by mu
	_        [64]byte             // keep neighbouring shards' locks off this line
}

func (s *shard) init() {
	s.index = make(map[uint64]int32)
	s.inflight = make(map[uint64]flightKey)
}

// get answers key from memory: if it is cached and fresh, it calls
// fn(i, value, found) with s locked and reports true. With countMiss, a
// miss is counted here.
func (s *shard) get(h uint64, i int, key []byte, now, maxAge int64, countMiss bool, fn func(i int, value []byte, found bool)) bool {
	s.mu.Lock()
	defer s.mu.Unlock() // fn may panic; the shard must not stay locked
	e := s.fresh(h, key, now, maxAge)
	if e == nil {
		if countMiss {
			s.counters.misses++
		}
		return false
	}
	fn(i, e.value(), e.found)
	return true
}

// copyHitLocked is get for Load after its first miss: a fresh hit is
// appended to *buf and described by *sl, to be handed out later. s.mu is
// held.
func (s *shard) copyHitLocked(e *entry, sl *slot, buf *[]byte) {
	off := len(*buf)
	*buf = append(*buf, e.value()...)
	*sl = slot{kind: slotCopied, off: off, end: len(*buf), found: e.found}
}

// fresh returns key's entry if it is cached and no older than maxAge, and
// counts the hit. An expired entry is removed. s.mu is held.
func (s *shard) fresh(h uint64, key []byte, now, maxAge int64) *entry {
	e, _ := s.lookup(h, key, now, maxAge)
	return e
}

// lookup is fresh that also hands back the buffer of an expired entry it
// removed, which nothing else refers to any more: the refill of the key
// may reuse it. s.mu is held.
func (s *shard) lookup(h uint64, key []byte, now, maxAge int64) (*entry, []byte) {
	i, ok := s.find(h, key)
	if !ok {
		return nil, nil
	}
	e := &s.entries[i]
	if maxAge > 0 && now-e.stamp > maxAge {
		s.counters.expired++
		buf := s.remove(i)
		return nil, buf
	}
	e.ref = true
	s.counters.hits++
	return e, nil
}

// peek returns key's entry if it is cached and no older than maxAge, and
// counts nothing: for a Load that waited for another one's fill. s.mu is
// held.
func (s *shard) peek(h uint64, key []byte, now, maxAge int64) *entry {
	i, ok := s.find(h, key)
	if !ok {
		return nil
	}
	e := &s.entries[i]
	if maxAge > 0 && now-e.stamp > maxAge {
		return nil
	}
	e.ref = true
	return e
}

// find returns key's slot. s.mu is held.
func (s *shard) find(h uint64, key []byte) (int32, bool) {
	i, ok := s.index[h]
	if !ok || !bytes.Equal(s.entries[i].key(), key) {
		return 0, false
	}
	return i, true
}

// invalidate makes a load of key in flight lose: its result will not fill
// the cache, and later readers will not wait for it. s.mu is held.
func (s *shard) invalidate(h uint64, key []byte) {
	if len(s.inflight) == 0 {
		return
	}
	if fk, ok := s.inflight[h]; ok && bytes.Equal(fk.key, key) {
		fk.f.stale[fk.j] = true
		delete(s.inflight, h)
	}
}

// put caches a copy of key → value (or a cached absence when !found),
// stamped, in place of whatever the cache held under key's hash. A value too
// big for maxEntry is not cached, and the old one is still removed.
// s.mu is held.
func (s *shard) put(h uint64, key, value []byte, found bool, stamp, budget, maxEntry int64) {
	s.putReusing(h, key, value, found, stamp, budget, maxEntry, nil)
}

// putReusing is put that may copy into spare, a buffer no one else refers
// to (an expired entry's), instead of allocating. s.mu is held.
func (s *shard) putReusing(h uint64, key, value []byte, found bool, stamp, budget, maxEntry int64, spare []byte) {
	if !found {
		value = nil
	}
	n := len(key) + len(value)
	var buf []byte
	if i, ok := s.index[h]; ok {
		if old := s.remove(i); fits(old, n) {
			buf = old[:n] // reuse: an updated row is usually about as long
		}
	}
	if buf == nil && fits(spare, n) {
		buf = spare[:n]
	}
	if buf == nil {
		if int64(n)+EntryOverheadBytes > maxEntry {
			s.counters.oversize++
			return
		}
		buf = make([]byte, n)
	}
	copy(buf, key)
	copy(buf[len(key):], value)
	s.insert(entry{buf: buf, hash: h, stamp: stamp, klen: int32(len(key)), found: found}, budget, maxEntry)
}

// fits reports whether buf can hold n bytes without wasting more than half
// of its capacity (which the memory bound accounts).
func fits(buf []byte, n int) bool { return cap(buf) >= n && cap(buf) <= 2*n }

// insert adds e, evicting as needed to stay within budget, unless it costs
// more than maxEntry. Nothing is cached under e.hash. s.mu is held.
func (s *shard) insert(e entry, budget, maxEntry int64) {
	cost := e.cost()
	if cost > maxEntry {
		s.counters.oversize++
		return
	}
	for s.bytes+cost > budget {
		if !s.evict() {
			panic("rowcache: shard over budget with nothing to evict")
		}
	}
	var i int32
	if k := len(s.free); k > 0 {
		i = s.free[k-1]
		s.free = s.free[:k-1]
	} else {
		i = int32(len(s.entries))
		s.entries = append(s.entries, entry{})
	}
	e.live = true
	s.entries[i] = e
	s.index[e.hash] = i
	s.bytes += cost
}

// evict removes one entry by CLOCK and reports whether there was one.
// s.mu is held.
func (s *shard) evict() bool {
	n := len(s.entries)
	// A full turn clears every reference bit, so a victim turns up within
	// two turns if any entry is live.
	for range 2*n + 1 {
		if s.hand >= n {
			s.hand = 0
		}
		i := s.hand
		s.hand++
		e := &s.entries[i]
		switch {
		case !e.live:
		case e.ref:
			e.ref = false
		default:
			s.remove(int32(i))
			s.counters.evictions++
			return true
		}
	}
	return false
}

// remove frees slot i and returns its buffer, which no one else refers to:
// entry buffers are read only with the shard locked. s.mu is held.
func (s *shard) remove(i int32) []byte {
	e := &s.entries[i]
	buf := e.buf
	delete(s.index, e.hash)
	s.bytes -= e.cost()
	*e = entry{}
	s.free = append(s.free, i)
	return buf
}
