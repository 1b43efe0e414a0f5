package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/workload"
)

// Transports of the read requests.
const (
	TransportHTTP = "http"
	TransportGRPC = "grpc"
	// TransportFeast sends Kiln's reads to Feast's POST
	// /get-online-features over HTTP; the floor stays POST /debug/rows.
	TransportFeast = "feast"
)

// feastPath is Feast's read endpoint as kiln-bench asks it: with a status
// and a time for each value, as POST /v1/features answers them for each
// key.
const feastPath = "/get-online-features?status=true"

// Limits and fixed periods of an RW1 run.
const (
	settleInterval     = time.Second
	settleCoresQuiet   = 0.10    // the load has settled when the server uses less than this
	settleQuietSeconds = 3       // for this many seconds in a row
	rowSampleQ1        = 2000    // Q1 requests read for the user view's row size
	rowSampleQ2        = 100     // Q2 requests (×500 posts) for the post view's
	rowSampleUsers     = 5000    // uniform user ids
	rowSamplePosts     = 50000   // uniform post ids
	rowSampleBatch     = 500     // keys per floor request of the uniform samples
	minSliceRequests   = 50      // fewest requests a slice of an interleaved step measures
	overloadQ1Requests = 200_000 // distinct Q1 requests drawn for the overload step
	overloadQ2Requests = 5_000   // and Q2 requests (about 10 KiB each)
	// The overload step's saturation is measured with at least
	// overloadWorkers workers (4 leave a server with 8 slots idle between
	// round trips), and its overloaded rates with up to overloadMaxInFlight
	// requests in flight: a lower bound would queue the overload in the
	// client, not at the server.
	overloadWorkers     = 32
	overloadMaxInFlight = 4096
	sliceWarmup         = time.Second // shortest warm-up of a slice, unless Warmup is shorter
)

// Config configures an RW1 run. DefaultConfig returns the documented
// defaults; Run refuses values out of range rather than guessing.
type Config struct {
	// Target is the base URL (http://host:port) of a running Kiln server
	// serving the RW1 project. Empty: Run starts one as a child process
	// with ServerCommand and stops it at the end.
	Target string
	// GRPCTarget is host:port of Target's gRPC API (with Transport grpc).
	GRPCTarget string
	// AdminTarget is the base URL of Target's admin listener (kiln serve
	// --admin-addr): the floor's raw-row reads, the server's stats and GC
	// pauses are read there. Needed with Target.
	AdminTarget string
	// ServerCommand is the argv that starts "kiln serve" (Run adds -c,
	// --data, --addr, --grpc-addr, --admin-addr and --log-level): a kiln
	// binary and "serve". Needed unless Target is set.
	ServerCommand []string
	// DataDir is the started server's data directory; empty means a
	// temporary one, removed at the end.
	DataDir string
	// Transport of the Kiln reads: TransportHTTP (POST /v1/features),
	// TransportGRPC (GetFeatures) or TransportFeast (the same requests in
	// Feast's shape, POST /get-online-features). The floor is read over
	// the same transport as Kiln's reads: POST /debug/rows (also with
	// TransportFeast, which is HTTP too), or gRPC Diagnostics.GetRows.
	Transport string

	// Scale is RW1's scale factor S (> 0); Seed seeds the history, the
	// live stream and the query draws.
	Scale float64
	Seed  uint64
	// SkipLoad skips loading the history (for a Target already loaded).
	SkipLoad bool
	// Pushers are the concurrent pushes of the history load, of
	// BatchEvents events each (≤ 10,000, the API's limit).
	Pushers, BatchEvents int
	// Settle bounds the wait, after loading, for the server to go quiet
	// (compactions) before measuring. 0: do not wait.
	Settle time.Duration
	// Live is the rate of the live event stream pushed during the
	// measurements, events per second; 0: none.
	Live float64
	// Baseline is a period before the first step, with only the live stream
	// running, that measures the server's CPU for ingestion alone and the
	// load generator's own lateness; 0 skips it.
	Baseline time.Duration

	// Q1Rates and Q2Rates are the offered rates (requests/s) of the
	// open-loop steps of each query type; each rate is measured against
	// Kiln and then the floor.
	Q1Rates, Q2Rates []float64
	// Duration and Warmup are the measured and unrecorded periods of every
	// step.
	Duration, Warmup time.Duration
	// Interleave splits the measured period of each open-loop rate into
	// this many slices and measures Kiln and the floor in turn, slice by
	// slice (Kiln, floor, floor, Kiln, Kiln, floor, …), each slice after a
	// warm-up of its own (Warmup / Interleave, at least 1 s unless Warmup
	// is shorter); each target's slices add up to one step. On a shared
	// machine the background (other processes, Redis persistence, the
	// live stream's bursts) then falls on both alike, instead of on
	// whichever ran during it. 1: Kiln's whole step, then the floor's.
	// There are fewer slices when one would measure fewer than 50
	// requests.
	Interleave int
	// SaturationWorkers is the closed-loop workers of the Q2 saturation
	// step; 0 skips it.
	SaturationWorkers int
	// MaxInFlight bounds the requests in flight of an open-loop step.
	MaxInFlight int
	// Overload adds the overload step, for Q1 and then Q2: the saturation
	// rate S (a closed loop of SaturationWorkers, at least 32), then open
	// loops of Kiln at S/2 and at each of OverloadFactors × S (with up to
	// 4,096 requests in flight), reporting the refusals'
	// latency, the admitted requests' latency and the goodput
	// (Report.Overload).
	Overload        bool
	OverloadFactors []float64
	// OverloadQueries names the queries of the overload step, of "Q1" and
	// "Q2"; empty: both.
	OverloadQueries []string
	// RequestTimeout bounds each read request.
	RequestTimeout time.Duration
	// Trickle is the number of slow clients kept connected through the
	// measurements, each sending a push body one byte every TrickleEvery
	// (so that the server's read timeout must cut them off); 0: none.
	// The server's peak RSS is sampled either way.
	Trickle      int
	TrickleEvery time.Duration

	// OutDir receives results.json and latency.svg; empty: no files.
	OutDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Command is the command line, recorded in the report.
	Command string
}

