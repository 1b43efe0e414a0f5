package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/event"
)

// freshnessPhase is phase 3: a new server on phase 2's data and group,
// a steady stream of events produced while Q2 runs.
func (r *ingestRun) freshnessPhase(ctx context.Context, addr, projectFile string) (*FreshnessPhase, error) {
	cfg := r.cfg
	f := &FreshnessPhase{OfferedRate: cfg.FreshRate}
	span := cfg.FreshWarmup + cfg.FreshDuration
	q2, err := genQueries(r.gen, r.project, cfg.Seed, queryQ2Name, int(math.Ceil(cfg.Q2Rate*span.Seconds())), false)
	if err != nil {
		return nil, err
	}
	if err := r.startServerOn(ctx, projectFile, filepath.Join(r.dataDir, "kafka")); err != nil {
		return nil, err
	}
	defer r.stopServer()
	cl, err := newProducer(addr, 0)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	// The floor of freshness: a plain consumer in this process (no group,
	// from the end of the topic) timing each record from its timestamp to
	// its arrival, which is what the broker and the clients add before
	// Kiln sees a message.
	floor, err := startDeliveryFloor(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer floor.stop()

	// Probes wait out the consumer group's join (and the floor consumer's
	// start), so that the steady stream's first events are not charged
	// with them. A probe's record timestamp is an hour ahead: the server's
	// freshness histogram counts it as ~0 (a negative age is recorded as
	// 1 µs) rather than as the join time.
	live := r.gen.Live(cfg.FreshRate)
	var ev event.Event
	probes := int64(0)
	for floor.seen.Load() == 0 {
		if probes == 30 {
			return nil, errors.New("the floor consumer received none of 30 probe messages")
		}
		now := time.Now()
		probe := r.nextRecord(live, &ev, now, now.Add(time.Hour))
		if err := cl.ProduceSync(ctx, probe).FirstErr(); err != nil {
			return nil, fmt.Errorf("producing a probe: %w", err)
		}
		probes++
		for range 100 {
			if floor.seen.Load() > 0 || !sleepCtx(ctx, 20*time.Millisecond) {
				break
			}
		}
	}
	f.Probes = probes
	s0, ok, err := r.waitApplied(ctx, probes, probeTimeout)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("the server did not apply the probe message within %v (its sources: %+v)", probeTimeout, s0.Sources)
	}
	f.BeforeStream = s0.Sources[0].Freshness
	if s0.Sources[0].Messages > probes {
		fmt.Fprintf(r.log, "kiln-bench ingest: freshness: the server applied %d messages before the stream (replayed from phase 2): they count in its freshness\n", s0.Sources[0].Messages)
	}

	fc, err := newRawClient(r.srv.url+"/v1/features", cfg.RequestTimeout, cfg.MaxInFlight)
	if err != nil {
		return nil, err
	}
	defer fc.closeIdle()
	q2c := &httpFeatures{httpTarget{c: fc, url: r.srv.url + "/v1/features", q: q2, bodies: q2.bodies}}
	if err := q2c.check(ctx, 0); err != nil {
		return nil, errors.Join(err, r.srv.alive())
	}

	fmt.Fprintf(r.log, "kiln-bench ingest: freshness: producing %g events/s for %v while Q2 runs at %g/s (%v warm-up)\n", cfg.FreshRate, span, cfg.Q2Rate, cfg.FreshWarmup)
	c0, t0 := clientCPUSeconds(), time.Now()
	pctx, stopProducing := context.WithCancel(ctx)
	var produced, failed atomic.Int64
	var firstErr atomic.Value
	var ackMu sync.Mutex // guards ack
	ack := NewHistogram()
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		ticker := time.NewTicker(freshTick)
		defer ticker.Stop()
		start := time.Now()
		total := int64(math.Ceil(cfg.FreshRate * span.Seconds()))
		sent := int64(0)
		for sent < total {
			select {
			case <-pctx.Done():
				return
			case <-ticker.C:
			}
			due := min(int64(math.Floor(time.Since(start).Seconds()*cfg.FreshRate)), total) - sent
			for range due {
				now := time.Now()
				rec := r.nextRecord(live, &ev, now, now)
				cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
					if err != nil {
						if failed.Add(1) == 1 {
							firstErr.Store(err)
						}
						return
					}
					ackMu.Lock()
					record(ack, time.Since(r.Timestamp))
					ackMu.Unlock()
				})
			}
			sent += max(due, 0)
			produced.Store(sent)
		}
	}()
	waitProfile := r.profile(ctx, PhaseFreshness, min(cfg.Profile, span))
	stopSync := startSyncProbe(filepath.Join(r.dataDir, "fsync-probe"))
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		f.Timeline = sampleSeconds(ctx, r.srv, r.ctl, mark{stats: s0, at: time.Now()}, stopSampler, freshSecond)
	}()
	res, qerr := OpenLoop{
		Rate: cfg.Q2Rate, Duration: cfg.FreshDuration, Warmup: cfg.FreshWarmup, MaxInFlight: cfg.MaxInFlight,
		DrainTimeout: cfg.RequestTimeout + 5*time.Second,
	}.Run(ctx, q2c.call)
	<-prodDone
	stopProducing()
	f.DiskSync, f.DiskSyncs = stopSync()
	waitProfile()
	close(stopSampler)
	<-samplerDone
	if qerr != nil {
		return nil, qerr
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	f.Seconds = time.Since(t0).Seconds()
	f.Produced, f.ProduceErrors = produced.Load(), failed.Load()
	ackMu.Lock()
	f.ProduceAck = percentilesOf(ack)
	ackMu.Unlock()
	if f.ProduceErrors > 0 {
		return nil, fmt.Errorf("%d messages were not produced; first: %v", f.ProduceErrors, firstErr.Load())
	}
	// Wait for the stream's last events to be applied.
	want := s0.Sources[0].Messages + f.Produced
	s1, ok, err := r.waitApplied(ctx, want, drainTimeout)
	if err != nil {
		return nil, err
	}
	if !ok {
		fmt.Fprintf(r.log, "kiln-bench ingest: freshness: the server had applied %d of %d messages %v after the stream\n", s1.Sources[0].Messages, want, drainTimeout)
	}
	f.BrokerDelivery, f.BrokerDelivered = floor.stop()
	src := s1.Sources[0]
	f.Applied, f.EndLag, f.Freshness = src.Messages, src.Lag, src.Freshness
	f.ServerCPUSeconds = s1.CPUSeconds - s0.CPUSeconds
	f.ServerCores = ratio(f.ServerCPUSeconds, time.Since(t0).Seconds())
	f.ClientCPUSeconds = clientCPUSeconds() - c0
	s := &Step{Query: q2.name, Service: q2.service, Transport: TransportHTTP, Target: targetKiln, Mode: "open", Offered: cfg.Q2Rate,
		ValuesPerRequest: q2.values, RowsPerRequest: q2.rows}
	s.fill(res)
	s.Timeline, s.Distribution = nil, nil // kept short: this is not a latency study
	f.Q2 = s
	fr := f.Freshness
	fmt.Fprintf(r.log, "kiln-bench ingest: freshness: %d events produced, %d applied; freshness p50 %.1f p99 %.1f p99.9 %.1f max %.1f ms (broker delivery p50 %.1f p99 %.1f max %.1f ms); Q2 p50 %.2f p99 %.2f ms, %d errors\n",
		f.Produced, f.Applied, fr.P50, fr.P99, fr.P999, fr.Max, f.BrokerDelivery.P50, f.BrokerDelivery.P99, f.BrokerDelivery.Max, s.Latency.P50, s.Latency.P99, s.Errors)
	if f.Applied < want {
		return f, fmt.Errorf("the server applied %d of %d messages", f.Applied, want)
	}
	return f, nil
}

