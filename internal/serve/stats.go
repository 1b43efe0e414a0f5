package serve

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// handleStats reports the process's resource use and the write path's
// counters: what kiln-bench reads before and after a run to charge the
// server's CPU seconds, memory and collector pauses. It is a JSON view of
// numbers /metrics has too (process_cpu_seconds_total, go_memstats_*,
// go_gc_duration_seconds, kiln_ingest_*, kiln_stream_*), kept because
// kiln-bench reads them in one request, with the pauses of each cycle.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := map[string]any{
		"cpu_seconds":    CPUSeconds(),
		"rss_bytes":      rssBytes(),
		"heap_bytes":     ms.HeapAlloc,
		"sys_bytes":      ms.Sys,
		"gc_cycles":      ms.NumGC,
		"gc_pause_total": time.Duration(ms.PauseTotalNs).String(),
		// The pauses, for kiln-bench's longest pause of a step: the total,
		// and the last cycles' (up to 256, oldest first).
		"gc_pause_total_ns": ms.PauseTotalNs,
		"gc_pauses_ns":      recentPauses(&ms),
		"goroutines":        runtime.NumGoroutine(),
		"gomaxprocs":        runtime.GOMAXPROCS(0),
	}
	if s.cfg.Writer != nil {
		out["ingest"] = s.cfg.Writer.Stats()
	}
	if s.cfg.Stats != nil {
		for k, v := range s.cfg.Stats() {
			out[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(out)
	w.Write(append(b, '\n'))
}

// recentPauses returns the stop-the-world pauses of the last collector
// cycles runtime.MemStats remembers (up to 256), oldest first, in ns.
func recentPauses(ms *runtime.MemStats) []uint64 {
	n := min(ms.NumGC, uint32(len(ms.PauseNs)))
	out := make([]uint64, n)
	for i := range n {
		out[i] = ms.PauseNs[(ms.NumGC-n+i)%uint32(len(ms.PauseNs))]
	}
	return out
}

// CPUSeconds is the CPU time (user + system) this process has used.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// rssBytes is the resident set size, from /proc (0 where there is none).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// servePprof serves the Go profiler under /debug/pprof/ (go tool pprof
// http://ADMIN/debug/pprof/profile?seconds=10) on the admin listener, so
// an operator can see where a server spends its time.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Index(w, r)
	}
}
