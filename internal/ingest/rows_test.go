package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// feedPlan is the plan of the feed example's first view.
func feedPlan(t *testing.T) *tile.Plan {
	t.Helper()
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := tile.Compile(p.Views[0])
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// rowMap finds every row by key even when keys share a hash, which real
// keys almost never do: here all of them do, and some are longer than an
// entry stores inline.
func TestRowMapKeepsKeysApartThatShareAHash(t *testing.T) {
	plan := feedPlan(t)
	keys := []string{"a", "b", "", strings.Repeat("long", 20), strings.Repeat("x", inlineKey), strings.Repeat("y", inlineKey+1)}
	m := newRowMap()
	entries := map[string]*heldRow{}
	for i, k := range keys {
		h := uint64(7) // the same for every key
		if i == len(keys)-1 {
			h = 8 // and one of its own
		}
		if e := m.get(h, []byte(k)); e != nil {
			t.Fatalf("get(%q) before put: %q", k, e.key)
		}
		e := newHeldRow([]byte(k), h, plan)
		if e.key != k || e.hash != h || e.plan != plan || e.row == nil || !e.row.Empty() {
			t.Fatalf("newHeldRow(%q): key %q hash %d, row %v", k, e.key, e.hash, e.row)
		}
		m.put(e)
		entries[k] = e
	}
	check := func(gone map[string]bool) {
		t.Helper()
		n := 0
		for i, k := range keys {
			h := uint64(7)
			if i == len(keys)-1 {
				h = 8
			}
			got := m.get(h, []byte(k))
			switch {
			case gone[k] && got != nil:
				t.Errorf("get(%q) after del: found", k)
			case !gone[k] && got != entries[k]:
				t.Errorf("get(%q) = %v, want its entry", k, got)
			}
			if !gone[k] {
				n++
			}
		}
		if m.len() != n {
			t.Errorf("len = %d, want %d", m.len(), n)
		}
	}
	check(nil)
	// Deleting the key that holds the hash's slot leaves the others found.
	m.del(entries["a"])
	check(map[string]bool{"a": true})
	m.del(entries["b"])
	check(map[string]bool{"a": true, "b": true})
	// A key put after its hash's slot was freed takes it.
	m.put(entries["a"])
	check(map[string]bool{"b": true})
	// evict removes only what drop selects, and no more than asked.
	m.evict(2, func(e *heldRow) bool { return e.key != "" })
	if m.len() != len(keys)-3 {
		t.Fatalf("len after evicting 2 = %d, want %d", m.len(), len(keys)-3)
	}
	m.evict(100, func(e *heldRow) bool { return e.key != "" })
	if m.len() != 1 || m.get(7, nil) != entries[""] {
		t.Fatalf("after evicting all but the empty key: len %d", m.len())
	}
}

// Under random puts, deletes and evictions, with hashes drawn from a small
// set so that probes run long and keys clash, rowMap finds what a plain
// map holds: through growth, tombstones and sweeps.
func TestRowMapMatchesAMap(t *testing.T) {
	plan := feedPlan(t)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 1))
		distinct := []int{3, 50, 5000, 1 << 20}[seed]
		hashOf := func(k string) uint64 {
			// A fixed draw per key from `distinct` values, spread over the
			// top bits, where rowMap takes its slot.
			return (xxhash.Sum64String(k) % uint64(distinct)) * 0x9E3779B97F4A7C15
		}
		m := newRowMap()
		ref := map[string]*heldRow{}
		for step := range 20000 {
			k := fmt.Sprintf("k%d", rng.IntN(3000))
			h := hashOf(k)
			switch op := rng.IntN(10); {
			case op < 5:
				if ref[k] == nil {
					e := newHeldRow([]byte(k), h, plan)
					m.put(e)
					ref[k] = e
				}
			case op < 8:
				if e := ref[k]; e != nil {
					m.del(e)
					delete(ref, k)
				}
			case op < 9:
				if got := m.get(h, []byte(k)); got != ref[k] {
					t.Fatalf("seed %d step %d: get(%s) = %v, want %v", seed, step, k, got, ref[k])
				}
			default:
				n := rng.IntN(20)
				before := m.len()
				m.evict(n, func(e *heldRow) bool { return e.key[len(e.key)-1]%2 == 0 })
				for k, e := range ref {
					if m.get(e.hash, []byte(k)) != e {
						if k[len(k)-1]%2 != 0 {
							t.Fatalf("seed %d step %d: evict removed %s, which drop refused", seed, step, k)
						}
						delete(ref, k)
					}
				}
				if removed := before - m.len(); removed > n || removed != before-len(ref) {
					t.Fatalf("seed %d step %d: evict(%d) removed %d (reference %d)", seed, step, n, removed, before-len(ref))
				}
			}
			if m.len() != len(ref) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, m.len(), len(ref))
			}
		}
		for k, e := range ref {
			if m.get(e.hash, []byte(k)) != e {
				t.Fatalf("seed %d: %s lost", seed, k)
			}
		}
	}
}

