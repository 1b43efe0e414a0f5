package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/workload"
)

// The ingest benchmark (kiln-bench ingest) measures ingestion against the
// ingestion targets (docs/workload.md) on the embedded store, each phase
// against a kiln serve child process of its own:
//
//  1. push: RW1 live events POSTed to /v1/push in batches from several
//     connections, back to back, for a fixed period; events accepted per
//     server CPU-second.
//  2. kafka: a backlog of RW1 events produced to an in-process Kafka
//     (franz-go's kfake) before the server starts; the server's Kafka
//     source reads it to the end; messages applied per server CPU-second.
//  3. freshness: a fresh server on phase 2's data directory and consumer
//     group; RW1 events produced at a steady rate while Q2 runs open loop;
//     the server's freshness histogram (Kafka record timestamp to durable
//     and visible) and Q2's latency.

// Phases of the ingest benchmark.
const (
	PhasePush      = "push"
	PhaseKafka     = "kafka"
	PhaseFreshness = "freshness"
	// PhaseArchive runs the push phase ArchiveRounds times without the
	// event archive and as many with it, alternated (not a default phase).
	PhaseArchive = "archive"
)

// The ingestion targets: push and Kafka throughput per server core, and
// freshness (event to durable and visible) on the embedded store.
const (
	AimPushPerCore  = 500_000 // events/s per core, push API batch path
	AimKafkaPerCore = 200_000 // events/s per core, from Kafka
	AimFreshnessP99 = 100.0   // ms, freshness p99 in embedded mode
)

// Fixed parts of an ingest run.
const (
	ingestTopic        = "engagements"
	ingestGroup        = "kiln-bench-ingest"
	ingestPollInterval = 100 * time.Millisecond // of /debug/stats while waiting for a backlog
	freshTick          = 10 * time.Millisecond  // the steady producer's tick
	probeTimeout       = 60 * time.Second       // for the consumer to join and apply the probe
	drainTimeout       = 60 * time.Second       // after the steady stream, for the lag to reach 0
	maxKafkaEvents     = 100_000_000
)

// IngestConfig configures an ingest run. DefaultIngestConfig returns the
// documented defaults.
type IngestConfig struct {
	// ServerCommand is the argv that starts "kiln serve" (flags are
	// added): a kiln binary, "serve" and any flags of its own.
	ServerCommand []string
	// DataDir holds the servers' data directories (push/, kafka/); empty
	// means a temporary directory, removed at the end.
	DataDir string
	// OnlineStore, when set, is the online_store mapping of the project
	// files the servers run, as a project file writes it (flow style, like
	// "{type: redis, addrs: [127.0.0.1:6379]}"); empty is the embedded
	// store. The bench does not empty a shared store between phases.
	OnlineStore string
	// Phases to run, of PhasePush, PhaseKafka, PhaseFreshness (freshness
	// needs kafka).
	Phases []string
	// Scale and Seed select the RW1 instance (entities, Zipf laws).
	Scale float64
	Seed  uint64

	// PushConns concurrent connections each push batches of PushBatch
	// events back to back, PushWarmup unmeasured, then PushDuration
	// measured. PushPool events are generated and encoded before the
	// clock starts and pushed in turn (cycled if the run is longer).
	PushConns, PushBatch, PushPool int
	PushDuration, PushWarmup       time.Duration

	// KafkaEvents are produced to a topic of KafkaPartitions partitions
	// (keyed by user) before the server starts; the server must apply them
	// all within KafkaTimeout.
	KafkaEvents, KafkaPartitions int
	KafkaTimeout                 time.Duration

	// ArchiveRounds is how many push runs the archive phase makes with
	// the event archive, and as many without, alternated.
	ArchiveRounds int

	// FreshRate events/s are produced for FreshWarmup + FreshDuration
	// while Q2 runs open loop at Q2Rate (its first FreshWarmup not
	// recorded).
	FreshRate, Q2Rate          float64
	FreshDuration, FreshWarmup time.Duration
	MaxInFlight                int
	RequestTimeout             time.Duration

	// Profile, if > 0, takes a server CPU profile of this length in each
	// phase's measured period and writes <phase>.pprof to OutDir.
	Profile time.Duration

	// OutDir receives results.json (and profiles); empty: no files.
	OutDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Command is the command line, recorded in the report.
	Command string
}