// DefaultConfig returns the defaults of kiln-bench.
func DefaultConfig() Config {
	return Config{
		Transport: TransportHTTP, Scale: 1, Seed: 1,
		Pushers: 4, BatchEvents: maxPushEvents, Settle: time.Minute, Live: 1000, Baseline: 3 * time.Second,
		Q1Rates: []float64{1000, 5000}, Q2Rates: []float64{50, 100},
		Duration: 20 * time.Second, Warmup: 3 * time.Second, Interleave: 10,
		SaturationWorkers: 4, MaxInFlight: DefaultMaxInFlight, RequestTimeout: 10 * time.Second,
		TrickleEvery:    time.Second,
		OverloadFactors: []float64{2, 5},
	}
}

// Check reports the values out of range, as an error wrapping ErrConfig.
func (c *Config) Check() error {
	var bad problems
	if c.Trickle < 0 || c.Trickle > 10_000 || c.TrickleEvery <= 0 {
		bad.add("trickle %d every %v: give 0 to 10000 connections and a positive period", c.Trickle, c.TrickleEvery)
	}
	if c.Transport != TransportHTTP && c.Transport != TransportGRPC && c.Transport != TransportFeast {
		bad.add("transport %q: use %s, %s or %s", c.Transport, TransportHTTP, TransportGRPC, TransportFeast)
	}
	if c.Target != "" && !strings.HasPrefix(c.Target, "http://") {
		bad.add("target %q: give the base URL, like http://127.0.0.1:7070", c.Target)
	}
	if c.Target != "" && !strings.HasPrefix(c.AdminTarget, "http://") {
		bad.add("with a target, give its admin listener's base URL too (kiln serve --admin-addr), like http://127.0.0.1:7072")
	}
	if c.Target != "" && c.Transport == TransportGRPC && c.GRPCTarget == "" {
		bad.add("with a target and transport grpc, give the gRPC address (host:port) too")
	}
	bad.scale(c.Scale)
	if c.Pushers < 1 || c.Pushers > 64 {
		bad.add("pushers %d: want 1..64", c.Pushers)
	}
	if c.BatchEvents < 1 || c.BatchEvents > maxPushEvents {
		bad.add("batch %d: want 1..%d events a push", c.BatchEvents, maxPushEvents)
	}
	if c.Live < 0 || math.IsInf(c.Live, 0) || math.IsNaN(c.Live) {
		bad.add("live rate %v: want ≥ 0 events/s", c.Live)
	}
	bad.rates(slices.Concat(c.Q1Rates, c.Q2Rates)...)
	if c.Duration <= 0 || c.Warmup < 0 || c.Settle < 0 || c.Baseline < 0 {
		bad.add("duration %v, warm-up %v, settle %v, baseline %v: want duration > 0, the others ≥ 0", c.Duration, c.Warmup, c.Settle, c.Baseline)
	}
	if c.Interleave < 1 || c.Interleave > 100 {
		bad.add("interleave %d: want 1..100 slices", c.Interleave)
	}
	if c.SaturationWorkers < 0 || c.SaturationWorkers > 1024 {
		bad.add("saturation workers %d: want 0..1024", c.SaturationWorkers)
	}
	bad.maxInFlight(c.MaxInFlight)
	if c.Overload {
		if c.SaturationWorkers == 0 {
			bad.add("the overload step needs saturation workers to measure the saturation rate")
		}
		if len(c.OverloadFactors) == 0 {
			bad.add("the overload step needs factors of the saturation rate, like 2,5")
		}
		for _, f := range c.OverloadFactors {
			if !(f > 1) || f > 100 {
				bad.add("overload factor %v: want more than 1 and at most 100 times the saturation rate", f)
			}
		}
		for _, q := range c.OverloadQueries {
			if q != "Q1" && q != "Q2" {
				bad.add("overload query %q: want Q1 or Q2", q)
			}
		}
	}
	if c.RequestTimeout <= 0 {
		bad.add("request timeout %v: want > 0", c.RequestTimeout)
	}
	return bad.err("bench")
}