// sortByKey orders rows as their keys order bytewise, also where its
// numeric prefixes tie: keys equal in their first 32 bytes, keys that
// differ only by trailing zero bytes, and keys longer than the prefix.
func TestSortByKeyOrdersAsBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	o := &partition{}
	for round := range 200 {
		rows := make([]*heldRow, rng.IntN(300))
		for i := range rows {
			b := make([]byte, rng.IntN(45))
			for j := range b {
				b[j] = []byte{0, 1, 'a', 0xff}[rng.IntN(4)]
			}
			if rng.IntN(3) == 0 && len(b) > 0 {
				b = append(b[:len(b):len(b)], 0) // a trailing zero
			}
			rows[i] = &heldRow{key: string(b)}
		}
		want := slices.Clone(rows)
		slices.SortStableFunc(want, func(a, b *heldRow) int { return strings.Compare(a.key, b.key) })
		o.sortByKey(rows)
		for i := range rows {
			if rows[i].key != want[i].key {
				t.Fatalf("round %d: row %d has key %q, want %q", round, i, rows[i].key, want[i].key)
			}
		}
	}
}

// evict forgets clean rows down to a sixteenth below MaxCachedRows and
// keeps every row not yet written back, however many.
func TestEvictKeepsUnsavedRows(t *testing.T) {
	o := &partition{writer: &Writer{opts: Options{MaxCachedRows: 96}}, rows: newRowMap()}
	var all []*heldRow
	for i := range 300 {
		e := &heldRow{key: fmt.Sprint(i), hash: xxhash.Sum64String(fmt.Sprint(i))}
		if i < 250 {
			e.unsaved = true
			o.unsaved = append(o.unsaved, e)
		}
		o.rows.put(e)
		all = append(all, e)
	}
	kept := func() (n, unsaved int) {
		for _, e := range all {
			if o.rows.get(e.hash, []byte(e.key)) == e {
				n++
				if e.unsaved {
					unsaved++
				}
			}
		}
		return n, unsaved
	}
	o.evict()
	if n, u := kept(); n != 250 || u != 250 || o.rows.len() != 250 {
		t.Fatalf("over the limit with 250 unsaved rows: kept %d (%d unsaved), len %d; want the 250 unsaved", n, u, o.rows.len())
	}
	o.evict() // nothing clean: nothing changes
	if n, _ := kept(); n != 250 {
		t.Fatalf("second evict: kept %d", n)
	}
	// A checkpoint wrote 200 of them back.
	for _, e := range o.unsaved[:200] {
		e.unsaved = false
	}
	o.unsaved = o.unsaved[200:]
	o.evict()
	if n, u := kept(); n != 96-96/16 || u != 50 {
		t.Fatalf("after the checkpoint: kept %d (%d unsaved), want %d (50 unsaved)", n, u, 96-96/16)
	}
}

// Push routes a row key to partition store.KeyHash(key) mod partitions,
// and the partition's row table holds the row under that hash: the hash the
// read cache is told (Options.Changed) and indexes by.
func TestRoutingAndRowsUseKeyHash(t *testing.T) {
	var told atomic.Int64
	f := newFixture(t, nil, Options{Partitions: 3, AfterWrite: func([]store.KV, error) {},
		Changed: func(key []byte, h uint64) bool {
			if h != store.KeyHash(key) {
				t.Errorf("Changed(%q, %#x): the hash is not store.KeyHash", key, h)
			}
			told.Add(1)
			return false
		}})
	src := f.project.Source("clicks")
	var evs []event.Event
	for u := range int64(20) {
		evs = append(evs, f.ev(0, u, 100+u, "a", 1))
	}
	if _, err := f.w.Push(context.Background(), src, evs); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Close(); err != nil { // the partitions have stopped: their rows can be read
		t.Fatal(err)
	}
	if told.Load() == 0 {
		t.Fatal("the read cache was told of no row")
	}
	for u := range int64(20) {
		k := tile.AppendKey(nil, "by_user", []event.Value{event.IntValue(u)})
		part, h := f.w.route(k)
		if h != store.KeyHash(k) || part != int(h%3) {
			t.Fatalf("route(%q) = %d, %#x; KeyHash %#x", k, part, h, store.KeyHash(k))
		}
		if e := f.w.partitions[part].rows.get(store.KeyHash(k), k); e == nil || e.hash != h {
			t.Fatalf("partition %d does not hold the row of user %d under its KeyHash", part, u)
		}
	}
}
