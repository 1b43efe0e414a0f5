package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is everything a run measured; results.json is its JSON.
type Report struct {
	Started time.Time `json:"started"`
	// Command is the command line, when the caller sets it.
	Command string       `json:"command,omitempty"`
	Machine Machine      `json:"machine"`
	Config  ConfigReport `json:"config"`
	Server  ServerReport `json:"server"`
	// Load is the loading of the history; nil if it was skipped.
	Load *LoadResult `json:"load,omitempty"`
	// AfterLoad is the server's memory once the load settled (without a
	// load: before the first step).
	AfterLoad *MemoryReport `json:"after_load,omitempty"`
	// AtEnd is the server's memory after the last step.
	AtEnd *MemoryReport `json:"at_end,omitempty"`
	// Trickle is the slow clients of Config.Trickle, and the server's
	// peak RSS through the measurements.
	Trickle *TrickleResult `json:"trickle,omitempty"`
	// LiveOnlyCPU is the server's CPU use, in cores, while only the live
	// stream ran (measured before the first step): the share of each
	// step's CPU that is ingestion, not serving.
	LiveOnlyCPU float64 `json:"server_cores_live_only"`
	// ClientLag is the load generator's own lateness: the latency of an
	// open loop at ClientLagRate whose calls do nothing (measured beside
	// LiveOnlyCPU). Every measured latency includes it.
	ClientLag     Percentiles `json:"client_lag_ms"`
	ClientLagRate float64     `json:"client_lag_rate"`
	// RowSizes are the bytes per row of each view.
	RowSizes []RowSize  `json:"bytes_per_row"`
	Live     LiveResult `json:"live"`
	Steps    []*Step    `json:"steps"`
	// Overload sums up the overload step (Config.Overload), one entry per
	// query and overloaded rate.
	Overload []OverloadResult `json:"overload,omitempty"`
	// Seconds is the length of the whole run.
	Seconds float64 `json:"seconds"`
}

// Machine describes where the run ran.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	Kernel      string `json:"kernel,omitempty"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	GoVersion   string `json:"go_version"`
}

// ConfigReport is the configuration of a run, as run.
type ConfigReport struct {
	Target            string    `json:"target"`
	Transport         string    `json:"transport"`
	Scale             float64   `json:"scale"`
	Seed              uint64    `json:"seed"`
	HistoryEvents     int       `json:"history_events"`
	Users             int64     `json:"users"`
	Posts             int64     `json:"posts"`
	LiveRate          float64   `json:"live_events_per_second"`
	Q1Rates           []float64 `json:"q1_rates"`
	Q2Rates           []float64 `json:"q2_rates"`
	Duration          string    `json:"duration"`
	Warmup            string    `json:"warmup"`
	SaturationWorkers int       `json:"saturation_workers"`
	// Interleave is the slices each open-loop rate was measured in, Kiln
	// and the floor in turn (1: one step each, Kiln first).
	Interleave     int    `json:"interleave"`
	MaxInFlight    int    `json:"max_in_flight"`
	RequestTimeout string `json:"request_timeout"`
	Q1Requests     int    `json:"q1_pregenerated_requests"`
	Q2Requests     int    `json:"q2_pregenerated_requests"`
}

// ServerReport says which server was measured.
type ServerReport struct {
	URL      string   `json:"url"`
	GRPCAddr string   `json:"grpc_addr,omitempty"`
	AdminURL string   `json:"admin_url,omitempty"`
	Started  bool     `json:"started_by_bench"`
	Command  []string `json:"command,omitempty"`
	DataDir  string   `json:"data_dir,omitempty"`
}

// MemoryReport is the server's memory at one moment.
type MemoryReport struct {
	RSSBytes      int64   `json:"rss_bytes"`
	HeapBytes     int64   `json:"heap_bytes"`
	DiskBytes     int64   `json:"disk_bytes,omitempty"` // the data directory, when the bench owns it
	SettleSeconds float64 `json:"settle_seconds,omitempty"`
}

