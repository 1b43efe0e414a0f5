package rowcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kiln-dev/kiln/internal/store"
)

// LoadFunc reads keys from the store: it calls fn(i, value, found) exactly
// once for every i in [0, len(keys)), from the goroutine that called it and
// before it returns; found == false means the store has no row for keys[i].
// value need only be valid during fn. store.Store.Get is a LoadFunc.
type LoadFunc func(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error

// ReadThrough is a store read through a cache: rows the Cache holds are
// answered from it, the others read with Load and cached. Its Get has the
// store's contract (fn once per key, in order), so it can stand where the
// store stood.
type ReadThrough struct {
	Cache *Cache
	Load  LoadFunc
}

// Get calls s.Cache.Load(ctx, keys, s.Load, fn).
func (s ReadThrough) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return s.Cache.Load(ctx, keys, s.Load, fn)
}

// GetUnordered calls s.Cache.LoadUnordered(ctx, keys, s.Load, fn): fn is
// called once per key, in any order.
func (s ReadThrough) GetUnordered(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return s.Cache.LoadUnordered(ctx, keys, s.Load, fn)
}

// GetMemo calls s.Cache.LoadMemo(ctx, keys, s.Load, fn).
func (s ReadThrough) GetMemo(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool, memo []byte) []byte) error {
	return s.Cache.LoadMemo(ctx, keys, s.Load, fn)
}

// MemoFunc is the callback of LoadMemo: Load's fn, which also sees the memo
// kept with the row — bytes a reader derived from the row, such as its
// evaluated features — and may keep a new one.
//
// memo is what the last reader kept with exactly these row bytes, or nil
// (none yet, or the row changed since, or it came from the store just
// now). The function returns the memo to keep with the row from now on
// (copied; the cache drops it when the row's bytes change), or nil to
// leave the memo as it is. value and memo are valid only during the call.
type MemoFunc func(i int, value []byte, found bool, memo []byte) (keep []byte)

// reader is the callback of one Load: fn, or mfn when it uses memos.
type reader struct {
	fn  func(i int, value []byte, found bool)
	mfn MemoFunc
}

// give hands a row that is not in the cache's memory to rd (a copied hit
// with its copied memo, or a loaded row), and keeps the memo rd returns if
// the cache still holds the same row.
func (c *Cache) give(rd reader, i int, key, value, memo []byte, found bool) {
	if rd.mfn == nil {
		rd.fn(i, value, found)
		return
	}
	m := rd.mfn(i, value, found, memo)
	if m == nil {
		return
	}
	h := store.KeyHash(key)
	s := c.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.find(h, key); ok {
		if e := &s.entries[j]; e.found == found && bytes.Equal(e.value(), value) {
			s.setMemo(j, m, c.shardBytes, c.maxEntryBytes)
		}
	}
}

// errLoadPanicked is what waiters see when the load they wait for panicked.
var errLoadPanicked = errors.New("rowcache: load function panicked")

// maxWaitRounds bounds the rounds in which Load waits for other goroutines'
// loads of its missed keys. A key still unanswered after them (the load it
// waited for failed only because that loader's context ended, or its fill
// was dropped or evicted before Load could copy it) is loaded by Load
// itself.
const maxWaitRounds = 2

// maxPooledBufBytes is the largest scratch buffer Load keeps for reuse.
const maxPooledBufBytes = 1 << 20

// flight is one call of a load function: the keys one Load found neither in
// memory nor being loaded, which others may wait for. Waiters do not read
// the loaded values from the flight: once done is closed, the values are in
// the cache (unless a write, an eviction or the staleness bound removed
// them since, and then the waiter loads the key again itself).
type flight struct {
	done  chan struct{} // closed when err is final and the cache is filled
	start int64         // stamp taken before the flight was visible to anyone
	// stale[j] is set by a Set or Delete of key j after the flight began
	// (or at registration, for a key loaded unregistered); each element is
	// guarded by the mutex of its key's shard. The slice itself never
	// changes after newFlight.
	stale []bool
	err   error // written by the loading goroutine before done is closed
}

// flightKey names key j of flight f in a shard's inflight map. key is the
// loading caller's key, valid while it is registered: the loader
// unregisters its keys before its Load returns.
type flightKey struct {
	f   *flight
	j   int32
	key []byte
}

// slot kinds: where Load finds the answer for one key after its first miss.
const (
	slotNone   uint8 = iota
	slotCopied       // in the scratch buffer at [off, end)
	slotLoaded       // in the arena at [off, end), loaded by this Load
	slotOwn          // key j of this Load's flight, not loaded yet
	slotWait         // key j of another goroutine's flight f
)

