package rowcache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// LoadFunc reads keys from the store: it calls fn(i, value, found) exactly
// once for every i in [0, len(keys)), from the goroutine that called it and
// before it returns; found == false means the store has no row for keys[i].
// value need only be valid during fn. store.Store.Get is a LoadFunc.
type LoadFunc func(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error

// Source is a store read through a cache. Its Get has the store's contract
// (fn once per key, in order), so it can stand where the store stood.
type Source struct {
	Cache *Cache
	Load  LoadFunc
}

// Get calls s.Cache.Load(ctx, keys, s.Load, fn).
func (s Source) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return s.Cache.Load(ctx, keys, s.Load, fn)
}

// errLoadPanicked is what waiters see when the load they wait for panicked.
var errLoadPanicked = errors.New("rowcache: load function panicked")

// maxForeignRetries bounds how often Load loads keys again for itself when
// the load it waited for failed only because that loader's context ended.
const maxForeignRetries = 2

// maxPooledBufBytes is the largest scratch buffer Load keeps for reuse.
const maxPooledBufBytes = 1 << 20

// flight is one call of a load function: the keys one Load found neither in
// memory nor being loaded, which others may wait for.
type flight struct {
	done  chan struct{} // closed when res and err are final and the cache is filled
	start int64         // stamp taken before the flight was visible to anyone
	// stale[j] is set by a Set or Delete of key j after the flight began;
	// each element is guarded by the mutex of its key's shard. The slice
	// itself never changes after newFlight.
	stale []bool
	// Written by the loading goroutine only; read by others after done.
	keys [][]byte // the loaded keys, during the load only
	res  []result
	bad  bool // load answered an index out of range, or twice
	err  error
}

// result is the answer for one key of a flight.
type result struct {
	buf   []byte // key, then value: the cache entry's buffer, never written again
	klen  int
	found bool
	got   bool
}

func (f *flight) value(j int32) ([]byte, bool) {
	r := &f.res[j]
	if !r.found {
		return nil, false
	}
	return r.buf[r.klen:], true
}

// answer is the fn given to the load function. It copies the answer into
// the buffer the cache entry will own, so a fill costs one copy.
func (f *flight) answer(j int, value []byte, found bool) {
	if j < 0 || j >= len(f.res) || f.res[j].got {
		f.bad = true
		return
	}
	if !found {
		value = nil
	}
	k := f.keys[j]
	buf := make([]byte, len(k)+len(value))
	copy(buf, k)
	copy(buf[len(k):], value)
	f.res[j] = result{buf: buf, klen: len(k), found: found, got: true}
}

// check reports a load that did not answer every key exactly once.
func (f *flight) check() error {
	if f.bad {
		return errors.New("rowcache: load answered a key index out of range or twice")
	}
	for j := range f.res {
		if !f.res[j].got {
			return fmt.Errorf("rowcache: load did not answer key %d of %d", j, len(f.res))
		}
	}
	return nil
}

// flightKey names key j of flight f in a shard's inflight map.
type flightKey struct {
	f *flight
	j int32
}

// slot is where Load finds the answer for one key after its first miss:
// in flight f at j, or, when f is nil, at buf[off:end] of its scratch.
type slot struct {
	f        *flight
	j        int32
	found    bool
	off, end int
}

// loadState is Load's scratch after its first miss, pooled.
type loadState struct {
	slots     []slot // for keys[first:]
	buf       []byte // copied hits
	pending   []int  // key indices to resolve this round
	retry     []int  // key indices to resolve next round
	ownKeys   [][]byte
	ownHashes []uint64
}

var loadStates = sync.Pool{New: func() any { return new(loadState) }}

func (st *loadState) begin(n int) {
	if cap(st.slots) < n {
		st.slots = make([]slot, n)
	}
	st.slots = st.slots[:n]
}

func (st *loadState) release() {
	clear(st.slots) // drop flights
	clear(st.ownKeys)
	if cap(st.buf) > maxPooledBufBytes {
		st.buf = nil
	}
	st.slots, st.buf, st.pending, st.retry = st.slots[:0], st.buf[:0], st.pending[:0], st.retry[:0]
	st.ownKeys, st.ownHashes = st.ownKeys[:0], st.ownHashes[:0]
	loadStates.Put(st)
}

