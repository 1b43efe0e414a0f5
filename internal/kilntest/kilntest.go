// Package kilntest holds the set-up that tests across Kiln's packages share:
// a project compiled from the text of a project file, and an embedded store
// in memory. Each helper fails the test on error and releases what it opened
// when the test ends.
package kilntest

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/store/pebble"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Compile parses the project file text src (name is the file name errors
// give) and compiles the tile plan of each of its views.
func Compile(tb testing.TB, name string, src []byte) (*definition.Project, map[*definition.View]*tile.Plan) {
	tb.Helper()
	p, err := projectfile.Parse(name, src)
	if err != nil {
		tb.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		tb.Fatal(err)
	}
	return p, plans
}

// MemStore opens an empty embedded store kept in memory, closed when tb
// ends (after the cleanups registered later, such as a write path's).
func MemStore(tb testing.TB) *pebble.Store {
	tb.Helper()
	st, err := pebble.Open("db", pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
