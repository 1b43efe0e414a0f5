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
	buf   []byte // key, then value, then memo; cache-owned
	hash  uint64
	stamp int64 // see Cache.stamp; when the value was known to be current
	klen  int32
	mlen  int32 // length of the memo at the end of buf
	live  bool
	found bool // false: the store has no row for the key
	ref   bool // CLOCK reference bit: set by a hit, cleared by the hand
	// refreshing: a hit past half of MaxAge has asked for the row to be
	// read again ahead of its expiry; cleared when the entry is put again.
	refreshing bool
}

func (e *entry) key() []byte { return e.buf[:e.klen] }

// value is the row, or nil for a cached absence.
func (e *entry) value() []byte {
	if !e.found {
		return nil
	}
	return e.buf[e.klen : len(e.buf)-int(e.mlen)]
}

// memo is what a reader kept with the row (see MemoFunc), or nil.
func (e *entry) memo() []byte {
	if e.mlen == 0 {
		return nil
	}
	return e.buf[len(e.buf)-int(e.mlen):]
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

// get answers key from memory: if it is cached and fresh, it hands it to
// rd with s locked and reports true, and, with ahead, whether the row is to
// be read again ahead of its expiry (see lookup). With countMiss, a miss is
// counted here.
func (s *shard) get(c *Cache, h uint64, i int, key []byte, now int64, countMiss, ahead bool, rd reader) (hit, refresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock() // fn may panic; the shard must not stay locked
	j, ok, refresh := s.lookup(h, key, now, c.maxAge, ahead)
	if !ok {
		if countMiss {
			s.counters.misses++
		}
		return false, false
	}
	s.give(c, j, i, rd)
	return true, refresh
}

// give hands entry j, a fresh hit, to rd as key i, and keeps the memo rd
// returns. s.mu is held.
func (s *shard) give(c *Cache, j int32, i int, rd reader) {
	e := &s.entries[j]
	if rd.mfn == nil {
		rd.fn(i, e.value(), e.found)
		return
	}
	if m := rd.mfn(i, e.value(), e.found, e.memo()); m != nil {
		s.setMemo(j, m, c.shardBytes, c.maxEntryBytes)
	}
}

// copyHitLocked is get for Load after its first miss: a fresh hit (and its
// memo, withMemo) is appended to *buf and described by *sl, to be handed out
// later. s.mu is held.
func (s *shard) copyHitLocked(j int32, sl *slot, buf *[]byte, withMemo bool) {
	e := &s.entries[j]
	off := len(*buf)
	*buf = append(*buf, e.value()...)
	end := len(*buf)
	if withMemo {
		*buf = append(*buf, e.memo()...)
	}
	*sl = slot{kind: slotCopied, off: off, end: end, moff: end, mend: len(*buf), found: e.found}
}

// lookup returns key's slot if it is cached and no older than maxAge, and
// counts the hit. An expired entry stays until its refill replaces it (and
// keeps its memo if the row has not changed). With ahead (the caller can
// read the store), refresh reports a hit on an entry older than half of
// maxAge that nobody has asked to refresh yet: the caller is to have the row
// read again (Cache.refresh) so that it does not expire under its readers.
// s.mu is held.
func (s *shard) lookup(h uint64, key []byte, now, maxAge int64, ahead bool) (slot int32, ok, refresh bool) {
	i, ok := s.find(h, key)
	if !ok {
		return 0, false, false
	}
	e := &s.entries[i]
	if maxAge > 0 && now-e.stamp > maxAge {
		s.counters.expired++
		return 0, false, false
	}
	e.ref = true
	s.counters.hits++
	if ahead && maxAge > 0 && now-e.stamp > maxAge/2 && !e.refreshing {
		e.refreshing = true
		return i, true, true
	}
	return i, true, false
}

// peek is lookup that counts nothing: for a Load that waited for another
// one's fill. s.mu is held.
func (s *shard) peek(h uint64, key []byte, now, maxAge int64) (int32, bool) {
	i, ok := s.find(h, key)
	if !ok {
		return 0, false
	}
	e := &s.entries[i]
	if maxAge > 0 && now-e.stamp > maxAge {
		return 0, false
	}
	e.ref = true
	return i, true
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
// stamped, in place of whatever the cache held under key's hash. If the
// cache already holds exactly that, only the stamp moves on, and the memo
// stays. A value too big for maxEntry is not cached, and the old one is
// still removed. s.mu is held.
func (s *shard) put(h uint64, key, value []byte, found bool, stamp, budget, maxEntry int64) {
	if !found {
		value = nil
	}
	n := len(key) + len(value)
	var buf []byte
	if i, ok := s.index[h]; ok {
		if e := &s.entries[i]; e.found == found && bytes.Equal(e.key(), key) && bytes.Equal(e.value(), value) {
			e.stamp = max(e.stamp, stamp)
			e.refreshing = false
			return
		}
		if old := s.remove(i); fits(old, n) {
			buf = old[:n] // reuse: an updated row is usually about as long
		}
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
		if !s.evict(-1) {
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

// setMemo keeps memo (copied) at the end of entry j, in place of its old
// memo, growing the entry's buffer if need be and evicting other entries to
// stay within budget. A memo that would make the entry too big is dropped.
// s.mu is held.
func (s *shard) setMemo(j int32, memo []byte, budget, maxEntry int64) {
	e := &s.entries[j]
	base := len(e.buf) - int(e.mlen)
	n := base + len(memo)
	if n > cap(e.buf) {
		if int64(n)+EntryOverheadBytes > maxEntry {
			e.buf, e.mlen = e.buf[:base], 0
			return
		}
		buf := make([]byte, n)
		copy(buf, e.buf[:base])
		s.bytes += int64(cap(buf) - cap(e.buf))
		e.buf = buf
		for s.bytes > budget && s.evict(j) {
		}
	}
	e.buf = e.buf[:n]
	copy(e.buf[base:], memo)
	e.mlen = int32(len(memo))
}

// evict removes one entry other than slot keep (-1: none) by CLOCK and
// reports whether there was one. s.mu is held.
func (s *shard) evict(keep int32) bool {
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
		case !e.live || int32(i) == keep:
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
