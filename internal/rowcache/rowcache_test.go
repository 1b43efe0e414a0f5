package rowcache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lookup is Get of one key: the value, whether the store has the row, and
// whether the cache answered at all.
func lookup(c *Cache, key string) (value string, found, hit bool) {
	miss := c.Get([][]byte{[]byte(key)}, nil, func(_ int, v []byte, f bool) {
		value, found = string(v), f
	})
	return value, found, len(miss) == 0
}

// wantHit fails unless key is cached with value want.
func wantHit(t *testing.T, c *Cache, key, want string) {
	t.Helper()
	v, found, hit := lookup(c, key)
	if !hit || !found || v != want {
		t.Fatalf("Get(%q) = %q, found %v, hit %v; want hit %q", key, v, found, hit, want)
	}
}

func wantMiss(t *testing.T, c *Cache, key string) {
	t.Helper()
	if v, found, hit := lookup(c, key); hit {
		t.Fatalf("Get(%q) = %q, found %v; want a miss", key, v, found)
	}
}

// checkInvariants verifies every shard's bookkeeping against its entries.
func checkInvariants(t *testing.T, c *Cache) {
	t.Helper()
	var total int64
	for si := range c.shards {
		s := &c.shards[si]
		s.mu.Lock()
		var bytes int64
		live := 0
		for i := range s.entries {
			e := &s.entries[i]
			if !e.live {
				continue
			}
			live++
			bytes += e.cost()
			if j, ok := s.index[e.hash]; !ok || int(j) != i {
				t.Errorf("shard %d: entry %d (hash %x) not indexed (index says %d, %v)", si, i, e.hash, j, ok)
			}
			if &c.shards[e.hash>>c.shift] != s {
				t.Errorf("shard %d: entry %d belongs to another shard", si, i)
			}
		}
		if live != len(s.index) || live+len(s.free) != len(s.entries) {
			t.Errorf("shard %d: %d live, %d indexed, %d free, %d slots", si, live, len(s.index), len(s.free), len(s.entries))
		}
		if bytes != s.bytes || bytes > c.shardBytes {
			t.Errorf("shard %d: accounted %d bytes, entries hold %d, budget %d", si, s.bytes, bytes, c.shardBytes)
		}
		total += bytes
		s.mu.Unlock()
	}
	if st := c.Stats(); st.Bytes != total {
		t.Errorf("Stats().Bytes = %d, entries hold %d", st.Bytes, total)
	}
}

func TestNewDefaults(t *testing.T) {
	f := func(o Options, wantShards int, wantShardBytes int64) {
		t.Helper()
		c := New(o)
		if len(c.shards) != wantShards || c.shardBytes != wantShardBytes {
			t.Errorf("New(%+v): %d shards of %d bytes, want %d of %d", o, len(c.shards), c.shardBytes, wantShards, wantShardBytes)
		}
	}
	f(Options{}, 256, 1<<20)
	f(Options{MaxBytes: 1 << 20}, 4, 256<<10)             // default shard count shrinks for small budgets
	f(Options{MaxBytes: 1 << 10}, 1, 1<<10)               // down to one
	f(Options{MaxBytes: 1 << 20, Shards: 64}, 64, 16<<10) // an explicit count is kept
	for _, o := range []Options{{Shards: 3}, {MaxBytes: -1}, {MaxAge: -time.Second}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", o)
				}
			}()
			New(o)
		}()
	}
}

func TestGetSetDelete(t *testing.T) {
	c := New(Options{})
	wantMiss(t, c, "a")
	c.Set([]byte("a"), []byte("1"))
	wantHit(t, c, "a", "1")
	c.Set([]byte("a"), []byte("22"))
	wantHit(t, c, "a", "22")
	c.Set([]byte("e"), nil) // an empty row is a row
	wantHit(t, c, "e", "")
	c.Delete([]byte("a"))
	wantMiss(t, c, "a")
	c.Delete([]byte("never")) // no-op

	keys := [][]byte{[]byte("x"), []byte("e"), []byte("y"), []byte("e")}
	var got []string
	miss := c.Get(keys, make([]int, 0, 4), func(i int, v []byte, found bool) {
		got = append(got, fmt.Sprintf("%d=%q/%v", i, v, found))
	})
	if want := []string{`1=""/true`, `3=""/true`}; !slices.Equal(got, want) {
		t.Errorf("Get answered %v, want %v", got, want)
	}
	if want := []int{0, 2}; !slices.Equal(miss, want) {
		t.Errorf("Get missed %v, want %v", miss, want)
	}
	st := c.Stats()
	if st.Hits != 5 || st.Misses != 4 || st.Entries != 1 {
		t.Errorf("Stats = %+v, want 5 hits, 4 misses, 1 entry", st)
	}
	checkInvariants(t, c)
}