// deliveryFloor is a plain consumer of the topic, from its end, timing
// each record from its timestamp to its arrival.
type deliveryFloor struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	seen   atomic.Int64 // records received, probes included
	hist   *hdrhistogram.Histogram
	n      int64
	once   sync.Once
}

func startDeliveryFloor(ctx context.Context, addr string) (*deliveryFloor, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(ingestTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &deliveryFloor{cl: cl, cancel: cancel, done: make(chan struct{}), hist: NewHistogram()}
	go func() {
		defer close(d.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				d.seen.Add(1)
				if age := now.Sub(r.Timestamp); age >= 0 { // probes are stamped ahead
					record(d.hist, age)
					d.n++
				}
			})
		}
	}()
	return d, nil
}

// stop stops the consumer and returns its percentiles and count.
func (d *deliveryFloor) stop() (Percentiles, int64) {
	d.once.Do(func() {
		d.cancel()
		<-d.done
		d.cl.Close()
	})
	return percentilesOf(d.hist), d.n
}

// Sync probe: a small append and fsync every syncProbeEvery.
const (
	syncProbeEvery = 20 * time.Millisecond
	syncProbeBytes = 4 << 10
)

// startSyncProbe appends to and fsyncs path every syncProbeEvery until the
// returned function is called; that returns the fsync latencies and count.
// The file is removed at the end. A failure to create it yields no samples.
func startSyncProbe(path string) (stop func() (Percentiles, int64)) {
	hist := NewHistogram()
	var n int64
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return func() (Percentiles, int64) { return percentilesOf(hist), 0 }
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, syncProbeBytes)
		ticker := time.NewTicker(syncProbeEvery)
		defer ticker.Stop()
		for written := 0; ; written += len(buf) {
			select {
			case <-quit:
				return
			case <-ticker.C:
			}
			if written > 64<<20 { // keep the file small
				f.Truncate(0)
				f.Seek(0, io.SeekStart)
				written = 0
			}
			t0 := time.Now()
			if _, err := f.Write(buf); err != nil {
				return
			}
			if err := f.Sync(); err != nil {
				return
			}
			record(hist, time.Since(t0))
			n++
		}
	}()
	return func() (Percentiles, int64) {
		close(quit)
		<-done
		f.Close()
		os.Remove(path)
		return percentilesOf(hist), n
	}
}