// DefaultIngestConfig returns the defaults of kiln-bench ingest.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{
		Phases: []string{PhasePush, PhaseKafka, PhaseFreshness},
		Scale:  1, Seed: 1,
		PushConns: 8, PushBatch: 1000, PushPool: 1_000_000,
		PushDuration: 20 * time.Second, PushWarmup: 3 * time.Second,
		ArchiveRounds: 3,
		KafkaEvents:   2_000_000, KafkaPartitions: 8, KafkaTimeout: 3 * time.Minute,
		FreshRate: 5000, Q2Rate: 50, FreshDuration: 30 * time.Second, FreshWarmup: 3 * time.Second,
		MaxInFlight: DefaultMaxInFlight, RequestTimeout: 10 * time.Second,
	}
}

// Check reports the values out of range, as an error wrapping ErrConfig.
func (c *IngestConfig) Check() error {
	var bad problems
	if len(c.Phases) == 0 {
		bad.add("no phase to run: name some of %s, %s, %s", PhasePush, PhaseKafka, PhaseFreshness)
	}
	for _, p := range c.Phases {
		if p != PhasePush && p != PhaseKafka && p != PhaseFreshness && p != PhaseArchive {
			bad.add("phase %q: use %s, %s, %s or %s", p, PhasePush, PhaseKafka, PhaseFreshness, PhaseArchive)
		}
	}
	if c.has(PhaseFreshness) && !c.has(PhaseKafka) {
		bad.add("phase %s runs on the data and consumer group of phase %s: run both", PhaseFreshness, PhaseKafka)
	}
	bad.scale(c.Scale)
	if c.PushConns < 1 || c.PushConns > 256 {
		bad.add("push connections %d: want 1..256", c.PushConns)
	}
	if c.PushBatch < 1 || c.PushBatch > maxPushEvents {
		bad.add("push batch %d: want 1..%d events", c.PushBatch, maxPushEvents)
	}
	if c.PushPool < c.PushBatch || c.PushPool > 20_000_000 {
		bad.add("push pool %d: want batch..20000000 events", c.PushPool)
	}
	if c.PushDuration <= 0 || c.PushWarmup < 0 {
		bad.add("push duration %v, warm-up %v: want duration > 0, warm-up ≥ 0", c.PushDuration, c.PushWarmup)
	}
	if c.ArchiveRounds < 1 || c.ArchiveRounds > 100 {
		bad.add("archive rounds %d: want 1..100", c.ArchiveRounds)
	}
	if c.KafkaEvents < 1 || c.KafkaEvents > maxKafkaEvents {
		bad.add("kafka events %d: want 1..%d", c.KafkaEvents, maxKafkaEvents)
	}
	if c.KafkaPartitions < 1 || c.KafkaPartitions > 1024 {
		bad.add("kafka partitions %d: want 1..1024", c.KafkaPartitions)
	}
	if c.KafkaTimeout <= 0 {
		bad.add("kafka timeout %v: want > 0", c.KafkaTimeout)
	}
	if !(c.FreshRate > 0) || c.FreshRate > 1e6 || !(c.Q2Rate > 0) || c.Q2Rate > 1e5 {
		bad.add("freshness rate %v events/s and Q2 rate %v/s: want 0 < events ≤ 1e6, 0 < Q2 ≤ 1e5", c.FreshRate, c.Q2Rate)
	}
	if c.FreshDuration <= 0 || c.FreshWarmup < 0 {
		bad.add("freshness duration %v, warm-up %v: want duration > 0, warm-up ≥ 0", c.FreshDuration, c.FreshWarmup)
	}
	bad.maxInFlight(c.MaxInFlight)
	if c.RequestTimeout <= 0 || c.Profile < 0 {
		bad.add("request timeout %v, profile %v: want timeout > 0, profile ≥ 0", c.RequestTimeout, c.Profile)
	}
	return bad.err("bench ingest")
}

func (c *IngestConfig) has(phase string) bool { return slices.Contains(c.Phases, phase) }

// IngestReport is what an ingest run measured; results.json is its JSON.
type IngestReport struct {
	Started   time.Time          `json:"started"`
	Command   string             `json:"command,omitempty"`
	Machine   Machine            `json:"machine"`
	Config    IngestConfigReport `json:"config"`
	Push      *PushPhase         `json:"push,omitempty"`
	Kafka     *KafkaPhase        `json:"kafka,omitempty"`
	Freshness *FreshnessPhase    `json:"freshness,omitempty"`
	Archive   *ArchivePhase      `json:"archive,omitempty"`
	Seconds   float64            `json:"seconds"`
}

