package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Defaults of the runners.
const (
	DefaultMaxInFlight  = 64
	DefaultDrainTimeout = 10 * time.Second
)

// maxScheduled bounds the requests one open-loop run schedules, so a typo in
// a rate cannot make a run that never ends.
const maxScheduled = 100_000_000

// Call performs request i of a sequence and returns an error if it failed.
// It must return soon after ctx is cancelled.
type Call func(ctx context.Context, i int) error

// Result is what a run measured. Counts and histograms cover only the
// measured period (after the warm-up).
type Result struct {
	// Offered is the scheduled rate (requests/s); 0 for a closed loop.
	Offered float64
	// Achieved is the rate of successful completions over Elapsed.
	Achieved float64
	// Requests counts successful requests; Errors failed ones (not in the
	// histograms) and requests still unfinished when the run gave up on
	// them; Refused the requests the server's admission control refused
	// (429, RESOURCE_EXHAUSTED), in neither.
	Requests, Errors, Refused int64
	// RefusedLatency and RefusedService are the latencies of the refusals,
	// as Latency and Service are of the successful requests.
	RefusedLatency, RefusedService *hdrhistogram.Histogram
	// FirstError is the first error met, for the report; "" if none.
	FirstError string
	// Elapsed runs from the end of the warm-up to the last completion (at
	// least the measured duration).
	Elapsed time.Duration
	// Latency is the latency of each successful request: for an open loop
	// from its due time (corrected for coordinated omission), for a closed
	// loop from its send time.
	Latency *hdrhistogram.Histogram
	// Service is the latency from the moment each request was actually
	// sent. In an open loop it differs from Latency when the client sent
	// late (the in-flight bound was reached, or the client itself was
	// slow); comparing the two shows how much the correction adds.
	Service *hdrhistogram.Histogram
	// Timeline has one entry per second of the measured period (by due
	// time in open loop, send time in closed loop), so a stall shows when
	// it happened.
	Timeline []Second
}

