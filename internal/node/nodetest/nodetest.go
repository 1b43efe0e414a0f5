// Package nodetest starts whole Kiln processes (package node) inside tests.
package nodetest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// Start parses the project file text src (name is the file name errors
// give) and starts a node on it: its data in a temporary directory, its
// HTTP API and its admin listener on free loopback ports, its event archive in the data
// directory (Node.Archive; Node.Journal.Flush writes what it holds), and
// the write path's clock stopped at now. The node is closed when tb ends.
func Start(tb testing.TB, name string, src []byte, now time.Time) (*node.Node, *definition.Project) {
	tb.Helper()
	return StartClock(tb, name, src, func() time.Time { return now })
}

// StartClock is Start with the write path's (and so the read path's) clock
// given: a test moves it to push and read at the instants it chooses.
func StartClock(tb testing.TB, name string, src []byte, clock func() time.Time) (*node.Node, *definition.Project) {
	tb.Helper()
	p, err := projectfile.Parse(name, src)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	arch, err := archive.NewDir(filepath.Join(dir, "archive"))
	if err != nil {
		tb.Fatal(err)
	}
	n, err := node.Start(node.Config{
		Project: p, DataDir: dir, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Archive: archive.New(arch),
		Ingest: ingest.Options{Now: clock},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return n, p
}