// freshSecond is the server's state at the end of one second of the
// freshness phase; none without a source.
func freshSecond(second int, a, b mark) (FreshSecond, bool) {
	if len(a.stats.Sources) == 0 || len(b.stats.Sources) == 0 {
		return FreshSecond{}, false
	}
	src := b.stats.Sources[0]
	return FreshSecond{
		Second: second, Applied: src.Messages - a.stats.Sources[0].Messages, Lag: src.Lag,
		FreshP99: src.Freshness.P99, FreshMax: src.Freshness.Max,
		Cores: a.until(b).cores(), GCCycles: b.stats.GCCycles - a.stats.GCCycles,
		HeapMiB: float64(b.stats.HeapBytes) / (1 << 20),
	}, true
}

// waitApplied polls the server's stats until its first source has applied
// at least want messages (ok) or within has passed, and returns the last
// stats. It counts messages, not the lag: after a restart, a partition this
// process has not yet read a message from reports its whole length as lag.
func (r *ingestRun) waitApplied(ctx context.Context, want int64, within time.Duration) (s serverStats, ok bool, err error) {
	deadline := time.Now().Add(within)
	for {
		if s, err = r.srv.stats(ctx, r.ctl); err != nil {
			return s, false, err
		}
		if len(s.Sources) > 0 && s.Sources[0].Messages >= want {
			return s, true, nil
		}
		if time.Now().After(deadline) {
			return s, false, nil
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return s, false, ctx.Err()
		}
	}
}