// Second sums up the requests of one second of a run.
type Second struct {
	Second   int     `json:"second"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	MeanMS   float64 `json:"mean_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// recorder collects completions from all workers.
type recorder struct {
	mu       sync.Mutex // guards every field below
	latency  *hdrhistogram.Histogram
	service  *hdrhistogram.Histogram
	refusedL *hdrhistogram.Histogram
	refusedS *hdrhistogram.Histogram
	ok, errs int64
	refused  int64
	firstErr error
	lastDone time.Time
	start    time.Time // of the measured period
	timeline []Second
	sums     []time.Duration // latency sum per second, for the means
}

func newRecorder(measureStart time.Time) *recorder {
	return &recorder{latency: NewHistogram(), service: NewHistogram(), refusedL: NewHistogram(), refusedS: NewHistogram(), start: measureStart}
}

func (r *recorder) add(due, sent, done time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if done.After(r.lastDone) {
		r.lastDone = done
	}
	sec := min(max(int(due.Sub(r.start)/time.Second), 0), maxTimeline-1)
	for len(r.timeline) <= sec {
		r.timeline = append(r.timeline, Second{Second: len(r.timeline)})
		r.sums = append(r.sums, 0)
	}
	ts := &r.timeline[sec]
	if isRefusal(err) {
		r.refused++
		record(r.refusedL, done.Sub(due))
		record(r.refusedS, done.Sub(sent))
		return
	}
	if err != nil {
		r.errs++
		ts.Errors++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.ok++
	lat := done.Sub(due)
	record(r.latency, lat)
	record(r.service, done.Sub(sent))
	ts.Requests++
	r.sums[sec] += lat
	ts.MaxMS = max(ts.MaxMS, float64(lat.Microseconds())/1000)
}

// result builds the Result of a run whose measured period was planned to
// last dur; unfinished requests are errors.
func (r *recorder) result(dur time.Duration, unfinished int64) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := dur
	if e := r.lastDone.Sub(r.start); e > elapsed {
		elapsed = e
	}
	res := &Result{
		Requests: r.ok, Errors: r.errs + unfinished, Refused: r.refused, Elapsed: elapsed,
		Latency: r.latency, Service: r.service, RefusedLatency: r.refusedL, RefusedService: r.refusedS, Timeline: r.timeline,
	}
	for i := range res.Timeline {
		if n := res.Timeline[i].Requests; n > 0 {
			res.Timeline[i].MeanMS = float64((r.sums[i] / time.Duration(n)).Microseconds()) / 1000
		}
	}
	if elapsed > 0 {
		res.Achieved = float64(r.ok) / elapsed.Seconds()
	}
	if r.firstErr != nil {
		res.FirstError = r.firstErr.Error()
	} else if unfinished > 0 {
		res.FirstError = fmt.Sprintf("%d requests unfinished when the run ended", unfinished)
	}
	return res
}

// OpenLoop sends requests at a fixed arrival rate (see the package doc).
type OpenLoop struct {
	// Rate is the offered rate in requests per second; it must be > 0.
	Rate float64
	// Duration is the measured period; it must be > 0.
	Duration time.Duration
	// Warmup precedes the measured period: requests due in it are sent
	// but not recorded. 0 means none.
	Warmup time.Duration
	// MaxInFlight bounds the requests in flight. 0 means
	// DefaultMaxInFlight. A request due while the bound is reached waits
	// for a slot; its latency still counts from its due time.
	MaxInFlight int
	// DrainTimeout bounds how long the run waits, after the last request
	// is sent, for those in flight; then it cancels them and counts them
	// as errors. 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// OnMeasure, if set, is called once, on a goroutine of its own, when
	// the measured period begins (the caller reads counters there); Run
	// returns only after it has returned.
	OnMeasure func()
}

func (o *OpenLoop) check() error {
	if !(o.Rate > 0) || math.IsInf(o.Rate, 0) {
		return fmt.Errorf("bench: open-loop rate %v: want a positive number of requests per second", o.Rate)
	}
	if o.Duration <= 0 || o.Warmup < 0 {
		return fmt.Errorf("bench: open-loop duration %v and warm-up %v: want duration > 0 and warm-up ≥ 0", o.Duration, o.Warmup)
	}
	if n := (o.Warmup + o.Duration).Seconds() * o.Rate; n > maxScheduled {
		return fmt.Errorf("bench: %.0f requests in one run (rate × (warm-up + duration)) is over the limit of %d", n, maxScheduled)
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	return nil
}

// Run sends ceil(Rate·(Warmup+Duration)) requests, request i due at
// start + i/Rate, and waits for them (up to DrainTimeout after the last is
// sent). It returns early with ctx's error, and what was measured so far,
// if ctx is cancelled.
func (o OpenLoop) Run(ctx context.Context, call Call) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	total := int(math.Ceil((o.Warmup + o.Duration).Seconds() * o.Rate))
	// Request i is due before the end of the warm-up iff i < Warmup·Rate.
	warmN := int(math.Ceil(o.Warmup.Seconds() * o.Rate))
	interval := float64(time.Second) / o.Rate // ns, kept fractional

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	hook := startHook(o.OnMeasure, o.Warmup)
	defer hook.wait()
	// After the drain timeout the run gives up: calls that return later
	// are counted as unfinished, not recorded.
	var gaveUp atomic.Bool
	var abandoned atomic.Int64
	var next atomic.Int64 // the next request to claim
	start := time.Now()
	rec := newRecorder(start.Add(o.Warmup))
	due := func(i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	// Each worker claims the next request, sleeps until it is due and
	// sends it. A request claimed late (every worker was busy) is sent at
	// once, its latency still counted from its due time; so the workers
	// are the in-flight bound. Workers sleep themselves (see sleeper)
	// rather than wait for a dispatcher: a hand-off between goroutines adds
	// a wake-up, and every microsecond the client is late is charged to
	// the server.
	var sentN atomic.Int64
	allSent := make(chan struct{})
	var wg sync.WaitGroup
	for range min(o.MaxInFlight, total) {
		wg.Go(func() {
			sl := newSleeper()
			defer sl.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				t := due(i)
				if !sl.sleepUntil(ctx, t) {
					return
				}
				if sentN.Add(1) == int64(total) {
					close(allSent)
				}
				sent := time.Now()
				err := call(callCtx, i)
				done := time.Now()
				switch {
				case i < warmN:
				case gaveUp.Load():
					abandoned.Add(1)
				default:
					rec.add(t, sent, done, err)
				}
			}
		})
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	select {
	case <-allSent:
	case <-workersDone: // cancelled
	}
	timer := time.NewTimer(o.DrainTimeout)
	defer timer.Stop()
	select {
	case <-workersDone:
	case <-timer.C:
		gaveUp.Store(true)
		cancel()
		<-workersDone
	}
	res := rec.result(o.Duration, abandoned.Load())
	res.Offered = o.Rate
	return res, ctx.Err()
}

// ClosedLoop runs Workers workers, each sending its next request as soon as
// the previous one completes, for Warmup + Duration.
type ClosedLoop struct {
	// Workers is the number of concurrent workers; it must be > 0.
	Workers int
	// Duration is the measured period; it must be > 0.
	Duration time.Duration
	// Warmup precedes it; requests sent in it are not recorded.
	Warmup time.Duration
	// OnMeasure is as in OpenLoop.
	OnMeasure func()
}

// Run runs the workers; request indexes are handed out in order across
// workers (0, 1, 2, …). A worker stops sending at the end of the period;
// requests in flight then finish (calls must honour ctx, which bounds
// them). It returns early with ctx's error if ctx is cancelled.
func (c ClosedLoop) Run(ctx context.Context, call Call) (*Result, error) {
	if c.Workers <= 0 || c.Duration <= 0 || c.Warmup < 0 {
		return nil, fmt.Errorf("bench: closed loop with %d workers, duration %v, warm-up %v: want workers > 0, duration > 0, warm-up ≥ 0", c.Workers, c.Duration, c.Warmup)
	}
	var next atomic.Int64
	hook := startHook(c.OnMeasure, c.Warmup)
	defer hook.wait()
	start := time.Now()
	measureStart := start.Add(c.Warmup)
	rec := newRecorder(measureStart)
	end := measureStart.Add(c.Duration)
	var wg sync.WaitGroup
	for range c.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				i := int(next.Add(1) - 1)
				err := call(ctx, i)
				if !sent.Before(measureStart) {
					rec.add(sent, sent, time.Now(), err)
				}
			}
		})
	}
	wg.Wait()
	res := rec.result(c.Duration, 0)
	return res, ctx.Err()
}

// hook calls a function once after a delay, or when the run ends first.
type hook struct {
	fn   func()
	t    *time.Timer
	done chan struct{}
}

func startHook(fn func(), after time.Duration) *hook {
	if fn == nil {
		return nil
	}
	h := &hook{fn: fn, done: make(chan struct{})}
	h.t = time.AfterFunc(after, func() { fn(); close(h.done) })
	return h
}

// wait calls the function now if its time has not come, and waits for it
// to return.
func (h *hook) wait() {
	if h == nil {
		return
	}
	if h.t.Stop() {
		h.fn()
		close(h.done)
	}
	<-h.done
}
