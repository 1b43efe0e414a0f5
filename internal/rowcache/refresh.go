package rowcache

import (
	"context"
	"time"

	"github.com/kiln-dev/kiln/internal/store"
)

// maxRefreshes bounds the background refreshes running at once. A hit that
// finds no room leaves its row to expire and be refilled by a reader.
const maxRefreshes = 4

// refreshAhead reads again, in the background, the rows of keys named by
// the indices in a and b: hits on entries past half of MaxAge. A row read
// often then never expires under its readers, who would each wait for the
// store; the staleness bound is unchanged (a refill is stamped with the
// time its read began). keys need only be valid during the call.
func (c *Cache) refreshAhead(keys [][]byte, a, b []int, load LoadFunc) {
	n := len(a) + len(b)
	if n == 0 {
		return
	}
	own := make([][]byte, 0, n)
	for _, ix := range [2][]int{a, b} {
		for _, i := range ix {
			own = append(own, append([]byte(nil), keys[i]...))
		}
	}
	if c.inRefresh.Add(1) > maxRefreshes {
		c.inRefresh.Add(-1)
		c.unmarkRefreshing(own)
		return
	}
	c.refreshWG.Add(1)
	go func() {
		defer c.refreshWG.Done()
		defer c.inRefresh.Add(-1)
		c.refresh(own, load)
	}()
}

// unmarkRefreshing clears the refreshing mark of the entries of keys, so
// that a later hit can ask again.
func (c *Cache) unmarkRefreshing(keys [][]byte) {
	for _, k := range keys {
		h := store.KeyHash(k)
		s := c.shardFor(h)
		s.mu.Lock()
		if j, ok := s.find(h, k); ok {
			s.entries[j].refreshing = false
		}
		s.mu.Unlock()
	}
}

// refresh reads keys from the store as one flight and fills the cache with
// them, as a Load's own flight would: readers that miss them meanwhile wait
// for it, and a Set, Update or Delete racing it wins. A key another flight
// is loading already is read but not filled.
func (c *Cache) refresh(keys [][]byte, load LoadFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.refreshTimeout())
	defer cancel()
	st := loadStates.Get().(*loadState)
	defer st.release()
	f := c.newFlight(len(keys))
	for j, k := range keys {
		h := store.KeyHash(k)
		s := c.shardFor(h)
		s.mu.Lock()
		if _, busy := s.inflight[h]; busy {
			f.stale[j] = true
		} else {
			s.inflight[h] = flightKey{f: f, j: int32(j), key: k}
		}
		s.mu.Unlock()
		st.ownKeys = append(st.ownKeys, k)
		st.ownHashes = append(st.ownHashes, h)
	}
	if c.loadFlight(ctx, f, st, load) == nil {
		c.refreshed.Add(uint64(len(keys)))
	} else {
		// The rows keep their stamps and expire as they would have; a
		// later hit may ask again once they are put anew.
		c.unmarkRefreshing(keys)
	}
}

// refreshTimeout bounds one refresh: a read slower than MaxAge fills
// nothing anyway.
func (c *Cache) refreshTimeout() time.Duration {
	return time.Duration(max(c.maxAge, int64(time.Second)))
}