// IngestConfigReport is the configuration of a run, as run.
type IngestConfigReport struct {
	Phases          []string `json:"phases"`
	Scale           float64  `json:"scale"`
	Seed            uint64   `json:"seed"`
	Users           int64    `json:"users"`
	Posts           int64    `json:"posts"`
	PushConns       int      `json:"push_connections"`
	PushBatch       int      `json:"push_batch_events"`
	PushPool        int      `json:"push_pool_events"`
	PushDuration    string   `json:"push_duration"`
	PushWarmup      string   `json:"push_warmup"`
	KafkaEvents     int      `json:"kafka_events"`
	KafkaPartitions int      `json:"kafka_partitions"`
	FreshRate       float64  `json:"freshness_events_per_second"`
	Q2Rate          float64  `json:"q2_rate"`
	FreshDuration   string   `json:"freshness_duration"`
	FreshWarmup     string   `json:"freshness_warmup"`
	DataDir         string   `json:"data_dir,omitempty"`
	OnlineStore     string   `json:"online_store,omitempty"`
}

// Throughput is what one throughput phase measured over its measured
// window: events, wall time and the server's CPU.
type Throughput struct {
	Events           int64   `json:"events"`
	Seconds          float64 `json:"seconds"`
	EventsPerS       float64 `json:"events_per_second"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	// ServerCores is ServerCPUSeconds / Seconds.
	ServerCores float64 `json:"server_cores"`
	// EventsPerCoreS is Events / ServerCPUSeconds: events per second of
	// one core of the server.
	EventsPerCoreS   float64 `json:"events_per_core_second"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ServerGCCycles   int64   `json:"server_gc_cycles"`
	// RowsWritten and Writes are the write path's row writes and store
	// writes in the window: with the embedded store's write-behind, a
	// group commit is one write (its log record) and rows are written
	// only at checkpoints, which are writes too.
	RowsWritten int64 `json:"rows_written"`
	Writes      int64 `json:"writes"`
	// ServerRSSBytes is the server's RSS at the end of the window.
	ServerRSSBytes int64 `json:"server_rss_bytes"`
}

