package rowcache

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// memoRead reads keys with LoadMemo from store (a map: absent keys have no
// row). For every key it records the memo it was handed, and keeps
// keep(key, value) with the row when that is non-empty.
func memoRead(t *testing.T, c *Cache, store map[string]string, keep func(k, v string) string, keys ...string) map[string]string {
	t.Helper()
	bk := make([][]byte, len(keys))
	for i, k := range keys {
		bk[i] = []byte(k)
	}
	load := func(_ context.Context, ks [][]byte, fn func(int, []byte, bool)) error {
		for i, k := range ks {
			v, ok := store[string(k)]
			fn(i, []byte(v), ok)
		}
		return nil
	}
	seen := map[string]string{}
	err := c.LoadMemo(context.Background(), bk, load, func(i int, value []byte, found bool, memo []byte) []byte {
		if found && string(value) != store[keys[i]] {
			t.Errorf("key %s: value %q, store holds %q", keys[i], value, store[keys[i]])
		}
		seen[keys[i]] = string(memo)
		if m := keep(keys[i], string(value)); m != "" {
			return []byte(m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func derive(k, v string) string   { return "memo(" + v + ")" }
func keepNone(k, v string) string { return "" }

func TestMemoKeptWhileTheRowIsTheSame(t *testing.T) {
	clk := newClock()
	c := New(Options{MaxAge: time.Second, Now: clk.Now})
	store := map[string]string{"a": "1", "b": "2", "c": "3"}

	// Loaded rows: no memo yet; the one returned is kept.
	if seen := memoRead(t, c, store, derive, "a", "b"); seen["a"] != "" || seen["b"] != "" {
		t.Fatalf("first read saw memos %q", seen)
	}
	// Hits before and after a miss ("c") see the memos, unchanged.
	seen := memoRead(t, c, store, keepNone, "a", "c", "b")
	if seen["a"] != "memo(1)" || seen["b"] != "memo(2)" || seen["c"] != "" {
		t.Fatalf("second read saw %q", seen)
	}
	// Plain reads still see the rows alone.
	wantHit(t, c, "a", "1")

	// A refill after MaxAge with the same bytes keeps the memo, and hands it
	// out with the loaded row.
	clk.Advance(2 * time.Second)
	if seen := memoRead(t, c, store, keepNone, "a"); seen["a"] != "memo(1)" {
		t.Fatalf("a refill with the same row handed out memo %q, want memo(1)", seen["a"])
	}
	if seen := memoRead(t, c, store, keepNone, "a"); seen["a"] != "memo(1)" {
		t.Fatalf("after a refill with the same row: memo %q, want memo(1)", seen["a"])
	}
	if st := c.Stats(); st.Expired == 0 || st.Loads < 3 {
		t.Fatalf("Stats %+v: the row was not refilled", st)
	}
	// A refill with other bytes drops it.
	clk.Advance(2 * time.Second)
	store["a"] = "1b"
	if seen := memoRead(t, c, store, keepNone, "a"); seen["a"] != "" {
		t.Fatalf("a refill with a new row handed out memo %q", seen["a"])
	}
	if seen := memoRead(t, c, store, keepNone, "a"); seen["a"] != "" {
		t.Fatalf("after the row changed in the store: memo %q, want none", seen["a"])
	}

	// Set and Update: the same bytes keep the memo, new bytes drop it.
	memoRead(t, c, store, derive, "b")
	c.Set([]byte("b"), []byte("2"))
	if seen := memoRead(t, c, store, keepNone, "b"); seen["b"] != "memo(2)" {
		t.Fatalf("after a Set of the same row: memo %q", seen["b"])
	}
	store["b"] = "22"
	c.Update([]byte("b"), []byte("22"))
	if seen := memoRead(t, c, store, keepNone, "b"); seen["b"] != "" {
		t.Fatalf("after an Update to a new row: memo %q, want none", seen["b"])
	}
	// A longer memo replaces a shorter one whole.
	memoRead(t, c, store, func(k, v string) string { return "x" }, "b")
	memoRead(t, c, store, func(k, v string) string { return "a longer memo than before" }, "b")
	if seen := memoRead(t, c, store, keepNone, "b"); seen["b"] != "a longer memo than before" {
		t.Fatalf("memo %q", seen["b"])
	}
	wantHit(t, c, "b", "22")
}

func TestMemoCountsAgainstMaxBytes(t *testing.T) {
	const maxBytes = 64 << 10
	c := New(Options{MaxBytes: maxBytes, Shards: 1})
	store := map[string]string{}
	var keys []string
	for i := range 400 {
		k := fmt.Sprintf("key-%03d", i)
		store[k] = fmt.Sprintf("%0100d", i)
		keys = append(keys, k)
	}
	big := func(k, v string) string { return fmt.Sprintf("%0300s", v) }
	for range 3 {
		memoRead(t, c, store, big, keys...)
		if st := c.Stats(); st.Bytes > maxBytes {
			t.Fatalf("Stats.Bytes = %d over MaxBytes %d", st.Bytes, maxBytes)
		}
		checkInvariants(t, c)
	}
	st := c.Stats()
	if st.Evictions == 0 {
		t.Fatalf("no evictions: the memos were not accounted (Stats %+v)", st)
	}
	// The rows that stayed still read back whole, with their memos.
	seen := memoRead(t, c, store, keepNone, keys...)
	kept := 0
	for _, k := range keys {
		if m := seen[k]; m != "" {
			kept++
			if m != big(k, store[k]) {
				t.Fatalf("key %s: memo %q", k, m)
			}
		}
	}
	if kept == 0 {
		t.Fatal("no memo survived")
	}
}