// rw1 is one run in progress.
type rw1 struct {
	harness // ctl: stats, pushes, row sizes
	cfg     Config
	tmp     string // the started server's project file (and data) live here
	rep     *Report
	// features, feast and floor send the measured requests.
	features, floor *rawClient
	feast           *rawClient // nil unless Transport is feast
	grpc            *grpcConn  // nil unless Transport is grpc
}

// Run runs the RW1 benchmark (see the package doc) and returns its report.
// On an error after measuring began it returns the report of what was
// measured, with the error. If OutDir is set it writes results.json and
// latency.svg there, also after such an error.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	ctl := &http.Client{Transport: &http.Transport{
		MaxIdleConns: cfg.Pushers + 8, MaxIdleConnsPerHost: cfg.Pushers + 8, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	defer ctl.CloseIdleConnections()
	b := &rw1{cfg: cfg}
	if b.harness, err = newHarness("kiln-bench", cfg.Log, cfg.OutDir, ctl); err != nil {
		return nil, err
	}
	start := time.Now()
	b.rep = &Report{Started: start.UTC(), Command: cfg.Command, Machine: machineInfo()}
	b.rep.Config = ConfigReport{
		Target: cfg.Target, Transport: cfg.Transport, Scale: cfg.Scale, Seed: cfg.Seed, LiveRate: cfg.Live,
		Q1Rates: cfg.Q1Rates, Q2Rates: cfg.Q2Rates, Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(),
		SaturationWorkers: cfg.SaturationWorkers, MaxInFlight: cfg.MaxInFlight, RequestTimeout: cfg.RequestTimeout.String(),
		Interleave: cfg.Interleave,
	}
	defer func() {
		b.stopServer()
		if b.tmp != "" {
			os.RemoveAll(b.tmp)
		}
	}()
	if err := b.startServer(ctx); err != nil {
		return nil, err
	}
	measured := false
	defer func() {
		b.rep.Seconds = time.Since(start).Seconds()
		if cfg.OutDir != "" && measured {
			if werr := b.writeOutputs(); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil && measured {
			rep = b.rep
		}
	}()
	conns := max(cfg.MaxInFlight, cfg.SaturationWorkers)
	if cfg.Overload {
		conns = max(conns, overloadMaxInFlight)
	}
	if b.features, err = newRawClient(b.srv.url+"/v1/features", cfg.RequestTimeout, conns); err != nil {
		return nil, err
	}
	defer b.features.closeIdle()
	if b.floor, err = newRawClient(b.srv.adminURL+"/debug/rows", cfg.RequestTimeout, conns); err != nil {
		return nil, err
	}
	defer b.floor.closeIdle()
	if cfg.Transport == TransportFeast {
		if b.feast, err = newRawClient(b.srv.url+feastPath, cfg.RequestTimeout, conns); err != nil {
			return nil, err
		}
		defer b.feast.closeIdle()
	}
	if cfg.Transport == TransportGRPC {
		if b.grpc, err = dialGRPC(ctx, b.srv.grpcAddr, b.srv.adminAddr()); err != nil {
			return nil, err
		}
		defer b.grpc.close()
	}

	gen := workload.NewGenerator(workload.Config{Seed: cfg.Seed, Scale: cfg.Scale, Now: time.Now()})
	b.rep.Config.HistoryEvents, b.rep.Config.Users, b.rep.Config.Posts = gen.HistoryLen(), gen.Users(), gen.Posts()
	if !cfg.SkipLoad {
		fmt.Fprintf(b.log, "kiln-bench: loading %d history events (scale %g) through POST /v1/push with %d pushers\n", gen.HistoryLen(), cfg.Scale, cfg.Pushers)
		lr, err := loadHistory(ctx, b.ctl, b.srv.url+"/v1/push", gen, b.enc, cfg.Pushers, cfg.BatchEvents, b.log)
		b.rep.Load = &lr
		if err != nil {
			return nil, errors.Join(err, b.srv.alive())
		}
		fmt.Fprintf(b.log, "kiln-bench: loaded %d events in %.1f s (%.0f events/s)\n", lr.Accepted+lr.DroppedLate, lr.Seconds, lr.EventsPerS)
	}
	settled, err := b.settle(ctx)
	if err != nil {
		return nil, err
	}
	mem, err := b.memory(ctx)
	if err != nil {
		return nil, err
	}
	mem.SettleSeconds = settled.Seconds()
	b.rep.AfterLoad = mem

	q1, q2, err := drawQueries(gen, b.project, cfg, cfg.Transport == TransportFeast)
	if err != nil {
		return nil, err
	}
	b.rep.Config.Q1Requests, b.rep.Config.Q2Requests = q1.len(), q2.len()
	fmt.Fprintf(b.log, "kiln-bench: pre-generated %d Q1 requests (%s) and %d Q2 requests (%s)\n", q1.len(), mib(q1.bytes), q2.len(), mib(q2.bytes))

	if cfg.Live > 0 {
		live := startLive(ctx, b.ctl, b.srv.url+"/v1/push", gen, b.enc, cfg.Live)
		defer func() { b.rep.Live = live.stop() }()
	}
	measured = true
	tr, err := startTrickle(ctx, b.srv.url, cfg.Trickle, cfg.TrickleEvery, func(ctx context.Context) (serverStats, error) { return b.srv.stats(ctx, b.ctl) })
	if err != nil {
		return nil, err
	}
	defer func() {
		res := tr.stop()
		b.rep.Trickle = &res
	}()
	if cfg.Baseline > 0 {
		lagRate := slices.Max(slices.Concat([]float64{1000}, cfg.Q1Rates, cfg.Q2Rates))
		if b.rep.LiveOnlyCPU, b.rep.ClientLag, err = b.baselinePeriod(ctx, lagRate); err != nil {
			return nil, err
		}
		b.rep.ClientLagRate = lagRate
	}

	for _, q := range []*querySet{q1, q2} {
		rates := cfg.Q1Rates
		if q == q2 {
			rates = cfg.Q2Rates
		}
		for _, rate := range rates {
			if err := b.openPair(ctx, q, rate); err != nil {
				return nil, err
			}
		}
	}
	if cfg.SaturationWorkers > 0 && !cfg.Overload { // the overload step measures it
		if _, err := b.saturation(ctx, q2); err != nil {
			return nil, err
		}
	}
	if cfg.Overload {
		for _, q := range []*querySet{q1, q2} {
			if len(cfg.OverloadQueries) > 0 && !slices.Contains(cfg.OverloadQueries, q.name) {
				continue
			}
			if err := b.overload(ctx, q); err != nil {
				return nil, err
			}
		}
	}
	if b.rep.RowSizes, err = b.rowSizes(ctx, gen, q1, q2); err != nil {
		return nil, err
	}
	if b.rep.AtEnd, err = b.memory(ctx); err != nil {
		return nil, err
	}
	return b.rep, nil
}

