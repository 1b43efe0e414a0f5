package rowcache

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// versionedStore is the store of the stress test: each key's value encodes
// the key and a version that only grows.
type versionedStore struct {
	mu       sync.Mutex
	versions []uint64 // by key number; 0: no row
}

func (s *versionedStore) version(k int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions[k]
}

func (s *versionedStore) write(k int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[k]++
	return s.versions[k]
}

func (s *versionedStore) get(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	for i, key := range keys {
		k := keyNumber(key)
		v := s.version(k)
		if i%2 == 1 {
			runtime.Gosched() // let writers in between reads
		}
		if v == 0 {
			fn(i, nil, false)
		} else {
			fn(i, encodeRow(k, v), true)
		}
	}
	return nil
}

func stressKey(k int) []byte { return fmt.Appendf(nil, "key-%03d", k) }

func keyNumber(key []byte) int {
	var k int
	fmt.Sscanf(string(key), "key-%03d", &k)
	return k
}

// encodeRow makes a value whose every byte depends on (k, v), of a length
// that varies with v, so that a torn or reused buffer is detected.
func encodeRow(k int, v uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, v)
	b = binary.LittleEndian.AppendUint16(b, uint16(k))
	for i := range int(v % 200) {
		b = append(b, byte(v)+byte(i)+byte(k))
	}
	return b
}

func decodeRow(b []byte) (k int, v uint64, err error) {
	if len(b) < 10 {
		return 0, 0, fmt.Errorf("row of %d bytes", len(b))
	}
	v = binary.LittleEndian.Uint64(b)
	k = int(binary.LittleEndian.Uint16(b[8:]))
	if want := encodeRow(k, v); string(want) != string(b) {
		return 0, 0, fmt.Errorf("corrupt row %x, want %x", b, want)
	}
	return k, v, nil
}

// TestStress is rule 6: readers Load and Get while a writer writes the store
// and Sets (or Deletes) the cache, in a cache small enough to evict. Every
// value a reader sees must be one the store held, and never older than a
// version whose Set the reader saw complete before it asked.
func TestStress(t *testing.T) {
	const (
		written  = 24 // keys the writer writes
		absent   = 8  // keys no one writes
		writes   = 3000
		readers  = 6
		reads    = 1500
		batchLen = 5
	)
	st := &versionedStore{versions: make([]uint64, written+absent)}
	// Every reading of the clock moves it on by a millisecond, so entries
	// age past half of MaxAge (read again ahead of expiry, in the
	// background) and past MaxAge (refilled by readers) all the time.
	var ticks atomic.Int64
	clock := func() time.Time { return time.Unix(0, ticks.Add(1)*int64(time.Millisecond)) }
	c := New(Options{MaxBytes: 8 << 10, Shards: 4, MaxAge: 40 * time.Millisecond, Now: clock})
	var published [written + absent]atomic.Uint64 // version whose Set (or Delete) has returned

	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 1))
		for n := range writes {
			k := rng.IntN(written)
			v := st.write(k)
			if n%7 == 0 {
				c.Delete(stressKey(k)) // as after a write whose outcome is unknown
			} else {
				c.Set(stressKey(k), encodeRow(k, v))
			}
			published[k].Store(v)
		}
	})
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(2, uint64(r)))
			keys := make([][]byte, batchLen)
			nums := make([]int, batchLen)
			floors := make([]uint64, batchLen)
			var miss []int
			for it := range reads {
				for j := range keys {
					nums[j] = rng.IntN(written + absent)
					keys[j] = stressKey(nums[j])
					floors[j] = published[nums[j]].Load()
				}
				answered := 0
				check := func(i int, value []byte, found bool) {
					answered++
					k := nums[i]
					if !found {
						if floors[i] > 0 {
							t.Errorf("reader %d: key %d absent after version %d was set", r, k, floors[i])
						}
						return
					}
					gk, v, err := decodeRow(value)
					switch {
					case err != nil:
						t.Errorf("reader %d: key %d: %v", r, k, err)
					case gk != k:
						t.Errorf("reader %d: key %d answered with key %d's row", r, k, gk)
					case v < floors[i]:
						t.Errorf("reader %d: key %d: version %d after version %d was set", r, k, v, floors[i])
					case v > st.version(k):
						t.Errorf("reader %d: key %d: version %d never written", r, k, v)
					}
				}
				if it%4 == 0 {
					miss = c.Get(keys, miss, check)
					if answered+len(miss) != len(keys) {
						t.Errorf("Get answered %d and missed %d of %d keys", answered, len(miss), len(keys))
					}
					continue
				}
				if it%4 == 2 {
					// Memos: each is the row it was made from, prefixed; a
					// memo handed out must belong to the row handed with it.
					var mbuf []byte
					err := c.LoadMemo(context.Background(), keys, st.get, func(i int, value []byte, found bool, memo []byte) []byte {
						check(i, value, found)
						if !found {
							return nil
						}
						if memo != nil {
							if string(memo) != "memo:"+string(value) {
								t.Errorf("reader %d: key %d: memo %q handed with row %q", r, nums[i], memo, value)
							}
							return nil
						}
						mbuf = append(append(mbuf[:0], "memo:"...), value...)
						return mbuf
					})
					if err != nil {
						t.Errorf("reader %d: LoadMemo: %v", r, err)
					}
					if answered != len(keys) {
						t.Errorf("LoadMemo answered %d of %d keys", answered, len(keys))
					}
					continue
				}
				load := c.Load
				if it%4 == 1 {
					load = c.LoadUnordered // answers in any order, hits handed out on another goroutine
				}
				if err := load(context.Background(), keys, st.get, check); err != nil {
					t.Errorf("reader %d: Load: %v", r, err)
				}
				if answered != len(keys) {
					t.Errorf("Load answered %d of %d keys", answered, len(keys))
				}
			}
		})
	}
	wg.Wait()
	c.refreshWG.Wait()
	checkInvariants(t, c)
	s := c.Stats()
	t.Logf("%+v", s)
	if s.Evictions == 0 || s.Hits == 0 || s.Loads == 0 || s.Expired == 0 || s.Refreshed == 0 {
		t.Errorf("Stats = %+v: the test did not exercise evictions, hits and loads", s)
	}
	for si := range c.shards {
		if n := len(c.shards[si].inflight); n != 0 {
			t.Errorf("shard %d: %d loads still registered", si, n)
		}
	}
}