func TestSetCopies(t *testing.T) {
	c := New(Options{})
	k, v := []byte("key"), []byte("value")
	c.Set(k, v)
	copy(k, "XXX")
	copy(v, "XXXXX")
	wantHit(t, c, "key", "value")
	// Overwriting with a same-sized value reuses the entry's buffer; a value
	// copied out before must be unaffected, and the new one must be whole.
	before, _, _ := lookup(c, "key")
	c.Set([]byte("key"), []byte("VALUE"))
	if before != "value" {
		t.Errorf("earlier copy changed to %q", before)
	}
	wantHit(t, c, "key", "VALUE")
}

func TestMaxAge(t *testing.T) {
	clk := newClock()
	c := New(Options{MaxAge: 10 * time.Second, Now: clk.Now})
	c.Set([]byte("k"), []byte("v"))
	clk.Advance(10 * time.Second)
	wantHit(t, c, "k", "v") // exactly MaxAge old is still served
	clk.Advance(time.Nanosecond)
	wantMiss(t, c, "k")
	if st := c.Stats(); st.Expired != 1 || st.Entries != 1 {
		t.Errorf("Stats = %+v, want 1 expired and the entry kept for its refill", st)
	}
	// A new Set restarts the age.
	c.Set([]byte("k"), []byte("v2"))
	clk.Advance(10 * time.Second)
	wantHit(t, c, "k", "v2")
	checkInvariants(t, c)
}

func TestNoMaxAgeNeverReadsClock(t *testing.T) {
	c := New(Options{Now: func() time.Time { panic("clock read without MaxAge") }})
	c.Set([]byte("k"), []byte("v"))
	wantHit(t, c, "k", "v")
}

func TestMemoryBound(t *testing.T) {
	const maxBytes = 64 << 10
	c := New(Options{MaxBytes: maxBytes, Shards: 4})
	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 3000)
	for i := range 5000 {
		key := fmt.Appendf(nil, "row-%d", rng.IntN(2000))
		n := rng.IntN(len(val))
		val[0] = byte(i)
		c.Set(key, val[:n])
		if st := c.Stats(); st.Bytes > maxBytes {
			t.Fatalf("after %d sets: %d bytes, bound %d", i+1, st.Bytes, maxBytes)
		}
	}
	st := c.Stats()
	if st.Evictions == 0 || st.Entries == 0 {
		t.Errorf("Stats = %+v, want evictions and some entries", st)
	}
	checkInvariants(t, c)
	// The newest value of each key is what the cache holds, when it holds one.
	c.Set([]byte("row-1"), []byte("last"))
	wantHit(t, c, "row-1", "last")
}

func TestOversize(t *testing.T) {
	c := New(Options{MaxBytes: 4096, Shards: 1}) // entries up to 1 KiB
	c.Set([]byte("k"), []byte("small"))
	c.Set([]byte("k"), make([]byte, 2000))
	wantMiss(t, c, "k") // the old value must not survive a Set it could not hold
	if st := c.Stats(); st.Oversize != 1 || st.Bytes != 0 {
		t.Errorf("Stats = %+v, want 1 oversize, 0 bytes", st)
	}
	checkInvariants(t, c)
}

func TestClockKeepsHotEntries(t *testing.T) {
	// One shard holding about ten entries; a hot entry read between
	// inserts of cold ones keeps its reference bit and survives.
	c := New(Options{MaxBytes: 10 * (EntryOverheadBytes + 40), Shards: 1})
	val := make([]byte, 32)
	c.Set([]byte("hot"), val)
	for i := range 1000 {
		c.Set(fmt.Appendf(nil, "cold-%04d", i), val)
		if _, _, hit := lookup(c, "hot"); !hit {
			t.Fatalf("hot entry evicted after %d cold inserts", i+1)
		}
	}
	if st := c.Stats(); st.Evictions < 900 {
		t.Errorf("Stats = %+v, want cold entries evicted", st)
	}
	checkInvariants(t, c)
}

func TestHashCollision(t *testing.T) {
	// Two keys under one hash: the later replaces the earlier, and a lookup
	// never answers one key with the other's value.
	c := New(Options{Shards: 1})
	s := &c.shards[0]
	s.put(42, []byte("a"), []byte("va"), true, 0, c.shardBytes, c.maxEntryBytes)
	if _, ok := s.find(42, []byte("b")); ok {
		t.Fatal(`find("b") matched "a"`)
	}
	s.put(42, []byte("b"), []byte("vb"), true, 0, c.shardBytes, c.maxEntryBytes)
	if _, ok := s.find(42, []byte("a")); ok {
		t.Fatal(`"a" still found after "b" took its hash`)
	}
	i, ok := s.find(42, []byte("b"))
	if !ok || string(s.entries[i].value()) != "vb" {
		t.Fatal(`"b" not found after put`)
	}
	checkInvariants(t, c)
}
