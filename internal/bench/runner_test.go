package bench

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The bounds below are loose on purpose: these tests run on small, noisy
// machines, and what they prove (a stall shows in every request due during
// it; the schedule is kept) holds by orders of magnitude.

// countAtLeast returns how many recorded latencies are ≥ d.
func countAtLeast(r *Result, h string, d time.Duration) int64 {
	hist := r.Latency
	if h == "service" {
		hist = r.Service
	}
	var n int64
	for _, b := range hist.Distribution() {
		if b.From >= d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

// A server that handles one request at a time and stalls once for 100 ms:
// at 1000 requests/s about 100 requests are due during the stall, and with
// the correction each of them carries the wait it would have seen. A
// closed-loop client would record one slow request.
func TestOpenLoopCorrectsCoordinatedOmission(t *testing.T) {
	t.Parallel()
	var once sync.Once
	call := func(ctx context.Context, i int) error {
		if i == 100 {
			once.Do(func() { time.Sleep(100 * time.Millisecond) })
		}
		return nil
	}
	// One request in flight: the stall holds back every request after it.
	res, err := OpenLoop{Rate: 1000, Duration: 600 * time.Millisecond, MaxInFlight: 1}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	slow := countAtLeast(res, "latency", 50*time.Millisecond)
	if slow < 20 {
		t.Errorf("%d requests recorded ≥ 50 ms, want many (≈ 50): the stall is not charged to the requests due during it", slow)
	}
	if m := res.Latency.Max(); m < 90_000 {
		t.Errorf("max latency %d µs, want ≥ 90 ms", m)
	}
	if len(res.Timeline) == 0 || res.Timeline[0].MaxMS < 90 || res.Timeline[0].Requests+res.Timeline[len(res.Timeline)-1].Requests < 500 {
		t.Errorf("timeline %+v: want the stall (≥ 90 ms) in second 0", res.Timeline)
	}
	// The uncorrected service time sees the stall once.
	if n := countAtLeast(res, "service", 50*time.Millisecond); n > 3 {
		t.Errorf("%d service times ≥ 50 ms, want about 1 (the stalled request)", n)
	}
	if res.Requests != 600 || res.Errors != 0 {
		t.Errorf("%d requests, %d errors; want 600 and 0", res.Requests, res.Errors)
	}
}

// With more requests allowed in flight the same stall, inside a server that
// serialises requests, is still charged to every request due during it.
func TestOpenLoopStallBehindLock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	call := func(ctx context.Context, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if i == 100 {
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	res, err := OpenLoop{Rate: 1000, Duration: 600 * time.Millisecond, MaxInFlight: 16}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if slow := countAtLeast(res, "latency", 50*time.Millisecond); slow < 20 {
		t.Errorf("%d requests recorded ≥ 50 ms, want many (≈ 50)", slow)
	}
}

func TestOpenLoopKeepsRate(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	call := func(ctx context.Context, i int) error { calls.Add(1); return nil }
	res, err := OpenLoop{Rate: 1000, Duration: time.Second}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Achieved < 900 || res.Achieved > 1100 {
		t.Errorf("achieved %.0f requests/s, offered 1000: want within 10 %%", res.Achieved)
	}
	if res.Requests != 1000 || calls.Load() != 1000 {
		t.Errorf("%d recorded, %d sent; want 1000 and 1000", res.Requests, calls.Load())
	}
	if res.Offered != 1000 {
		t.Errorf("offered %v", res.Offered)
	}
	// A fast handler is served well under the 1 ms interval, most of the time.
	if p50 := res.Latency.ValueAtQuantile(50); p50 > 20_000 {
		t.Errorf("p50 %d µs for a handler that returns at once", p50)
	}
}

func TestOpenLoopWarmupAndErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	call := func(ctx context.Context, i int) error {
		calls.Add(1)
		if i%10 == 0 {
			return errors.New("boom")
		}
		return nil
	}
	// 200 requests in the warm-up (i < 200), 300 measured: 30 of them fail.
	res, err := OpenLoop{Rate: 1000, Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 500 {
		t.Errorf("%d requests sent, want 500", calls.Load())
	}
	if res.Requests != 270 || res.Errors != 30 || res.Latency.TotalCount() != 270 {
		t.Errorf("recorded %d ok (%d in the histogram), %d errors; want 270, 270, 30", res.Requests, res.Latency.TotalCount(), res.Errors)
	}
	if res.FirstError != "boom" {
		t.Errorf("first error %q", res.FirstError)
	}
}

// Requests that outlive the drain timeout are cancelled and counted.
func TestOpenLoopDrainTimeout(t *testing.T) {
	t.Parallel()
	call := func(ctx context.Context, i int) error {
		if i == 5 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	start := time.Now()
	res, err := OpenLoop{Rate: 100, Duration: 100 * time.Millisecond, DrainTimeout: 100 * time.Millisecond}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 9 || res.Errors != 1 {
		t.Errorf("%d ok, %d errors; want 9 and 1", res.Requests, res.Errors)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the run took %v despite a 100 ms drain timeout", d)
	}
}

func TestOpenLoopStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := OpenLoop{Rate: 10, Duration: time.Hour}.Run(ctx, func(ctx context.Context, i int) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the context's", err)
	}
	if res == nil || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled run: result %v after %v", res, time.Since(start))
	}
}

func TestOpenLoopRejectsBadConfig(t *testing.T) {
	for _, o := range []OpenLoop{{Rate: 0, Duration: time.Second}, {Rate: 10}, {Rate: 1e9, Duration: time.Hour}} {
		if _, err := o.Run(context.Background(), nil); err == nil {
			t.Errorf("%+v ran", o)
		}
	}
}

func TestClosedLoop(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int64
	call := func(ctx context.Context, i int) error {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		inFlight.Add(-1)
		return nil
	}
	res, err := ClosedLoop{Workers: 3, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	// 3 workers × 300 ms / ~1.1 ms: several hundred; allow a slow box.
	if res.Requests < 100 || res.Achieved < 300 {
		t.Errorf("%d requests, %.0f/s; want ≥ 100 and ≥ 300/s", res.Requests, res.Achieved)
	}
	if peak.Load() > 3 {
		t.Errorf("%d requests in flight with 3 workers", peak.Load())
	}
	if p50 := res.Latency.ValueAtQuantile(50); p50 < 1000 {
		t.Errorf("p50 %d µs for a 1 ms handler", p50)
	}
}

// Refusals by admission control (429, RESOURCE_EXHAUSTED) are counted apart
// from errors and successes, with latencies of their own.
func TestRefusalsCountApart(t *testing.T) {
	t.Parallel()
	call := func(ctx context.Context, i int) error {
		switch i % 4 {
		case 1:
			return &httpError{status: http.StatusTooManyRequests, msg: "server at capacity"}
		case 2:
			return status.Error(codes.ResourceExhausted, "server at capacity")
		case 3:
			return &httpError{status: http.StatusServiceUnavailable, msg: "store down"}
		}
		return nil
	}
	res, err := OpenLoop{Rate: 2000, Duration: 200 * time.Millisecond}.Run(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Refused != 200 || res.Errors != 100 {
		t.Fatalf("%d ok, %d refused, %d errors; want 100, 200, 100", res.Requests, res.Refused, res.Errors)
	}
	if res.RefusedLatency.TotalCount() != 200 || res.Latency.TotalCount() != 100 {
		t.Fatalf("histograms hold %d refusals and %d successes", res.RefusedLatency.TotalCount(), res.Latency.TotalCount())
	}
}
