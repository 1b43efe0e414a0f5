package rowcache

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/store"
)

const (
	// DefaultMaxBytes is the memory bound used when Options.MaxBytes is 0.
	DefaultMaxBytes = 256 << 20
	// DefaultShards is the shard count used when Options.Shards is 0, unless
	// that would leave a shard less than minShardBytes.
	DefaultShards = 256
	// minShardBytes is the smallest budget the default shard count leaves a
	// shard: below it, large rows could not be cached at all.
	minShardBytes = 256 << 10
)

// Options configures a Cache. The zero value is usable.
type Options struct {
	// MaxBytes bounds the memory the cache accounts for: keys, values and
	// EntryOverheadBytes per entry. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Shards is the number of independently locked parts; a power of two.
	// 0 means DefaultShards, halved while a shard's part of MaxBytes would
	// be under 256 KiB.
	Shards int
	// MaxAge bounds staleness: an entry whose stamp (a fill: when its load
	// began; a Set: when it was set) is more than MaxAge ago is not served.
	// 0 means no bound, right when every write goes through Set.
	MaxAge time.Duration
	// Now is the clock, read only when MaxAge > 0. nil means time.Now.
	Now func() time.Time
}

// Stats are counters since New, and the current size.
type Stats struct {
	// Hits is the number of keys answered from memory, cached absences
	// included.
	Hits uint64
	// Misses is the number of keys not answered from memory.
	Misses uint64
	// Expired counts lookups that found an entry older than MaxAge (each is
	// also a miss).
	Expired uint64
	// Coalesced counts missed keys that waited for another goroutine's load
	// instead of being loaded again.
	Coalesced uint64
	// Loads counts calls of a load function.
	Loads uint64
	// Refreshed counts keys read again ahead of their expiry: a hit on an
	// entry older than half of MaxAge has the row read again in the
	// background, so that rows read often do not expire under their readers.
	Refreshed uint64
	// Evictions counts entries removed to make room.
	Evictions uint64
	// FillsDropped counts loaded keys not cached because a Set or Delete of
	// the key raced the load, or because the load took longer than MaxAge.
	FillsDropped uint64
	// Oversize counts values not cached because they were too big for a
	// shard.
	Oversize uint64
	// Bytes is the memory accounted now (see Options.MaxBytes).
	Bytes int64
	// Entries is the number of entries now, cached absences included.
	Entries int
}

// Cache is a sharded, bounded cache of rows. It is safe for concurrent use.
type Cache struct {
	shards        []shard
	shift         uint  // a hash's shard is hash >> shift
	shardBytes    int64 // budget of one shard
	maxEntryBytes int64 // largest entry a shard accepts
	maxAge        int64 // nanoseconds; 0: no bound
	now           func() time.Time
	epoch         time.Time // stamps are nanoseconds since epoch

	_         [64]byte // keep the counters below off the read-mostly fields' line
	loads     atomic.Uint64
	refreshed atomic.Uint64 // keys read again ahead of their expiry
	inRefresh atomic.Int32  // refreshes running
	refreshWG sync.WaitGroup
	_         [32]byte
}