// Load answers keys through the cache, calling fn(i, value, found) exactly
// once for every key, in order; found == false means the store has no row.
// Hits come from memory. Each missed key that another goroutine is already
// loading is waited for; the rest go to one call of load, whose results
// fill the cache (unless a Set or Delete of the key raced them) and are
// handed to whoever waits for them.
//
// An error from load is returned, with nothing cached, to this caller and to
// every caller waiting for those keys — except that a waiter whose own ctx
// is still live loads the keys itself when the error was the loader's
// context ending. If ctx ends while waiting, Load returns ctx.Err(). On an
// error fn may have been called for a prefix of keys.
//
// value is valid only during fn, which must not call the cache: fn may run
// with the key's shard locked (hits before the first miss do).
func (c *Cache) Load(ctx context.Context, keys [][]byte, load LoadFunc, fn func(i int, value []byte, found bool)) error {
	now := c.stamp()
	// Until the first miss, hand hits out straight from memory.
	first := 0
	for ; first < len(keys); first++ {
		k := keys[first]
		h := xxhash.Sum64(k)
		if !c.shardFor(h).get(h, first, k, now, c.maxAge, false, fn) {
			break
		}
	}
	if first == len(keys) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // before anyone could wait for a load bound to fail
	}

	// After it, copy hits aside so that fn still sees keys in order.
	st := loadStates.Get().(*loadState)
	defer st.release()
	st.begin(len(keys) - first)
	for i := first; i < len(keys); i++ {
		k := keys[i]
		h := xxhash.Sum64(k)
		if i == first || !c.shardFor(h).copyHit(h, k, now, c.maxAge, &st.slots[i-first], &st.buf) {
			st.pending = append(st.pending, i)
		}
	}
	for round := 0; len(st.pending) > 0; round++ {
		if err := c.resolve(ctx, keys, first, load, st, round < maxForeignRetries); err != nil {
			return err
		}
		st.pending, st.retry = st.retry, st.pending[:0]
	}

	for i := first; i < len(keys); i++ {
		sl := &st.slots[i-first]
		if sl.f == nil {
			var v []byte
			if sl.found {
				v = st.buf[sl.off:sl.end]
			}
			fn(i, v, sl.found)
			continue
		}
		v, found := sl.f.value(sl.j)
		fn(i, v, found)
	}
	return nil
}

// resolve finds an answer for every key of st.pending: from memory, from
// another goroutine's load, or from one call of load. Keys whose waited-for
// load failed only because its loader's context ended go to st.retry when
// canRetry.
func (c *Cache) resolve(ctx context.Context, keys [][]byte, first int, load LoadFunc, st *loadState, canRetry bool) error {
	var own *flight
	now := c.stamp()
	for p, i := range st.pending {
		k := keys[i]
		h := xxhash.Sum64(k)
		s := c.shardFor(h)
		sl := &st.slots[i-first]
		s.mu.Lock()
		switch fk, ok := s.inflight[string(k)]; {
		case s.copyHitLocked(h, k, now, c.maxAge, sl, &st.buf):
		case ok:
			s.counters.misses++
			if fk.f != own {
				s.counters.coalesced++
			}
			*sl = slot{f: fk.f, j: fk.j}
		default:
			s.counters.misses++
			if own == nil {
				own = c.newFlight(len(st.pending) - p)
			}
			j := int32(len(st.ownKeys))
			s.inflight[string(k)] = flightKey{own, j}
			st.ownKeys = append(st.ownKeys, k)
			st.ownHashes = append(st.ownHashes, h)
			*sl = slot{f: own, j: j}
		}
		s.mu.Unlock()
	}

	if own != nil {
		err := c.loadFlight(ctx, own, st.ownKeys, st.ownHashes, load)
		clear(st.ownKeys)
		st.ownKeys, st.ownHashes = st.ownKeys[:0], st.ownHashes[:0]
		if err != nil {
			return err
		}
	}

	for _, i := range st.pending {
		f := st.slots[i-first].f
		if f == nil || f == own {
			continue
		}
		select {
		case <-f.done:
		default:
			select {
			case <-f.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if f.err == nil {
			continue
		}
		if canRetry && ctx.Err() == nil &&
			(errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
			st.retry = append(st.retry, i)
			continue
		}
		return f.err
	}
	return nil
}

// newFlight returns a flight for up to n keys, stamped now: before any key
// is registered, so before the store is read.
func (c *Cache) newFlight(n int) *flight {
	return &flight{
		done:  make(chan struct{}),
		start: c.stamp(),
		stale: make([]bool, n),
		res:   make([]result, n),
	}
}

// loadFlight calls load for f's keys, then fills the cache and releases the
// waiters, even if load panics.
func (c *Cache) loadFlight(ctx context.Context, f *flight, keys [][]byte, hashes []uint64, load LoadFunc) (err error) {
	f.res = f.res[:len(keys)]
	f.keys = keys
	c.loads.Add(1)
	err = errLoadPanicked
	defer func() { c.finish(f, keys, hashes, err) }()
	err = load(ctx, keys, f.answer)
	if err == nil {
		err = f.check()
	}
	return err
}

// finish unregisters f's keys, fills the cache with its results unless err
// or a racing write says otherwise, and releases f's waiters.
func (c *Cache) finish(f *flight, keys [][]byte, hashes []uint64, err error) {
	expired := c.maxAge > 0 && c.stamp()-f.start > c.maxAge
	for j, k := range keys {
		s := c.shardFor(hashes[j])
		s.mu.Lock()
		if fk, ok := s.inflight[string(k)]; ok && fk.f == f {
			delete(s.inflight, string(k))
		}
		switch {
		case err != nil:
		case f.stale[j] || expired:
			s.counters.fillsDropped++
		default:
			r := &f.res[j]
			s.fill(hashes[j], r.buf, r.klen, r.found, f.start, c.shardBytes, c.maxEntryBytes)
		}
		s.mu.Unlock()
	}
	f.keys = nil // the caller's memory
	f.err = err
	close(f.done)
}
