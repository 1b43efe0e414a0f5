package rowcache

import (
	"fmt"
	"testing"

	"github.com/kiln-dev/kiln/internal/store"
)

// The cache finds a key in the shard and index slot of store.KeyHash(key),
// so a writer may pass the hash it routed the key by (ChangedHashed).
func TestCacheIndexesByKeyHash(t *testing.T) {
	c := New(Options{MaxBytes: 1 << 20, Shards: 8})
	for i := range 50 {
		key := []byte(fmt.Sprintf("view\x00key %d", i))
		c.Set(key, []byte("row"))
		h := store.KeyHash(key)
		s := c.shardFor(h)
		s.mu.Lock()
		_, ok := s.find(h, key)
		s.mu.Unlock()
		if !ok {
			t.Fatalf("%q is not under its KeyHash", key)
		}
		if !c.ChangedHashed(key, h) {
			t.Fatalf("ChangedHashed(%q, KeyHash) does not find it", key)
		}
	}
}