// drawQueries draws the requests of Q1 and Q2 a run of cfg sends, encoded
// also in Feast's shape if feast is set. Every request is drawn before the
// clock starts: the longest step of each query type needs rate × (warm-up +
// duration) of them.
func drawQueries(gen *workload.Generator, project *definition.Project, cfg Config, feast bool) (q1, q2 *querySet, err error) {
	span := (cfg.Warmup + cfg.Duration).Seconds()
	n1 := int(math.Ceil(slices.Max(append([]float64{1}, cfg.Q1Rates...)) * span))
	n2 := int(math.Ceil(slices.Max(append([]float64{1}, cfg.Q2Rates...)) * span))
	if cfg.Overload {
		// Its rates are known only once measured: enough distinct requests
		// that the keys stay spread, reused in turn beyond them.
		n1, n2 = max(n1, overloadQ1Requests), max(n2, overloadQ2Requests)
	}
	if q1, err = genQueries(gen, project, cfg.Seed, queryQ1Name, n1, feast); err != nil {
		return nil, nil, err
	}
	if q2, err = genQueries(gen, project, cfg.Seed, queryQ2Name, n2, feast); err != nil {
		return nil, nil, err
	}
	return q1, q2, nil
}

// startServer starts the child server, or takes Target, and waits until
// it is ready.
func (b *rw1) startServer(ctx context.Context) error {
	cfg := b.cfg
	if cfg.Target != "" {
		b.srv = &server{url: strings.TrimRight(cfg.Target, "/"), grpcAddr: cfg.GRPCTarget, adminURL: strings.TrimRight(cfg.AdminTarget, "/")}
		b.rep.Server = ServerReport{URL: b.srv.url, GRPCAddr: b.srv.grpcAddr, AdminURL: b.srv.adminURL}
		return b.srv.waitReady(ctx, b.ctl)
	}
	argv := cfg.ServerCommand
	if len(argv) == 0 {
		return fmt.Errorf("bench: %w: no target and no command to start a server with", ErrConfig)
	}
	tmp, err := os.MkdirTemp("", "kiln-bench-")
	if err != nil {
		return err
	}
	b.tmp = tmp
	projectFile := filepath.Join(tmp, "kiln.yaml")
	if err := os.WriteFile(projectFile, examples.FeedProject, 0o644); err != nil {
		return err
	}
	data := cfg.DataDir
	if data == "" {
		data = filepath.Join(tmp, "data")
	}
	err = b.launch(ctx, argv, projectFile, data, cfg.Transport == TransportGRPC)
	if b.srv != nil {
		b.rep.Server = ServerReport{URL: b.srv.url, GRPCAddr: b.srv.grpcAddr, AdminURL: b.srv.adminURL, Started: true, Command: b.srv.command, DataDir: data}
	}
	return err
}

