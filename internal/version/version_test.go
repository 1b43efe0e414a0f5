package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	f := func(bi *debug.BuildInfo, ok bool, want Info) {
		t.Helper()
		if got := fromBuildInfo(bi, ok); got != want {
			t.Errorf("fromBuildInfo = %+v, want %+v", got, want)
		}
	}
	f(nil, false, Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()})
	f(&debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}},
		true, Info{Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.99"})
	f(&debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
		true, Info{Version: "(devel)", Revision: "abc123-dirty", GoVersion: "go1.99"})
	// A dirty tree without a revision stays "unknown".
	f(&debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}},
		true, Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()})
}

func TestGetNamesThisToolchain(t *testing.T) {
	if got := Get(); got.GoVersion == "" || got.Version == "" || got.Revision == "" {
		t.Fatalf("Get() = %+v: every field must say something", got)
	}
}
