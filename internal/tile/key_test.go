package tile

import (
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/store"
)

// drawKey draws an entity key: one to four values of any kind, strings
// with any bytes (0 included).
func drawKey(t *rapid.T) []event.Value {
	key := make([]event.Value, rapid.IntRange(1, 4).Draw(t, "key values"))
	for i := range key {
		switch rapid.IntRange(0, 4).Draw(t, "kind") {
		case 0:
			key[i] = event.IntValue(rapid.Int64().Draw(t, "int"))
		case 1:
			key[i] = event.StringValue(rapid.String().Draw(t, "string"))
		case 2:
			key[i] = event.StringValue(string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes")))
		case 3:
			key[i] = event.FloatValue(rapid.Float64().Draw(t, "float"))
		default:
			key[i] = event.BoolValue(rapid.Bool().Draw(t, "bool"))
		}
	}
	return key
}

// No row key of a view the project loader accepts (a lower-case name:
// [a-z_][a-z0-9_]*) begins with store.ReservedPrefix, whatever the entity
// key: the write path's event log, under that prefix, never meets a row.
func TestRowKeysAreNeverReserved(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		view := rapid.StringMatching(`[a-z_][a-z0-9_]{0,40}`).Draw(t, "view")
		k := AppendKey(nil, view, drawKey(t))
		if store.Reserved(k) || strings.HasPrefix(string(k), store.ReservedPrefix) {
			t.Fatalf("the row key %q of view %q begins with the reserved prefix", k, view)
		}
	})
}

// Only a view name that is empty or begins with a 0 byte, which the loader
// refuses, could make a reserved row key.
func TestOnlyRefusedViewNamesMakeReservedKeys(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		view := rapid.String().Draw(t, "view")
		k := AppendKey(nil, view, drawKey(t))
		refused := view == "" || view[0] == 0
		if store.Reserved(k) != refused {
			t.Fatalf("view %q: key %q reserved %v, want %v", view, k, store.Reserved(k), refused)
		}
	})
}