// RowSize is the average size of the rows of one view actually read.
type RowSize struct {
	View string `json:"view"`
	// Sample says which keys were read: the benchmark's own query keys
	// ("query keys", so hot keys count as often as they are asked for) or
	// ids drawn uniformly ("uniform ids", each entity alike).
	Sample        string  `json:"sample"`
	Keys          int64   `json:"keys"`
	RowsFound     int64   `json:"rows_found"`
	Bytes         int64   `json:"bytes"`
	BytesPerRow   float64 `json:"bytes_per_row"`
	FoundFraction float64 `json:"found_fraction"`
}

// Step is one measurement: one query type against one target at one
// offered rate (open loop) or with a number of workers (closed loop).
type Step struct {
	Query     string `json:"query"`
	Service   string `json:"service"`
	Transport string `json:"transport"`
	// Target is "kiln" (the read path) or "floor" (the store's multi-get).
	Target string `json:"target"`
	// Mode is "open" (fixed rate) or "closed" (saturation).
	Mode       string  `json:"mode"`
	Offered    float64 `json:"offered_rps,omitempty"`
	Workers    int     `json:"workers,omitempty"`
	Achieved   float64 `json:"achieved_rps"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	// Refused counts the requests admission control refused (429,
	// RESOURCE_EXHAUSTED), which are neither in Requests nor in Errors;
	// RefusedLatency is their latency from their due time,
	// RefusedServiceTime from their send.
	Refused            int64        `json:"refused,omitempty"`
	RefusedLatency     *Percentiles `json:"refused_latency_ms,omitempty"`
	RefusedServiceTime *Percentiles `json:"refused_service_time_ms,omitempty"`
	// Latency is corrected for coordinated omission in open loop.
	Latency Percentiles `json:"latency_ms"`
	// ServiceTime is measured from the actual send.
	ServiceTime Percentiles `json:"service_time_ms"`
	// ValuesPerRequest is the feature values one Kiln answer holds; for
	// the floor, RowsPerRequest is the rows one request reads.
	ValuesPerRequest int     `json:"values_per_request"`
	RowsPerRequest   int     `json:"rows_per_request"`
	FeaturesPerS     float64 `json:"features_per_second,omitempty"`
	// ServerCPUSeconds, ClientCPUSeconds and ServerGCCycles cover the
	// measured period.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerGCCycles   int64   `json:"server_gc_cycles"`
	// ServerGCPauseMS is the server's collector pauses over the measured
	// period, in total; ServerGCPauseMaxMS the longest of them: a stall
	// in the latency's max or p99.99 beside a long pause here is the
	// collector's.
	ServerGCPauseMS    float64 `json:"server_gc_pause_ms"`
	ServerGCPauseMaxMS float64 `json:"server_gc_pause_max_ms"`
	// P99VsFloor is Kiln's p99 over the floor's p99 at the same rate.
	P99VsFloor float64 `json:"p99_vs_floor,omitempty"`
	// Distribution is the latency distribution: percentile, latency (ms)
	// and the count up to it, as HdrHistogram prints it.
	Distribution []Point `json:"distribution"`
	// Timeline has the requests, mean and max latency of each second.
	Timeline []Second `json:"timeline"`
	// ServerTimeline has the server's CPU, GC cycles and memory of each
	// second, read from GET /debug/stats: a latency spike in Timeline
	// beside a GC cycle here points at the collector.
	ServerTimeline []ServerSecond `json:"server_timeline"`

	hist *hdrhistogram.Histogram
}

// ServerSecond is what the server used in one second of a step (Second
// counts from the start of the measured period; the one-second reads of
// /debug/stats are themselves a small load).
type ServerSecond struct {
	Second   int     `json:"second"`
	Cores    float64 `json:"cores"`
	GCCycles int64   `json:"gc_cycles"`
	HeapMiB  float64 `json:"heap_mib"`
	RSSMiB   float64 `json:"rss_mib"`
}

// Point is one point of a latency distribution.
type Point struct {
	Percentile float64 `json:"percentile"`
	LatencyMS  float64 `json:"latency_ms"`
	Count      int64   `json:"count"`
}

// fill sets the step's measurements from a runner result.
func (s *Step) fill(r *Result) {
	s.Achieved, s.Requests, s.Errors, s.FirstError = r.Achieved, r.Requests, r.Errors, r.FirstError
	s.Seconds = r.Elapsed.Seconds()
	s.Latency, s.ServiceTime = percentilesOf(r.Latency), percentilesOf(r.Service)
	if s.Target == targetKiln {
		s.FeaturesPerS = r.Achieved * float64(s.ValuesPerRequest)
	}
	s.hist, s.Timeline = r.Latency, r.Timeline
	if s.Refused = r.Refused; r.Refused > 0 {
		l, st := percentilesOf(r.RefusedLatency), percentilesOf(r.RefusedService)
		s.RefusedLatency, s.RefusedServiceTime = &l, &st
	}
	for _, b := range r.Latency.CumulativeDistributionWithTicks(5) {
		s.Distribution = append(s.Distribution, Point{Percentile: b.Quantile, LatencyMS: float64(b.ValueAt) / 1000, Count: b.Count})
	}
}

// Targets of a step.
const (
	targetKiln  = "kiln"
	targetFloor = "floor"
)

// machineInfo describes this machine, from /proc where there is one.
func machineInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryBytes = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// writeResults writes a report as results.json in dir.
func writeResults(dir string, report any) error {
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644)
}

// PrintSummary writes the load figures, memory, bytes per row and the
// table of steps.
func (r *Report) PrintSummary(w io.Writer) {
	fmt.Fprintf(w, "RW1 at scale %g, seed %d: %d users, %d posts; %s, %d CPUs (%s)\n",
		r.Config.Scale, r.Config.Seed, r.Config.Users, r.Config.Posts, r.Server.URL, r.Machine.CPUs, r.Machine.CPUModel)
	if l := r.Load; l != nil {
		fmt.Fprintf(w, "load: %d events in %.1f s = %.0f events/s through POST /v1/push (%d pushers, %d events a push; %d dropped late)\n",
			l.Accepted+l.DroppedLate, l.Seconds, l.EventsPerS, l.Pushers, l.BatchEvents, l.DroppedLate)
	}
	if m := r.AfterLoad; m != nil {
		when := "after loading"
		if r.Load == nil {
			when = "before the first step (history not loaded by this run)"
		}
		fmt.Fprintf(w, "server memory %s: RSS %s, Go heap %s", when, mib(m.RSSBytes), mib(m.HeapBytes))
		if m.DiskBytes > 0 {
			fmt.Fprintf(w, ", data directory %s", mib(m.DiskBytes))
		}
		fmt.Fprintf(w, " (after %.0f s to settle)\n", m.SettleSeconds)
	}
	if m := r.AtEnd; m != nil {
		fmt.Fprintf(w, "server memory at the end: RSS %s, Go heap %s\n", mib(m.RSSBytes), mib(m.HeapBytes))
	}
	if t := r.Trickle; t != nil {
		fmt.Fprintf(w, "server peak RSS during the measurements: %s", mib(t.PeakRSSBytes))
		if t.Connections > 0 {
			fmt.Fprintf(w, "; %d clients trickled a push body a byte every %s: %d connections cut off by the server, %d bytes sent",
				t.Connections, t.Every, t.CutOff, t.BytesSent)
		}
		fmt.Fprintln(w)
	}
	if len(r.RowSizes) > 0 {
		fmt.Fprintln(w, "bytes per row (from /debug/rows: bytes / rows_found; \"query keys\" are hot-key weighted, each key counted as often as queries ask for it):")
		for _, s := range r.RowSizes {
			fmt.Fprintf(w, "  %-16s %-11s %8.0f bytes/row  (%d keys read, %.1f%% had a row)\n",
				s.View, s.Sample, s.BytesPerRow, s.Keys, 100*s.FoundFraction)
		}
	}
	if l := r.Live; l.Offered > 0 {
		fmt.Fprintf(w, "live stream during measurement: %.0f events/s offered, %.0f accepted/s over %.0f s (%d failed; push p99 %.1f ms); server used %.2f cores with only the live stream\n",
			l.Offered, l.Achieved, l.Seconds, l.Failed, l.PushLatency.P99, r.LiveOnlyCPU)
	}
	if r.ClientLagRate > 0 {
		c := r.ClientLag
		fmt.Fprintf(w, "load generator's own lateness (open loop at %g/s, calls that do nothing): p50 %.3f, p99 %.3f, p99.9 %.3f, max %.3f ms\n",
			r.ClientLagRate, c.P50, c.P99, c.P999, c.Max)
	}
	fmt.Fprintln(w)
	r.PrintTable(w)
	if len(r.Overload) > 0 {
		fmt.Fprintln(w)
		r.PrintOverload(w)
	}
}

// OverloadResult is one overloaded rate of the overload step: a query
// offered Factor times its saturation rate (what a closed loop achieved),
// beside the same query at half that rate.
type OverloadResult struct {
	Query         string  `json:"query"`
	Transport     string  `json:"transport"`
	SaturationRPS float64 `json:"saturation_rps"`
	Factor        float64 `json:"factor"`
	Offered       float64 `json:"offered_rps"`
	// AdmittedRPS is the rate of successful answers; Goodput is it over
	// SaturationRPS.
	AdmittedRPS float64 `json:"admitted_rps"`
	Goodput     float64 `json:"goodput"`
	// RefusedFraction is the share of the answered requests that were
	// refused.
	RefusedFraction float64 `json:"refused_fraction"`
	// AdmittedP99MS is the p99 of the successful answers (from their due
	// time), HalfP99MS the same at half the saturation rate.
	AdmittedP99MS float64 `json:"admitted_p99_ms"`
	HalfP99MS     float64 `json:"half_saturation_p99_ms"`
	// RefusedP99MS is the refusals' p99 from their due time,
	// RefusedServiceP99MS from their send (without the client's own
	// lateness).
	RefusedP99MS        float64 `json:"refused_p99_ms"`
	RefusedServiceP99MS float64 `json:"refused_service_p99_ms"`
	Errors              int64   `json:"errors"`
}

// PrintOverload writes one line per overloaded rate.
func (r *Report) PrintOverload(w io.Writer) {
	fmt.Fprintln(w, "overload (aims: refusals p99 < 5 ms; admitted p99 within 2 × its p99 at half saturation; goodput ≥ 90 % of saturation):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "query\ttransport\tsat/s\toffered/s\tadmitted/s\tgoodput\trefused\trefused p99 ms\t(from send)\tadmitted p99 ms\tat sat/2\terrors\t")
	for _, o := range r.Overload {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f (%g×)\t%.0f\t%.0f%%\t%.0f%%\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\n",
			o.Query, o.Transport, o.SaturationRPS, o.Offered, o.Factor, o.AdmittedRPS, 100*o.Goodput, 100*o.RefusedFraction,
			o.RefusedP99MS, o.RefusedServiceP99MS, o.AdmittedP99MS, o.HalfP99MS, o.Errors)
	}
	tw.Flush()
}

// PrintTable writes one line per step.
func (r *Report) PrintTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "query\ttransport\ttarget\toffered/s\tachieved/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tp99.99 ms\tmax ms\terrors\trefused\tfeatures/s\tsrv CPU-s\tcli CPU-s\tGC pause ms\tlongest GC ms\tp99/floor\t")
	for _, s := range r.Steps {
		offered := fmt.Sprintf("%.0f", s.Offered)
		if s.Mode == "closed" {
			offered = fmt.Sprintf("sat %dw", s.Workers)
		}
		feats, ratio := "-", "-"
		if s.Target == targetKiln {
			feats = fmt.Sprintf("%.0f", s.FeaturesPerS)
			if s.P99VsFloor > 0 {
				ratio = fmt.Sprintf("%.2f", s.P99VsFloor)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%s\t%.2f\t%.2f\t%.3f\t%.3f\t%s\t\n",
			s.Query, s.Transport, s.Target, offered, s.Achieved,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.P999, s.Latency.P9999, s.Latency.Max,
			s.Errors, s.Refused, feats, s.ServerCPUSeconds, s.ClientCPUSeconds, s.ServerGCPauseMS, s.ServerGCPauseMaxMS, ratio)
	}
	tw.Flush()
	for _, s := range r.Steps {
		if s.FirstError != "" {
			fmt.Fprintf(w, "%s %s %s: first error: %s\n", s.Query, s.Target, rateName(s), s.FirstError)
		}
	}
}

func rateName(s *Step) string {
	if s.Mode == "closed" {
		return fmt.Sprintf("saturation with %d workers", s.Workers)
	}
	return fmt.Sprintf("at %g/s", s.Offered)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a/b) {
		return 0
	}
	return a / b
}
