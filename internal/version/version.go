// Package version owns what a Kiln binary says of its own build: the module
// version, the VCS revision and the Go version, read once from the build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo). kiln
// version prints it, the start log line carries it, and so does the
// kiln_build_info metric.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Info is a build's identity.
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0, or
	// "(devel)" for a build from a working tree.
	Version string
	// Revision is the VCS commit the binary was built from, with
	// "-dirty" appended when the tree had changes; "unknown" when the
	// build recorded none (go run, go test).
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// String is the one line kiln version prints.
func (i Info) String() string {
	return fmt.Sprintf("kiln %s (revision %s, %s)", i.Version, i.Revision, i.GoVersion)
}

var (
	once sync.Once
	info Info
)

// Get returns the running binary's build information.
func Get() Info {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		info = fromBuildInfo(bi, ok)
	})
	return info
}

// fromBuildInfo reads an Info from what debug.ReadBuildInfo returned.
func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	out := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return out
	}
	if v := bi.Main.Version; v != "" {
		out.Version = v
	}
	if bi.GoVersion != "" {
		out.GoVersion = bi.GoVersion
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && out.Revision != "unknown" {
		out.Revision += "-dirty"
	}
	return out
}
