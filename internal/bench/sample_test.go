package bench

import (
	"testing"
	"time"
)

// A step's longest collector pause is the longest of the cycles that ran
// during it, not of those before it.
func TestLongestPause(t *testing.T) {
	f := func(a, b serverStats, want time.Duration) {
		t.Helper()
		if got := longestPause(a, b); got != want {
			t.Errorf("longestPause(%d cycles, %d cycles %v) = %v, want %v", a.GCCycles, b.GCCycles, b.GCPausesNs, got, want)
		}
	}
	before := serverStats{GCCycles: 3, GCPausesNs: []int64{900, 20, 30}}
	f(before, serverStats{GCCycles: 3, GCPausesNs: []int64{900, 20, 30}}, 0)
	f(before, serverStats{GCCycles: 5, GCPausesNs: []int64{900, 20, 30, 70, 40}}, 70)
	// More cycles than the server remembers: the longest of those it does.
	f(before, serverStats{GCCycles: 300, GCPausesNs: []int64{5, 6, 7}}, 7)
	// A server that restarted (fewer cycles) reports nothing.
	f(before, serverStats{GCCycles: 1, GCPausesNs: []int64{800}}, 0)
}