// settle waits, up to Settle, until the server's CPU use stays below
// settleCoresQuiet for settleQuietSeconds (background compactions after
// the load would otherwise be charged to the first steps).
func (b *rw1) settle(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if b.cfg.Settle <= 0 {
		return 0, nil
	}
	prev, err := markNow(ctx, b.srv, b.ctl)
	if err != nil {
		return 0, err
	}
	quiet := 0 // seconds in a row below settleCoresQuiet
	for time.Since(start) < b.cfg.Settle {
		if !sleepCtx(ctx, settleInterval) {
			return time.Since(start), ctx.Err()
		}
		cur, err := markNow(ctx, b.srv, b.ctl)
		if err != nil {
			return 0, err
		}
		cores := prev.until(cur).cores()
		prev = cur
		if cores >= settleCoresQuiet {
			quiet = 0
		} else if quiet++; quiet == settleQuietSeconds {
			return time.Since(start), nil
		}
	}
	fmt.Fprintf(b.log, "kiln-bench: the server was still busy after %v; measuring anyway\n", b.cfg.Settle)
	return time.Since(start), nil
}

// memory reads the server's memory (and the data directory's size when
// the bench owns it).
func (b *rw1) memory(ctx context.Context) (*MemoryReport, error) {
	s, err := b.srv.stats(ctx, b.ctl)
	if err != nil {
		return nil, err
	}
	m := &MemoryReport{RSSBytes: s.RSSBytes, HeapBytes: s.HeapBytes}
	if b.srv.cmd != nil {
		m.DiskBytes = dirBytes(b.rep.Server.DataDir)
	}
	return m, nil
}

