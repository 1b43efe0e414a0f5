package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Garbage-collector defaults of kiln serve and kiln demo (docs/operations.md
// says why). An environment variable set by the operator always wins.
const (
	// defaultGOGC lets the heap grow to 3× the live heap between
	// collections: the live heap is mostly long-lived rows (the write
	// path's rows, the row cache), so collecting at 2× (GOGC=100) spends
	// CPU re-marking the same rows, and each cycle's assists land on
	// request goroutines, in the tail.
	defaultGOGC = 200
	// memoryLimitFraction of a container's memory limit becomes the soft
	// GOMEMLIMIT, so GOGC=200 never walks the process into the OOM killer:
	// near the limit the collector runs as often as it must.
	memoryLimitFraction = 0.9
)

// applyGCDefaults sets GOGC and GOMEMLIMIT unless the environment does, and
// returns what it set, for the log.
func applyGCDefaults() (gogc int, limit int64) {
	gogc = -1
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
		gogc = defaultGOGC
	}
	limit = -1
	if os.Getenv("GOMEMLIMIT") == "" {
		if c := cgroupMemoryLimit(); c > 0 {
			limit = int64(float64(c) * memoryLimitFraction)
			debug.SetMemoryLimit(limit)
		}
	}
	return gogc, limit
}

// cgroupMemoryLimit is the cgroup v2 (or v1) memory limit of this process,
// or 0 when there is none.
func cgroupMemoryLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}