// slot is where Load finds the answer for one key after its first miss.
type slot struct {
	f        *flight
	j        int32
	kind     uint8
	found    bool
	off, end int // the value
	// The memo: copied, at buf[moff:mend]; loaded, at arena[moff:mend].
	moff, mend int
}

// loaded is the answer of the load function for one key of Load's own
// flight: its value is at arena[off:end].
type loaded struct {
	off, end   int
	moff, mend int // the memo the refilled entry kept (same row as before)
	found, got bool
}

// loadState is Load's scratch after its first miss, pooled.
type loadState struct {
	slots   []slot // for keys[first:]
	buf     []byte // copied hits
	arena   []byte // values of this Load's own loads
	pending []int  // key indices to resolve this round
	aging   []int  // key indices of hits to read again ahead of expiry
	retry   []int  // key indices to resolve next round
	copied  []int  // key indices copied to buf this round

	// This round's own flight.
	ownKeys   [][]byte
	ownHashes []uint64
	res       []loaded
	bad       bool

	cache    *Cache // the cache and keys of the Load using this state
	keys     [][]byte
	memos    bool                    // the Load hands out memos
	answerFn func(int, []byte, bool) // st.answer, made once

	// The goroutine handing out copied hits while the load runs.
	handout   sync.WaitGroup
	handPanic any
}

var loadStates = sync.Pool{New: func() any {
	st := new(loadState)
	st.answerFn = st.answer
	return st
}}

func (st *loadState) begin(n int) {
	if cap(st.slots) < n {
		st.slots = make([]slot, n)
	}
	st.slots = st.slots[:n]
}

func (st *loadState) release() {
	st.handout.Wait() // on a panic, the hand-out goroutine may still read st
	clear(st.slots)   // drop flights
	clear(st.ownKeys)
	st.cache, st.keys = nil, nil
	if cap(st.buf) > maxPooledBufBytes {
		st.buf = nil
	}
	if cap(st.arena) > maxPooledBufBytes {
		st.arena = nil
	}
	st.slots, st.buf, st.arena = st.slots[:0], st.buf[:0], st.arena[:0]
	st.pending, st.retry, st.copied, st.aging = st.pending[:0], st.retry[:0], st.copied[:0], st.aging[:0]
	st.ownKeys, st.ownHashes, st.res = st.ownKeys[:0], st.ownHashes[:0], st.res[:0]
	st.handPanic = nil
	loadStates.Put(st)
}

// answer is the fn given to the load function: it keeps the value in the
// arena, for the caller and for the fill.
func (st *loadState) answer(j int, value []byte, found bool) {
	if j < 0 || j >= len(st.res) || st.res[j].got {
		st.bad = true
		return
	}
	if !found {
		value = nil
	}
	off := len(st.arena)
	st.arena = append(st.arena, value...)
	st.res[j] = loaded{off: off, end: len(st.arena), found: found, got: true}
}

// check reports a load that did not answer every key exactly once.
func (st *loadState) check() error {
	if st.bad {
		return errors.New("rowcache: load answered a key index out of range or twice")
	}
	for j := range st.res {
		if !st.res[j].got {
			return fmt.Errorf("rowcache: load did not answer key %d of %d", j, len(st.res))
		}
	}
	return nil
}

// memo is the memo copied with the hit, or kept by the refill, in slot sl,
// or nil.
func (st *loadState) memo(sl *slot) []byte {
	switch {
	case sl.mend == sl.moff:
		return nil
	case sl.kind == slotCopied:
		return st.buf[sl.moff:sl.mend]
	case sl.kind == slotLoaded:
		return st.arena[sl.moff:sl.mend]
	}
	return nil
}

// value is the answer in slot sl, which is copied or loaded.
func (st *loadState) value(sl *slot) []byte {
	if !sl.found {
		return nil
	}
	if sl.kind == slotLoaded {
		return st.arena[sl.off:sl.end]
	}
	return st.buf[sl.off:sl.end]
}

// Load answers keys through the cache, calling fn(i, value, found) exactly
// once for every key, in order; found == false means the store has no row.
// Hits come from memory. Each missed key that another goroutine is already
// loading is waited for; the rest go to one call of load, whose results
// fill the cache (unless a Set or Delete of the key raced them) and are
// handed to this caller.
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
	return c.load(ctx, keys, load, reader{fn: fn}, true)
}