// New returns an empty cache. It panics if o is invalid (negative sizes, a
// shard count that is not a power of two): options come from code.
func New(o Options) *Cache {
	if o.MaxBytes < 0 || o.Shards < 0 || o.MaxAge < 0 {
		panic(fmt.Sprintf("rowcache: negative option: MaxBytes %d, Shards %d, MaxAge %v", o.MaxBytes, o.Shards, o.MaxAge))
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Shards == 0 {
		o.Shards = DefaultShards
		for o.Shards > 1 && o.MaxBytes/int64(o.Shards) < minShardBytes {
			o.Shards /= 2
		}
	}
	if o.Shards&(o.Shards-1) != 0 {
		panic(fmt.Sprintf("rowcache: Shards is %d, want a power of two", o.Shards))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cache{
		shards:     make([]shard, o.Shards),
		shift:      uint(64 - bits.TrailingZeros(uint(o.Shards))),
		shardBytes: o.MaxBytes / int64(o.Shards),
		maxAge:     int64(o.MaxAge),
		now:        o.Now,
	}
	c.maxEntryBytes = c.shardBytes / 4
	if c.maxAge > 0 {
		c.epoch = c.now()
	}
	for i := range c.shards {
		c.shards[i].init()
	}
	return c
}

// shardFor returns the shard of a key hash. Shards take the high bits; the
// shard's index uses the whole hash.
func (c *Cache) shardFor(h uint64) *shard {
	return &c.shards[h>>c.shift] // a shift of 64 (one shard) gives 0
}

// stamp is the time now, as stored in entries; 0 when there is no MaxAge,
// so the clock is not read at all.
func (c *Cache) stamp() int64 {
	if c.maxAge == 0 {
		return 0
	}
	return int64(c.now().Sub(c.epoch))
}

// Get looks keys up in memory. For every key that is cached and fresh, in
// order, it calls fn(i, value, found) — found is false for a cached absence
// (the store has no row), and value is then nil. It returns the indices of
// the other keys, appended to miss[:0].
//
// fn runs with the key's shard locked: value is the cache's own memory,
// valid only during the call; fn must not call the cache.
func (c *Cache) Get(keys [][]byte, miss []int, fn func(i int, value []byte, found bool)) []int {
	miss = miss[:0]
	now := c.stamp()
	for i, k := range keys {
		h := store.KeyHash(k)
		if hit, _ := c.shardFor(h).get(c, h, i, k, now, true, false, reader{fn: fn}); !hit {
			miss = append(miss, i)
		}
	}
	return miss
}

// Set stores the newest committed value of a row: it replaces what the cache
// holds for key, and any load of key that began before it will not fill the
// cache. The write path calls it right after the store write commits, in
// commit order per key. Set copies key and value.
func (c *Cache) Set(key, value []byte) { c.set(key, value, false) }

// Update is Set for a key the cache holds, and for one it does not, only
// what Delete does to loads in flight: those that began before it will not
// fill the cache, and the next read loads the row from the store. A writer
// that rewrites many rows the cache has never held (most rows of a large
// table) calls Update rather than Set, so it does not copy every row it
// writes and push the rows readers use out of the cache.
func (c *Cache) Update(key, value []byte) { c.set(key, value, true) }

// set is Set, or with onlyHeld, Update.
func (c *Cache) set(key, value []byte, onlyHeld bool) {
	h := store.KeyHash(key)
	now := c.stamp()
	s := c.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidate(h, key)
	if onlyHeld {
		if _, ok := s.find(h, key); !ok {
			return
		}
	}
	s.put(h, key, value, true, now, c.shardBytes, c.maxEntryBytes)
}

// Changed tells the cache that key's row changed: any load of key that
// began before the call will not fill the cache, as with Update and Delete.
// It reports whether the cache holds the key; if so, the writer is to call
// Update with the row's new value, and if not, it need not encode the row
// at all.
func (c *Cache) Changed(key []byte) bool { return c.ChangedHashed(key, store.KeyHash(key)) }

// ChangedHashed is Changed for a caller that has hashed the key already:
// h must be store.KeyHash(key).
func (c *Cache) ChangedHashed(key []byte, h uint64) bool {
	s := c.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidate(h, key)
	_, ok := s.find(h, key)
	return ok
}

// Delete forgets key, and any load of key that began before it will not fill
// the cache. The write path calls it when it cannot tell what the store
// holds, e.g. after a failed write.
func (c *Cache) Delete(key []byte) {
	h := store.KeyHash(key)
	s := c.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidate(h, key)
	if i, ok := s.find(h, key); ok {
		s.remove(i)
	}
}

// Stats returns the counters and the current size. It locks each shard in
// turn, so the sums are not a snapshot of one instant.
func (c *Cache) Stats() Stats {
	st := Stats{Loads: c.loads.Load(), Refreshed: c.refreshed.Load()}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := s.counters
		st.Bytes += s.bytes
		st.Entries += len(s.index)
		s.mu.Unlock()
		st.Hits += n.hits
		st.Misses += n.misses
		st.Expired += n.expired
		st.Coalesced += n.coalesced
		st.Evictions += n.evictions
		st.FillsDropped += n.fillsDropped
		st.Oversize += n.oversize
	}
	return st
}