// baselinePeriod measures, with only the live stream running, the server's
// cores and the load generator's own lateness: an open loop at rate whose
// calls do nothing.
func (b *rw1) baselinePeriod(ctx context.Context, rate float64) (cores float64, lag Percentiles, err error) {
	m0, err := markNow(ctx, b.srv, b.ctl)
	if err != nil {
		return 0, lag, err
	}
	res, err := OpenLoop{Rate: rate, Duration: b.cfg.Baseline, MaxInFlight: b.cfg.MaxInFlight}.Run(ctx, func(context.Context, int) error { return nil })
	if err != nil {
		return 0, lag, err
	}
	m1, err := markNow(ctx, b.srv, b.ctl)
	if err != nil {
		return 0, lag, err
	}
	return m0.until(m1).cores(), percentilesOf(res.Latency), nil
}

// caller returns the caller of a query type against a target.
func (b *rw1) caller(ctx context.Context, q *querySet, target string) (caller, string, error) {
	if target == targetFloor {
		if b.cfg.Transport == TransportGRPC {
			c, err := b.grpc.floor(ctx, q, b.cfg.RequestTimeout)
			return c, TransportGRPC, err
		}
		return &httpFloor{httpTarget{c: b.floor, url: b.srv.adminURL + "/debug/rows", q: q, bodies: q.bodies}}, TransportHTTP, nil
	}
	switch b.cfg.Transport {
	case TransportGRPC:
		c, err := b.grpc.features(ctx, q, b.cfg.RequestTimeout)
		return c, TransportGRPC, err
	case TransportFeast:
		return &httpFeast{httpTarget{c: b.feast, url: b.srv.url + feastPath, q: q, bodies: q.feast}}, TransportFeast, nil
	}
	return &httpFeatures{httpTarget{c: b.features, url: b.srv.url + "/v1/features", q: q, bodies: q.bodies}}, TransportHTTP, nil
}

// phase measures one step: it checks one answer, then runs the loop,
// reading the server's CPU when the measured period begins and ends.
func (b *rw1) phase(ctx context.Context, s *Step, q *querySet, run func(onMeasure func()) (*Result, error), c caller) error {
	if err := c.check(ctx, 0); err != nil {
		return errors.Join(err, b.srv.alive())
	}
	m, err := b.measure(ctx, run)
	if err != nil {
		return err
	}
	s.fill(m.res)
	s.setServer(m)
	return b.done(s)
}

// done adds a measured step to the report and logs it.
func (b *rw1) done(s *Step) error {
	b.rep.Steps = append(b.rep.Steps, s)
	fmt.Fprintf(b.log, "kiln-bench: %s %-5s %-22s achieved %8.1f/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f  p99.99 %7.3f  max %8.3f ms  errors %d  server GC pauses %.3f ms, longest %.3f ms\n",
		s.Query, s.Target, rateName(s), s.Achieved, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.P9999, s.Latency.Max, s.Errors,
		s.ServerGCPauseMS, s.ServerGCPauseMaxMS)
	return b.srv.alive()
}

// measured is what one run of a loop measured, with what the server and
// the client used during its measured period.
type measured struct {
	res                  *Result
	serverCPU, clientCPU float64
	gcCycles             int64
	gcPause, gcPauseMax  time.Duration
	samples              []ServerSecond
}

// measure runs a loop, reading the server's stats when its measured period
// begins, every second, and when it ends.
func (b *rw1) measure(ctx context.Context, run func(onMeasure func()) (*Result, error)) (measured, error) {
	type begun struct {
		m   mark
		err error
	}
	begin := make(chan begun, 1)
	stopSampler := make(chan struct{})
	var samples []ServerSecond
	samplerDone := make(chan struct{})
	onMeasure := func() {
		m0, err := markNow(ctx, b.srv, b.ctl)
		begin <- begun{m0, err}
		if err != nil {
			close(samplerDone)
			return
		}
		go func() {
			defer close(samplerDone)
			samples = sampleSeconds(ctx, b.srv, b.ctl, m0, stopSampler, serverSecond)
		}()
	}
	res, err := run(onMeasure)
	close(stopSampler)
	<-samplerDone
	if err != nil {
		return measured{}, err
	}
	m0 := <-begin
	if m0.err != nil {
		return measured{}, m0.err
	}
	m1, err := markNow(ctx, b.srv, b.ctl)
	if err != nil {
		return measured{}, err
	}
	u := m0.m.until(m1)
	return measured{res: res, serverCPU: u.serverCPU, clientCPU: u.clientCPU, gcCycles: u.gcCycles,
		gcPause: u.gcPause, gcPauseMax: u.gcPauseMax, samples: samples}, nil
}