// LoadUnordered is Load without the order: fn is called exactly once for
// every key, in any order, never concurrently, and not necessarily from the
// calling goroutine (but always before LoadUnordered returns). Freed from
// the order, it hands out the hits that follow the first miss while the
// store is being read, instead of after. On an error fn may have been
// called for any subset of keys.
func (c *Cache) LoadUnordered(ctx context.Context, keys [][]byte, load LoadFunc, fn func(i int, value []byte, found bool)) error {
	return c.load(ctx, keys, load, reader{fn: fn}, false)
}

// LoadMemo is LoadUnordered with memos: fn also sees what was kept with each
// row, and may keep something new (see MemoFunc). A reader that derives the
// same thing from a row again and again — Kiln's query engine evaluates a
// row's windows — keeps the result with the row and skips the work while
// the row's bytes do not change. A memo is accounted like the row's own
// bytes (Options.MaxBytes).
func (c *Cache) LoadMemo(ctx context.Context, keys [][]byte, load LoadFunc, fn MemoFunc) error {
	return c.load(ctx, keys, load, reader{mfn: fn}, false)
}

func (c *Cache) load(ctx context.Context, keys [][]byte, load LoadFunc, rd reader, ordered bool) error {
	now := c.stamp()
	// Until the first miss, hand hits out straight from memory.
	var agingBuf [16]int
	aging := agingBuf[:0] // hits to read again ahead of their expiry
	first := 0
	for ; first < len(keys); first++ {
		k := keys[first]
		h := store.KeyHash(k)
		hit, refresh := c.shardFor(h).get(c, h, first, k, now, false, true, rd)
		if !hit {
			break
		}
		if refresh {
			aging = append(aging, first)
		}
	}
	if first == len(keys) {
		c.refreshAhead(keys, aging, nil, load)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // before anyone could wait for a load bound to fail
	}

	// After it, resolve the rest: hits are copied aside, misses loaded or
	// waited for.
	st := loadStates.Get().(*loadState)
	defer st.release()
	defer func() { c.refreshAhead(keys, aging, st.aging, load) }()
	st.begin(len(keys) - first)
	st.cache, st.keys, st.memos = c, keys, rd.mfn != nil
	for i := first; i < len(keys); i++ {
		st.pending = append(st.pending, i)
	}
	for round := 0; len(st.pending) > 0; round++ {
		if err := c.resolve(ctx, keys, first, load, rd, st, round, ordered); err != nil {
			return err
		}
		st.pending, st.retry = st.retry, st.pending[:0]
	}
	if ordered {
		for i := first; i < len(keys); i++ {
			sl := &st.slots[i-first]
			rd.fn(i, st.value(sl), sl.found) // ordered loads have no memos
		}
	}
	return nil
}