// PushPhase is phase 1.
type PushPhase struct {
	Throughput
	Connections int    `json:"connections"`
	BatchEvents int    `json:"batch_events"`
	Pushes      int64  `json:"pushes"`
	Errors      int64  `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
	DroppedLate int64  `json:"dropped_late"`
	// ClientAccepted sums the answers of the pushes completed in the
	// window (Events is the server's own counter over the same window).
	ClientAccepted int64 `json:"client_accepted"`
	// PushLatency is each push's latency (answered once durable).
	PushLatency Percentiles `json:"push_latency_ms"`
}

// KafkaPhase is phase 2.
type KafkaPhase struct {
	Throughput
	Produced          int64   `json:"produced"`
	Partitions        int     `json:"partitions"`
	ProduceSeconds    float64 `json:"produce_seconds"`
	ProduceEventsPerS float64 `json:"produce_events_per_second"`
	Applied           int64   `json:"applied"`
	DeadLetters       int64   `json:"dead_letters"`
	// FromStartSeconds runs from starting the server process to the
	// backlog applied (process start, consumer-group join included).
	FromStartSeconds float64 `json:"from_start_seconds"`
}

// FreshnessPhase is phase 3.
type FreshnessPhase struct {
	OfferedRate   float64 `json:"offered_events_per_second"`
	Produced      int64   `json:"produced"`
	ProduceErrors int64   `json:"produce_errors"`
	Seconds       float64 `json:"seconds"`
	// Probes counts the probe messages sent before the stream.
	Probes int64 `json:"probes"`
	// ProduceAck is the time from producing each message to the broker's
	// acknowledgement.
	ProduceAck Percentiles `json:"produce_ack_ms"`
	// BrokerDelivery is the floor of freshness: from each message's
	// record timestamp to its arrival at a plain consumer in the bench
	// process (no group, no apply), over BrokerDelivered messages.
	BrokerDelivery  Percentiles `json:"broker_delivery_ms"`
	BrokerDelivered int64       `json:"broker_delivered"`
	// DiskSync is the latency of a small append and fsync to a file beside
	// the server's data, every 20 ms during the stream: the floor of
	// "durable" on this machine (the server syncs its write-ahead log
	// before a batch counts as applied).
	DiskSync  Percentiles `json:"disk_sync_ms"`
	DiskSyncs int64       `json:"disk_syncs"`
	// Applied counts the messages the server applied in the phase (the
	// probes included); EndLag is the source's lag when the run stopped
	// waiting.
	Applied int64 `json:"applied"`
	EndLag  int64 `json:"end_lag"`
	// Freshness is the server's freshness_ms over every message of the
	// phase (warm-up included; the probe counts as ~0, see below).
	Freshness SourceFreshness `json:"freshness_ms"`
	// BeforeStream is the server's freshness histogram once the probe was
	// applied, before the steady stream: count 1 unless messages of the
	// previous phase were replayed.
	BeforeStream SourceFreshness `json:"freshness_before_stream_ms"`
	// Q2 is the open-loop Q2 step run meanwhile.
	Q2 *Step `json:"q2"`
	// Timeline has the server's state each second of the stream: a jump
	// of the (cumulative) freshness maximum dates a stall.
	Timeline         []FreshSecond `json:"timeline"`
	ServerCPUSeconds float64       `json:"server_cpu_seconds"`
	ServerCores      float64       `json:"server_cores"`
	ClientCPUSeconds float64       `json:"client_cpu_seconds"`
}

// FreshSecond is the server's state at one second of the freshness phase,
// read from /debug/stats.
type FreshSecond struct {
	Second int `json:"second"`
	// Applied counts messages applied in that second; Lag is the source's
	// lag at its end.
	Applied int64 `json:"applied"`
	Lag     int64 `json:"lag"`
	// FreshP99 and FreshMax are the cumulative freshness p99 and maximum
	// (ms) since the phase began.
	FreshP99 float64 `json:"fresh_p99_ms"`
	FreshMax float64 `json:"fresh_max_ms"`
	Cores    float64 `json:"cores"`
	GCCycles int64   `json:"gc_cycles"`
	HeapMiB  float64 `json:"heap_mib"`
}

// SourceFreshness is a source's freshness_ms in /debug/stats.
type SourceFreshness struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// ingestRun is one run in progress.
type ingestRun struct {
	harness
	cfg     IngestConfig
	argv    []string
	tmp     string // temporary files (project files; data unless DataDir)
	dataDir string
	rep     *IngestReport
	gen     *workload.Generator
}

// RunIngest runs the ingest benchmark and returns its report. On an error
// after a phase was measured it returns the report so far with the error;
// results.json is written then too.
func RunIngest(ctx context.Context, cfg IngestConfig) (rep *IngestReport, err error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if len(cfg.ServerCommand) == 0 {
		return nil, fmt.Errorf("bench ingest: %w: no command to start the servers with", ErrConfig)
	}
	ctl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute, DisableCompression: true}}
	defer ctl.CloseIdleConnections()
	r := &ingestRun{cfg: cfg, argv: cfg.ServerCommand}
	if r.harness, err = newHarness("kiln-bench ingest", cfg.Log, cfg.OutDir, ctl); err != nil {
		return nil, err
	}
	if r.tmp, err = os.MkdirTemp("", "kiln-bench-ingest-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.tmp)
	r.dataDir = cfg.DataDir
	if r.dataDir == "" {
		r.dataDir = filepath.Join(r.tmp, "data")
	}
	defer r.stopServer()

	start := time.Now()
	r.gen = workload.NewGenerator(workload.Config{Seed: cfg.Seed, Scale: cfg.Scale, Now: start})
	r.rep = &IngestReport{Started: start.UTC(), Command: cfg.Command, Machine: machineInfo()}
	r.rep.Config = IngestConfigReport{
		Phases: cfg.Phases, Scale: cfg.Scale, Seed: cfg.Seed, Users: r.gen.Users(), Posts: r.gen.Posts(),
		PushConns: cfg.PushConns, PushBatch: cfg.PushBatch, PushPool: cfg.PushPool,
		PushDuration: cfg.PushDuration.String(), PushWarmup: cfg.PushWarmup.String(),
		KafkaEvents: cfg.KafkaEvents, KafkaPartitions: cfg.KafkaPartitions,
		FreshRate: cfg.FreshRate, Q2Rate: cfg.Q2Rate, FreshDuration: cfg.FreshDuration.String(), FreshWarmup: cfg.FreshWarmup.String(),
		DataDir: cfg.DataDir, OnlineStore: cfg.OnlineStore,
	}
	measured := false
	defer func() {
		r.rep.Seconds = time.Since(start).Seconds()
		if cfg.OutDir != "" && measured {
			if werr := writeResults(cfg.OutDir, r.rep); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil && measured {
			rep = r.rep
		}
	}()

	if cfg.has(PhasePush) {
		measured = true
		if r.rep.Push, err = r.pushPhase(ctx); err != nil {
			return nil, fmt.Errorf("bench ingest: push phase: %w", err)
		}
	}
	if cfg.has(PhaseArchive) {
		measured = true
		if r.rep.Archive, err = r.archivePhase(ctx); err != nil {
			return nil, fmt.Errorf("bench ingest: archive phase: %w", err)
		}
	}
	if cfg.has(PhaseKafka) {
		kc, err := startKafka(int32(cfg.KafkaPartitions), ingestTopic)
		if err != nil {
			return nil, err
		}
		defer kc.Close()
		addr := kc.ListenAddrs()[0]
		projectFile, err := r.kafkaProject(addr)
		if err != nil {
			return nil, err
		}
		measured = true
		if r.rep.Kafka, err = r.kafkaPhase(ctx, addr, projectFile); err != nil {
			return nil, fmt.Errorf("bench ingest: kafka phase: %w", err)
		}
		if cfg.has(PhaseFreshness) {
			if r.rep.Freshness, err = r.freshnessPhase(ctx, addr, projectFile); err != nil {
				return nil, fmt.Errorf("bench ingest: freshness phase: %w", err)
			}
		}
	}
	return r.rep, nil
}

// withStore returns project with the configured online_store, if any.
func (r *ingestRun) withStore(project []byte) []byte {
	if r.cfg.OnlineStore == "" {
		return project
	}
	return append([]byte("online_store: "+r.cfg.OnlineStore+"\n"), project...)
}

// startServerOn starts a server on projectFile and dataDir and waits until
// it is ready.
func (r *ingestRun) startServerOn(ctx context.Context, projectFile, dataDir string) error {
	return r.launch(ctx, r.argv, projectFile, dataDir, false)
}

// throughput fills the window between two marks.
func throughput(events int64, m0, m1 mark) Throughput {
	u, s0, s1 := m0.until(m1), m0.stats, m1.stats
	t := Throughput{
		Events: events, Seconds: u.seconds, ServerCPUSeconds: u.serverCPU, ClientCPUSeconds: u.clientCPU,
		ServerGCCycles: u.gcCycles,
		RowsWritten:    s1.Ingest.RowsWritten - s0.Ingest.RowsWritten, Writes: s1.Ingest.Writes - s0.Ingest.Writes,
		ServerRSSBytes: s1.RSSBytes,
	}
	t.EventsPerS = ratio(float64(events), u.seconds)
	t.ServerCores = u.cores()
	t.EventsPerCoreS = ratio(float64(events), t.ServerCPUSeconds)
	return t
}

// profile takes a server CPU profile of length d into OutDir/<name>.pprof,
// on a goroutine; wait for it with the returned function.
func (r *ingestRun) profile(ctx context.Context, name string, d time.Duration) (wait func()) {
	if r.cfg.Profile <= 0 || r.cfg.OutDir == "" || d <= 0 {
		return func() {}
	}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", r.srv.adminURL, max(1, int(d.Round(time.Second)/time.Second)))
	path := filepath.Join(r.cfg.OutDir, name+".pprof")
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		resp, err := r.ctl.Do(req)
		if err != nil {
			fmt.Fprintf(r.log, "kiln-bench ingest: profile %s: %v\n", name, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode == http.StatusOK {
			err = os.WriteFile(path, b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(r.log, "kiln-bench ingest: profile %s: %v\n", name, err)
			return
		}
		fmt.Fprintf(r.log, "kiln-bench ingest: server CPU profile in %s\n", path)
	}()
	return func() { <-done }
}

// pushPhase is phase 1: closed-loop pushes of pre-encoded batches.
func (r *ingestRun) pushPhase(ctx context.Context) (*PushPhase, error) {
	return r.pushRun(ctx, r.argv, filepath.Join(r.dataDir, "push"), PhasePush)
}

// pushRun runs the push phase against a server started with argv on
// dataDir; label names it in the log and its profile.
func (r *ingestRun) pushRun(ctx context.Context, argv []string, dataDir, label string) (*PushPhase, error) {
	cfg := r.cfg
	fmt.Fprintf(r.log, "kiln-bench ingest: %s: encoding %d RW1 live events in batches of %d\n", label, cfg.PushPool, cfg.PushBatch)
	pool := r.pushPool()
	projectFile := filepath.Join(r.tmp, "kiln-push.yaml")
	if err := os.WriteFile(projectFile, r.withStore(examples.FeedProject), 0o644); err != nil {
		return nil, err
	}
	if err := r.launch(ctx, argv, projectFile, dataDir, false); err != nil {
		return nil, err
	}
	defer r.stopServer()
	rc, err := newRawClient(r.srv.url+"/v1/push", pushTimeout, cfg.PushConns)
	if err != nil {
		return nil, err
	}
	defer rc.closeIdle()

	var (
		next, pushes, accepted, errs atomic.Int64
		stop                         atomic.Bool
		measuring                    atomic.Bool
		mu                           sync.Mutex // guards hist, firstErr
		firstErr                     error
	)
	hist := NewHistogram()
	var wg sync.WaitGroup
	for range cfg.PushConns {
		wg.Go(func() {
			h := NewHistogram()
			defer func() { mu.Lock(); hist.Merge(h); mu.Unlock() }()
			for !stop.Load() && ctx.Err() == nil {
				body := pool[int(next.Add(1)-1)%len(pool)]
				t0 := time.Now()
				out, err := rc.post(ctx, body, true)
				var ans pushAnswer
				if err == nil {
					err = json.Unmarshal(out, &ans)
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					if r.srv.alive() != nil {
						return
					}
					continue
				}
				if measuring.Load() {
					record(h, time.Since(t0))
					pushes.Add(1)
					accepted.Add(int64(ans.Accepted))
				}
			}
		})
	}
	finish := func() { stop.Store(true); wg.Wait() }
	fmt.Fprintf(r.log, "kiln-bench ingest: %s: %d connections, %v warm-up, %v measured\n", label, cfg.PushConns, cfg.PushWarmup, cfg.PushDuration)
	if !sleepCtx(ctx, cfg.PushWarmup) {
		finish()
		return nil, ctx.Err()
	}
	m0, err := markNow(ctx, r.srv, r.ctl)
	if err != nil {
		finish()
		return nil, err
	}
	measuring.Store(true)
	waitProfile := r.profile(ctx, label, min(cfg.Profile, cfg.PushDuration))
	ok := sleepCtx(ctx, cfg.PushDuration)
	m1, serr := markNow(ctx, r.srv, r.ctl)
	measuring.Store(false)
	finish()
	waitProfile()
	if !ok {
		return nil, ctx.Err()
	}
	if serr != nil {
		return nil, serr
	}
	p := &PushPhase{
		Throughput:  throughput(m1.stats.Ingest.Accepted-m0.stats.Ingest.Accepted, m0, m1),
		Connections: cfg.PushConns, BatchEvents: cfg.PushBatch,
		Pushes: pushes.Load(), Errors: errs.Load(), DroppedLate: m1.stats.Ingest.DroppedLate - m0.stats.Ingest.DroppedLate,
		ClientAccepted: accepted.Load(),
		PushLatency:    percentilesOf(hist),
	}
	if firstErr != nil {
		p.FirstError = firstErr.Error()
	}
	fmt.Fprintf(r.log, "kiln-bench ingest: %s: %d events in %.1f s = %.0f events/s; server %.2f CPU-s (%.2f cores) = %.0f events/s per core; %d errors\n",
		label, p.Events, p.Seconds, p.EventsPerS, p.ServerCPUSeconds, p.ServerCores, p.EventsPerCoreS, p.Errors)
	if p.Errors > 0 {
		return p, fmt.Errorf("%d pushes failed; first: %s", p.Errors, p.FirstError)
	}
	if p.Events == 0 {
		return p, errors.New("no event was accepted in the measured period")
	}
	return p, nil
}

// pushPool encodes PushPool RW1 live events as push bodies of PushBatch
// events each, stamped with the current time.
func (r *ingestRun) pushPool() [][]byte {
	cfg := r.cfg
	live := r.gen.Live(0)
	var ev event.Event
	n := (cfg.PushPool + cfg.PushBatch - 1) / cfg.PushBatch
	pool := make([][]byte, n)
	for i := range pool {
		body := r.enc.begin(make([]byte, 0, cfg.PushBatch*110))
		now := time.Now()
		for j := range cfg.PushBatch {
			live.Next(now, &ev)
			body = r.enc.add(body, j, &ev)
		}
		pool[i] = r.enc.end(body)
	}
	return pool
}

// PrintSummary writes the figures of the run against the ingestion targets.
func (rep *IngestReport) PrintSummary(w io.Writer) {
	storeName := "embedded store (Pebble)"
	if rep.Config.OnlineStore != "" {
		storeName = "online_store " + rep.Config.OnlineStore
	}
	fmt.Fprintf(w, "kiln-bench ingest: RW1 (scale %g, seed %d: %d users, %d posts), %s; %d CPUs (%s)\n",
		rep.Config.Scale, rep.Config.Seed, rep.Config.Users, rep.Config.Posts, storeName, rep.Machine.CPUs, rep.Machine.CPUModel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tevents\tseconds\tevents/s\tsrv CPU-s\tsrv cores\tevents/s per core\taim per core\tmet\tcli CPU-s\trows written/event\trows/write\t")
	row := func(name string, t Throughput, aim float64) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%.0f\t\n", name, t.Events, t.Seconds, t.EventsPerS,
			t.ServerCPUSeconds, t.ServerCores, t.EventsPerCoreS, aim, yesNo(t.EventsPerCoreS >= aim), t.ClientCPUSeconds,
			ratio(float64(t.RowsWritten), float64(t.Events)), ratio(float64(t.RowsWritten), float64(t.Writes)))
	}
	if p := rep.Push; p != nil {
		row(fmt.Sprintf("push (%d/batch, %d conns)", p.BatchEvents, p.Connections), p.Throughput, AimPushPerCore)
	}
	if k := rep.Kafka; k != nil {
		row(fmt.Sprintf("kafka (%d partitions)", k.Partitions), k.Throughput, AimKafkaPerCore)
	}
	tw.Flush()
	if p := rep.Push; p != nil {
		fmt.Fprintf(w, "push: latency p50 %.1f, p99 %.1f, max %.1f ms; %d pushes, %d errors, %d dropped late\n",
			p.PushLatency.P50, p.PushLatency.P99, p.PushLatency.Max, p.Pushes, p.Errors, p.DroppedLate)
	}
	if k := rep.Kafka; k != nil {
		fmt.Fprintf(w, "kafka: %d produced before the server started (%.0f events/s), %d applied, %d dead letters; %.1f s from process start to lag 0\n",
			k.Produced, k.ProduceEventsPerS, k.Applied, k.DeadLetters, k.FromStartSeconds)
	}
	if a := rep.Archive; a != nil {
		a.printSummary(w)
	}
	if f := rep.Freshness; f != nil {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "freshness phase\tevents/s\tapplied\tfresh p50 ms\tfresh p99 ms\tfresh p99.9 ms\tfresh max ms\taim p99 ms\tmet\tbroker p50 ms\tbroker p99 ms\tQ2/s\tQ2 p50 ms\tQ2 p99 ms\tQ2 errors\tsrv cores\t")
		fr, q, b := f.Freshness, f.Q2, f.BrokerDelivery
		fmt.Fprintf(tw, "kafka + Q2\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%d\t%.2f\t\n",
			f.OfferedRate, f.Applied, fr.P50, fr.P99, fr.P999, fr.Max, AimFreshnessP99, yesNo(fr.Count > 0 && fr.P99 <= AimFreshnessP99),
			b.P50, b.P99, q.Achieved, q.Latency.P50, q.Latency.P99, q.Errors, f.ServerCores)
		tw.Flush()
		fmt.Fprintf(w, "freshness: server's freshness_ms over %d messages (record timestamp to durable and visible); broker = the same records' arrival at a plain consumer in the bench process (%d; max %.1f ms); produce ack p99 %.1f ms\n",
			fr.Count, f.BrokerDelivered, b.Max, f.ProduceAck.P99)
		fmt.Fprintf(w, "disk: a 4 KiB append + fsync beside the data every 20 ms during the stream: p50 %.2f, p99 %.1f, p99.9 %.1f, max %.1f ms (%d syncs)\n",
			f.DiskSync.P50, f.DiskSync.P99, f.DiskSync.P999, f.DiskSync.Max, f.DiskSyncs)
		if q.FirstError != "" {
			fmt.Fprintf(w, "Q2 first error: %s\n", q.FirstError)
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