// setServer sets what the server and this process used during the step.
func (s *Step) setServer(m measured) {
	s.ServerCPUSeconds, s.ServerGCCycles, s.ClientCPUSeconds, s.ServerTimeline = m.serverCPU, m.gcCycles, m.clientCPU, m.samples
	s.ServerGCPauseMS, s.ServerGCPauseMaxMS = ms(m.gcPause), ms(m.gcPauseMax)
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// add sums up a later slice of the same step: counts, histograms, time and
// resources; its timelines continue this one's.
func (m *measured) add(o measured) {
	if m.res == nil {
		*m = o
		return
	}
	r, x := m.res, o.res
	secs := len(r.Timeline)
	r.Requests += x.Requests
	r.Errors += x.Errors
	r.Refused += x.Refused
	r.RefusedLatency.Merge(x.RefusedLatency)
	r.RefusedService.Merge(x.RefusedService)
	if r.FirstError == "" {
		r.FirstError = x.FirstError
	}
	r.Elapsed += x.Elapsed
	r.Latency.Merge(x.Latency)
	r.Service.Merge(x.Service)
	for _, sec := range x.Timeline {
		sec.Second += secs
		r.Timeline = append(r.Timeline, sec)
	}
	if r.Elapsed > 0 {
		r.Achieved = float64(r.Requests) / r.Elapsed.Seconds()
	}
	samples := len(m.samples)
	for _, sec := range o.samples {
		sec.Second += samples
		m.samples = append(m.samples, sec)
	}
	m.serverCPU += o.serverCPU
	m.clientCPU += o.clientCPU
	m.gcCycles += o.gcCycles
	m.gcPause += o.gcPause
	m.gcPauseMax = max(m.gcPauseMax, o.gcPauseMax)
}

// serverSecond is what the server used in one second of a step.
func serverSecond(second int, a, b mark) (ServerSecond, bool) {
	return ServerSecond{
		Second: second, Cores: a.until(b).cores(), GCCycles: b.stats.GCCycles - a.stats.GCCycles,
		HeapMiB: float64(b.stats.HeapBytes) / (1 << 20), RSSMiB: float64(b.stats.RSSBytes) / (1 << 20),
	}, true
}

func (b *rw1) newStep(q *querySet, target, transport string) *Step {
	return &Step{Query: q.name, Service: q.service, Transport: transport, Target: target, ValuesPerRequest: q.values, RowsPerRequest: q.rows}
}

// openStep measures q against target at rate, open loop.
func (b *rw1) openStep(ctx context.Context, q *querySet, target string, rate float64) (*Step, error) {
	return b.openStepWith(ctx, q, target, rate, b.cfg.MaxInFlight)
}

// openStepWith is openStep with inFlight requests in flight at most.
func (b *rw1) openStepWith(ctx context.Context, q *querySet, target string, rate float64, inFlight int) (*Step, error) {
	c, transport, err := b.caller(ctx, q, target)
	if err != nil {
		return nil, err
	}
	s := b.newStep(q, target, transport)
	s.Mode, s.Offered = "open", rate
	fmt.Fprintf(b.log, "kiln-bench: %s %s at %g/s for %v (+%v warm-up)\n", q.name, target, rate, b.cfg.Duration, b.cfg.Warmup)
	err = b.phase(ctx, s, q, func(onMeasure func()) (*Result, error) {
		return OpenLoop{
			Rate: rate, Duration: b.cfg.Duration, Warmup: b.cfg.Warmup, MaxInFlight: inFlight,
			DrainTimeout: b.cfg.RequestTimeout + 5*time.Second, OnMeasure: onMeasure,
		}.Run(ctx, c.call)
	}, c)
	return s, err
}

// openPair measures q against Kiln and the floor at rate, open loop: one
// step each, or Interleave slices of each, taken in turn.
func (b *rw1) openPair(ctx context.Context, q *querySet, rate float64) error {
	// Each slice measures at least minSliceRequests requests: fewer slices
	// at low rates and short durations.
	n := min(b.cfg.Interleave, int(b.cfg.Duration.Seconds()*rate/minSliceRequests))
	if n <= 1 {
		kiln, err := b.openStep(ctx, q, targetKiln, rate)
		if err != nil {
			return err
		}
		floor, err := b.openStep(ctx, q, targetFloor, rate)
		if err != nil {
			return err
		}
		kiln.P99VsFloor = ratio(kiln.Latency.P99, floor.Latency.P99)
		return nil
	}
	var steps [2]*Step
	var callers [2]caller
	for t, target := range []string{targetKiln, targetFloor} {
		c, transport, err := b.caller(ctx, q, target)
		if err != nil {
			return err
		}
		if err := c.check(ctx, 0); err != nil {
			return errors.Join(err, b.srv.alive())
		}
		callers[t] = c
		steps[t] = b.newStep(q, target, transport)
		steps[t].Mode, steps[t].Offered = "open", rate
	}
	// Each slice has its own warm-up, at least sliceWarmup: while the other
	// target ran, every row Kiln cached grew older than max_staleness (1 s
	// by default), and a slice must not start from a cache colder than a
	// long step's.
	slice, warm := b.cfg.Duration/time.Duration(n), max(b.cfg.Warmup/time.Duration(n), min(b.cfg.Warmup, sliceWarmup))
	fmt.Fprintf(b.log, "kiln-bench: %s kiln and floor at %g/s in turn, %d slices of %v (+%v warm-up) each\n", q.name, rate, n, slice, warm)
	var sums [2]measured
	offset := 0 // every slice goes on with the request sequence, the same for both targets
	for k := range n {
		// Kiln first in even rounds, the floor first in odd ones: neither
		// always follows the other.
		for u := range steps {
			t := u
			if k%2 == 1 {
				t = 1 - u
			}
			c, off := callers[t], offset
			m, err := b.measure(ctx, func(onMeasure func()) (*Result, error) {
				return OpenLoop{
					Rate: rate, Duration: slice, Warmup: warm, MaxInFlight: b.cfg.MaxInFlight,
					DrainTimeout: b.cfg.RequestTimeout + 5*time.Second, OnMeasure: onMeasure,
				}.Run(ctx, func(ctx context.Context, i int) error { return c.call(ctx, off+i) })
			})
			if err != nil {
				return err
			}
			sums[t].add(m)
		}
		offset += int(math.Ceil((warm + slice).Seconds() * rate))
	}
	for t, s := range steps {
		m := sums[t]
		s.fill(m.res)
		s.setServer(m)
		if err := b.done(s); err != nil {
			return err
		}
	}
	steps[0].P99VsFloor = ratio(steps[0].Latency.P99, steps[1].Latency.P99)
	return nil
}

// saturation measures Kiln's Q2 closed loop.
func (b *rw1) saturation(ctx context.Context, q *querySet) (*Step, error) {
	return b.saturationWith(ctx, q, b.cfg.SaturationWorkers)
}

// saturationWith measures q closed loop with workers workers.
func (b *rw1) saturationWith(ctx context.Context, q *querySet, workers int) (*Step, error) {
	c, transport, err := b.caller(ctx, q, targetKiln)
	if err != nil {
		return nil, err
	}
	s := b.newStep(q, targetKiln, transport)
	s.Mode, s.Workers = "closed", workers
	fmt.Fprintf(b.log, "kiln-bench: %s saturation with %d workers for %v (+%v warm-up)\n", q.name, s.Workers, b.cfg.Duration, b.cfg.Warmup)
	err = b.phase(ctx, s, q, func(onMeasure func()) (*Result, error) {
		return ClosedLoop{Workers: s.Workers, Duration: b.cfg.Duration, Warmup: b.cfg.Warmup, OnMeasure: onMeasure}.Run(ctx, c.call)
	}, c)
	return s, err
}

// writeOutputs writes results.json and latency.svg into OutDir.
func (b *rw1) writeOutputs() error {
	if err := writeResults(b.cfg.OutDir, b.rep); err != nil {
		return err
	}
	return b.rep.writeSVG(b.cfg.OutDir)
}