// resolve finds an answer for every key of st.pending: from memory, from
// one call of load, or from another goroutine's load. Keys it cannot answer
// this round go to st.retry. Unless ordered, it hands the answers to fn as
// it finds them.
func (c *Cache) resolve(ctx context.Context, keys [][]byte, first int, load LoadFunc, rd reader, st *loadState, round int, ordered bool) error {
	var own *flight
	now := c.stamp()
	wait := round < maxWaitRounds
	st.copied = st.copied[:0]
	for p, i := range st.pending {
		k := keys[i]
		h := store.KeyHash(k)
		s := c.shardFor(h)
		sl := &st.slots[i-first]
		s.mu.Lock()
		if j, ok, refresh := s.lookup(h, k, now, c.maxAge, true); ok {
			if refresh {
				st.aging = append(st.aging, i)
			}
			s.copyHitLocked(j, sl, &st.buf, rd.mfn != nil)
			st.copied = append(st.copied, i)
			s.mu.Unlock()
			continue
		}
		s.counters.misses++
		fk, registered := s.inflight[h]
		same := registered && bytes.Equal(fk.key, k)
		switch {
		case same && fk.f == own: // the same key twice in keys
			*sl = slot{kind: slotOwn, j: fk.j}
		case same && wait:
			s.counters.coalesced++
			*sl = slot{kind: slotWait, f: fk.f, j: fk.j}
		default:
			if own == nil {
				own = c.newFlight(len(st.pending) - p)
			}
			j := int32(len(st.ownKeys))
			if registered {
				// Another key under this hash, or the same key after the
				// last round of waiting: load it, but do not fill.
				own.stale[j] = true
			} else {
				s.inflight[h] = flightKey{f: own, j: j, key: k}
			}
			st.ownKeys = append(st.ownKeys, k)
			st.ownHashes = append(st.ownHashes, h)
			*sl = slot{kind: slotOwn, j: j}
		}
		s.mu.Unlock()
	}

	if own != nil {
		if !ordered && len(st.copied) > 0 {
			// Hand out the copied hits on another goroutine while this one
			// waits for the store.
			st.handout.Add(1)
			go st.handOut(first, rd)
		}
		err := c.loadFlight(ctx, own, st, load)
		st.handout.Wait()
		if p := st.handPanic; p != nil {
			st.handPanic = nil
			panic(p)
		}
		if err == nil {
			for _, i := range st.pending {
				if sl := &st.slots[i-first]; sl.kind == slotOwn {
					r := &st.res[sl.j]
					*sl = slot{kind: slotLoaded, off: r.off, end: r.end, moff: r.moff, mend: r.mend, found: r.found}
					if !ordered {
						c.give(rd, i, keys[i], st.value(sl), st.memo(sl), sl.found)
					}
				}
			}
		}
		clear(st.ownKeys)
		st.ownKeys, st.ownHashes = st.ownKeys[:0], st.ownHashes[:0]
		if err != nil {
			return err
		}
	} else if !ordered {
		st.handOutCopied(first, rd)
	}

	for _, i := range st.pending {
		sl := &st.slots[i-first]
		if sl.kind != slotWait {
			continue
		}
		f := sl.f
		select {
		case <-f.done:
		default:
			select {
			case <-f.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if f.err != nil {
			if ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
				st.retry = append(st.retry, i)
				continue
			}
			return f.err
		}
		// The loader filled the cache before it closed done.
		k := keys[i]
		h := store.KeyHash(k)
		s := c.shardFor(h)
		s.mu.Lock()
		j, ok := s.peek(h, k, now, c.maxAge)
		switch {
		case !ok:
			st.retry = append(st.retry, i) // dropped or gone since: load it again
		case ordered:
			s.copyHitLocked(j, sl, &st.buf, false)
		default:
			*sl = slot{kind: slotCopied} // answered
			s.give(c, j, i, rd)
		}
		s.mu.Unlock()
	}
	return nil
}

// handOut calls fn for the keys copied this round; it runs on its own
// goroutine, and a panic of fn is carried back to Load's.
func (st *loadState) handOut(first int, rd reader) {
	defer st.handout.Done()
	defer func() {
		if p := recover(); p != nil {
			st.handPanic = p
		}
	}()
	st.handOutCopied(first, rd)
}

func (st *loadState) handOutCopied(first int, rd reader) {
	for _, i := range st.copied {
		sl := &st.slots[i-first]
		st.cache.give(rd, i, st.keys[i], st.value(sl), st.memo(sl), sl.found)
	}
}

// newFlight returns a flight for up to n keys, stamped now: before any key
// is registered, so before the store is read.
func (c *Cache) newFlight(n int) *flight {
	return &flight{
		done:  make(chan struct{}),
		start: c.stamp(),
		stale: make([]bool, n),
	}
}

// loadFlight calls load for the keys of this round's own flight f, then
// fills the cache and releases the waiters, even if load panics.
func (c *Cache) loadFlight(ctx context.Context, f *flight, st *loadState, load LoadFunc) (err error) {
	n := len(st.ownKeys)
	if cap(st.res) < n {
		st.res = make([]loaded, n)
	}
	st.res = st.res[:n]
	clear(st.res)
	st.bad = false
	c.loads.Add(1)
	err = errLoadPanicked
	defer func() { c.finish(f, st, err) }()
	err = load(ctx, st.ownKeys, st.answerFn)
	if err == nil {
		err = st.check()
	}
	return err
}

// finish unregisters f's keys, fills the cache with its results unless err
// or a racing write says otherwise, and releases f's waiters.
func (c *Cache) finish(f *flight, st *loadState, err error) {
	expired := c.maxAge > 0 && c.stamp()-f.start > c.maxAge
	for j, k := range st.ownKeys {
		h := st.ownHashes[j]
		s := c.shardFor(h)
		s.mu.Lock()
		if fk, ok := s.inflight[h]; ok && fk.f == f && int(fk.j) == j {
			delete(s.inflight, h)
		}
		switch {
		case err != nil:
		case f.stale[j] || expired:
			s.counters.fillsDropped++
		default:
			r := &st.res[j]
			s.put(h, k, st.arena[r.off:r.end], r.found, f.start, c.shardBytes, c.maxEntryBytes)
			if st.memos {
				// A refill of the same row kept the entry's memo: hand it
				// out with the row.
				if i, ok := s.find(h, k); ok {
					if m := s.entries[i].memo(); m != nil {
						r.moff = len(st.arena)
						st.arena = append(st.arena, m...)
						r.mend = len(st.arena)
					}
				}
			}
		}
		s.mu.Unlock()
	}
	f.err = err
	close(f.done)
}
