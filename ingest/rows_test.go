package ingest

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/tile"
)

// rowMap finds every row by key even when keys share a hash, which real
// keys almost never do: here all of them do, and some are longer than an
// entry stores inline.
func TestRowMapKeepsKeysApartThatShareAHash(t *testing.T) {
	p, err := definition.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := tile.Compile(p.Views[0])
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "b", "", strings.Repeat("long", 20), strings.Repeat("x", inlineKey), strings.Repeat("y", inlineKey+1)}
	m := newRowMap()
	entries := map[string]*entry{}
	for i, k := range keys {
		h := uint64(7) // the same for every key
		if i == len(keys)-1 {
			h = 8 // and one of its own
		}
		if e := m.get(h, []byte(k)); e != nil {
			t.Fatalf("get(%q) before put: %q", k, e.key)
		}
		e := newEntry([]byte(k), h, plan)
		if e.key != k || e.hash != h || e.plan != plan || e.row == nil || !e.row.Empty() {
			t.Fatalf("newEntry(%q): key %q hash %d, row %v", k, e.key, e.hash, e.row)
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
	m.evict(2, func(e *entry) bool { return e.key != "" })
	if m.len() != len(keys)-3 {
		t.Fatalf("len after evicting 2 = %d, want %d", m.len(), len(keys)-3)
	}
	m.evict(100, func(e *entry) bool { return e.key != "" })
	if m.len() != 1 || m.get(7, nil) != entries[""] {
		t.Fatalf("after evicting all but the empty key: len %d", m.len())
	}
}
