package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/internal/store"
)

// CondStore is a store that also writes rows conditionally (store/redis):
// WriteIf writes each row only if the store still holds its Old value, and
// calls conflict(i) for each row i it left alone.
type CondStore interface {
	store.Store
	store.ConditionalWriter
}

// RunConditional checks WriteIf: rows are written only over what the
// writer saw, conflicts are reported per row and change nothing (also for a
// writer whose new value happens to equal what another wrote), and writers
// racing on the same rows with read-modify-write loops lose no update. open is as for RunWith.
func RunConditional(t *testing.T, open func(t *testing.T) CondStore) {
	ctx := context.Background()
	get := func(t *testing.T, s store.Store, key string) ([]byte, bool) {
		t.Helper()
		var v []byte
		var found bool
		if err := s.Get(ctx, [][]byte{[]byte(key)}, func(_ int, value []byte, f bool) {
			v, found = bytes.Clone(value), f
		}); err != nil {
			t.Fatal(err)
		}
		return v, found
	}
	writeIf := func(t *testing.T, s CondStore, batch ...store.CondKV) []int {
		t.Helper()
		var conflicts []int
		if err := s.WriteIf(ctx, batch, func(i int) { conflicts = append(conflicts, i) }); err != nil {
			t.Fatal(err)
		}
		return conflicts
	}
	kv := func(k, v, old string) store.CondKV {
		c := store.CondKV{Key: []byte(k), Value: []byte(v)}
		if old != "" {
			c.Old = []byte(old)
		}
		return c
	}

	t.Run("WritesOnlyOverWhatWasSeen", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		if c := writeIf(t, s, kv("a", "a1", ""), kv("b", "b1", "")); len(c) != 0 {
			t.Fatalf("creating absent rows: conflicts %v", c)
		}
		// a is as seen, b is not (the writer thinks it absent), c is absent
		// but the writer thinks it exists.
		c := writeIf(t, s, kv("a", "a2", "a1"), kv("b", "b2", ""), kv("c", "c2", "c1"))
		if fmt.Sprint(c) != "[1 2]" {
			t.Fatalf("conflicts %v, want [1 2]", c)
		}
		for key, want := range map[string]string{"a": "a2", "b": "b1"} {
			if v, _ := get(t, s, key); string(v) != want {
				t.Errorf("%s = %q, want %q", key, v, want)
			}
		}
		if _, found := get(t, s, "c"); found {
			t.Error("a conflicting write created row c")
		}
		// A second writer that computed the same new value from the same
		// old one still conflicts: its update is not in the store.
		if c := writeIf(t, s, kv("a", "a2", "a1")); fmt.Sprint(c) != "[0]" {
			t.Fatalf("a second identical write over the old value: conflicts %v, want [0]", c)
		}
	})

	t.Run("RacingWritersLoseNoUpdate", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		const writers, incs, rows = 4, 50, 3
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each writer adds 1 to every row incs times, by reading
				// the rows and writing them back conditionally until the
				// write goes through: a counter that ends below
				// writers*incs lost an update.
				for range incs {
					pending := []int{0, 1, 2}
					for attempt := 0; len(pending) > 0; attempt++ {
						if attempt > 10_000 {
							errs <- fmt.Errorf("writer %d: no progress", w)
							return
						}
						keys := make([][]byte, len(pending))
						for i, r := range pending {
							keys[i] = []byte("n" + strconv.Itoa(r))
						}
						batch := make([]store.CondKV, len(pending))
						if err := s.Get(ctx, keys, func(i int, value []byte, found bool) {
							n := 0
							if found {
								count, _, _ := bytes.Cut(value, []byte("/"))
								n, _ = strconv.Atoi(string(count))
								batch[i].Old = bytes.Clone(value)
							}
							batch[i].Key = keys[i]
							batch[i].Value = []byte(strconv.Itoa(n+1) + "/" + strconv.Itoa(w))
						}); err != nil {
							errs <- err
							return
						}
						var again []int
						if err := s.WriteIf(ctx, batch, func(i int) { again = append(again, pending[i]) }); err != nil {
							errs <- err
							return
						}
						pending = again
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for r := range rows {
			v, _ := get(t, s, "n"+strconv.Itoa(r))
			n, _, _ := bytes.Cut(v, []byte("/"))
			if string(n) != strconv.Itoa(writers*incs) {
				t.Errorf("row %d counted %s, want %d", r, n, writers*incs)
			}
		}
	})
}
