package bench

import (
	"context"
	"net/http"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// What both benchmarks sample: latencies into HDR histograms, and the
// server's and this process's resources between two reads of the server's
// stats, once or every second.

// Histogram bounds: latencies are recorded in microseconds.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000 // 60 s
	histDigits    = 3
)

// NewHistogram returns an empty latency histogram: microseconds, 1 µs – 60 s,
// 3 significant digits.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)
}

// record adds d to h in microseconds, clamped to the histogram's range.
func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	us = max(us, histMinMicros)
	us = min(us, histMaxMicros)
	h.RecordValue(us) // cannot fail: us is in range
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	P9999 float64 `json:"p99_99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func percentilesOf(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
		P9999: ms(h.ValueAtQuantile(99.99)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// maxTimeline bounds the seconds a timeline keeps; later ones add to the
// last.
const maxTimeline = 3600

// mark is the server's stats and this process's CPU at one moment.
type mark struct {
	stats     serverStats
	clientCPU float64
	at        time.Time
}

// markNow reads the server's stats and this process's CPU.
func markNow(ctx context.Context, srv *server, c *http.Client) (mark, error) {
	st, err := srv.stats(ctx, c)
	return mark{stats: st, clientCPU: clientCPUSeconds(), at: time.Now()}, err
}

// usage is what the server and this process used between two marks.
type usage struct {
	seconds              float64
	serverCPU, clientCPU float64
	gcCycles             int64
	// gcPause is the server's collector pauses in the period, gcPauseMax
	// the longest (of the last 256 cycles, if there were more).
	gcPause, gcPauseMax time.Duration
}

// until returns what was used from m to n.
func (m mark) until(n mark) usage {
	return usage{
		seconds:   n.at.Sub(m.at).Seconds(),
		serverCPU: n.stats.CPUSeconds - m.stats.CPUSeconds, clientCPU: n.clientCPU - m.clientCPU,
		gcCycles:   n.stats.GCCycles - m.stats.GCCycles,
		gcPause:    time.Duration(n.stats.GCPauseTotalNs - m.stats.GCPauseTotalNs),
		gcPauseMax: longestPause(m.stats, n.stats),
	}
}

// longestPause is the longest collector pause of the cycles between two
// reads of the server's stats (of the last 256 cycles if there were more).
func longestPause(a, b serverStats) time.Duration {
	k := min(int(b.GCCycles-a.GCCycles), len(b.GCPausesNs))
	var longest int64
	for _, p := range b.GCPausesNs[len(b.GCPausesNs)-max(k, 0):] {
		longest = max(longest, p)
	}
	return time.Duration(longest)
}

// cores is the server's CPU use over the period, in cores.
func (u usage) cores() float64 { return ratio(u.serverCPU, u.seconds) }

// sampleSeconds reads the server's stats every second, from prev on, until
// stop is closed or a read fails, and returns one entry a second: what
// each makes of the second numbered second that ran from the stats a to b
// (ok false ends the sampling without an entry).
func sampleSeconds[T any](ctx context.Context, srv *server, c *http.Client, prev mark, stop <-chan struct{},
	each func(second int, a, b mark) (T, bool)) []T {
	var out []T
	t0 := prev.at
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for len(out) < maxTimeline {
		select {
		case <-stop:
			return out
		case <-ctx.Done():
			return out
		case <-ticker.C:
		}
		cur, err := markNow(ctx, srv, c)
		if err != nil {
			return out
		}
		v, ok := each(int(cur.at.Sub(t0).Round(time.Second)/time.Second), prev, cur)
		if !ok {
			return out
		}
		out = append(out, v)
		prev = cur
	}
	return out
}

// clientCPUSeconds is the CPU time (user + system) this process has used.
func clientCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
