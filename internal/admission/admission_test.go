package admission

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a Limiter's clock that moves only when the test says.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Duration      { return time.Duration(c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newLimiter(t *testing.T, cfg Config) (*Limiter, *clock) {
	t.Helper()
	c := new(clock)
	cfg.Now = c.now
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// enqueue starts a read that must wait, and returns where its answer goes.
func enqueue(t *testing.T, l *Limiter, ctx context.Context) chan error {
	t.Helper()
	want := l.Stats().Queued + 1
	ch := make(chan error, 1)
	go func() { ch <- l.Acquire(ctx) }()
	waitFor(t, "a read to queue", func() bool { return l.Stats().Queued == want })
	return ch
}

func TestBelowTheLimitNothingWaits(t *testing.T) {
	l, c := newLimiter(t, Config{MaxConcurrent: 3})
	for range 1000 {
		for range 3 {
			if err := l.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		c.advance(time.Second) // slow reads, still no queue
		for range 3 {
			l.Release()
		}
	}
	if st := l.Stats(); st.Refused != 0 || st.Admitted != 3000 || st.Running != 0 || st.Overloaded {
		t.Fatalf("stats %+v, want 3000 admitted, none refused, none running", st)
	}
}

// A burst shorter than Interval waits, even when its waits are long (a
// cold server's slow reads): nothing is refused.
func TestABurstWaits(t *testing.T) {
	l, c := newLimiter(t, Config{MaxConcurrent: 1, Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond})
	for range 2 {
		if err := l.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		var queued []chan error
		for range 3 {
			queued = append(queued, enqueue(t, l, context.Background()))
		}
		for i, ch := range queued {
			c.advance(30 * time.Millisecond) // each waited ≥ 30 ms, above Target, for < Interval in all
			l.Release()
			if err := <-ch; err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
		}
		// The queue drains: the next burst finds a slot at once, and the
		// delays start over.
		l.Release()
	}
	if st := l.Stats(); st.Refused != 0 || st.Overloads != 0 || st.Admitted != 8 {
		t.Fatalf("stats %+v, want 8 admitted, nothing refused", st)
	}
}

// A standing queue (every read waited longer than Target for Interval)
// turns to refusals: the oldest waiters beyond MaxConcurrent at once, then
// every arrival that would queue behind MaxConcurrent others. Admitted reads
// complete, and once the load ends an Interval without a refusal ends the
// overload.
func TestAStandingQueueIsRefusedAndRecovers(t *testing.T) {
	l, c := newLimiter(t, Config{MaxConcurrent: 2, Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond})
	for range 2 {
		if err := l.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var queued []chan error
	for range 6 {
		queued = append(queued, enqueue(t, l, context.Background()))
	}
	// Reads leave the queue having waited 60 ms, then 110 ms: above Target
	// from the first for Interval.
	c.advance(60 * time.Millisecond)
	l.Release()
	if err := <-queued[0]; err != nil {
		t.Fatal(err)
	}
	if l.Stats().Overloaded {
		t.Fatal("overloaded after one long wait")
	}
	c.advance(50 * time.Millisecond)
	l.Release()
	if err := <-queued[1]; err != nil {
		t.Fatal(err)
	}
	c.advance(60 * time.Millisecond)
	l.Release() // 170 ms after the first wait above Target
	if err := <-queued[2]; err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if !st.Overloaded || st.Overloads != 1 {
		t.Fatalf("stats %+v, want overloaded", st)
	}
	// 3 waiters were left; MaxConcurrent (2) stay, the oldest is refused.
	if err := <-queued[3]; !errors.Is(err, ErrOverloaded) {
		t.Fatalf("oldest waiter: %v, want ErrOverloaded", err)
	}
	if st.Queued != 2 || st.Refused != 1 {
		t.Fatalf("stats %+v, want 2 queued and 1 refused", st)
	}
	// Arrivals now are refused at once, by Acquire and by Refuse.
	for range 3 {
		if err := l.Acquire(context.Background()); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("arrival while overloaded: %v, want ErrOverloaded", err)
		}
		if err := l.Refuse(); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("Refuse while overloaded: %v", err)
		}
	}
	// The admitted ones complete; the load ends.
	for _, ch := range queued[4:] {
		l.Release()
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	l.Release()
	l.Release()
	if st := l.Stats(); st.Running != 0 || st.Queued != 0 {
		t.Fatalf("stats %+v, want idle", st)
	}
	if err := l.Refuse(); err != nil {
		t.Fatalf("Refuse with free slots: %v", err)
	}
	// A free slot admits at once, overloaded or not.
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatalf("after the load: %v", err)
	}
	l.Release()
	if st := l.Stats(); !st.Overloaded {
		t.Fatalf("stats %+v: the overload ended before an interval without refusals", st)
	}
	c.advance(100 * time.Millisecond)
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatalf("after the load: %v", err)
	}
	if st := l.Stats(); st.Overloaded || st.Refused != 7 {
		t.Fatalf("stats %+v, want not overloaded, 7 refused", st)
	}
	l.Release()
}

// MaxQueue bounds the waiters even without overload.
func TestMaxQueue(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1, MaxQueue: 2})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := enqueue(t, l, context.Background()), enqueue(t, l, context.Background())
	if err := l.Acquire(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third waiter: %v, want ErrOverloaded", err)
	}
	for _, ch := range []chan error{a, b} {
		l.Release()
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	l.Release()
}

// A waiter whose context ends leaves the queue, and the slot it was not
// given goes to the next.
func TestWaiterGivesUp(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gone := enqueue(t, l, ctx)
	next := enqueue(t, l, context.Background())
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	waitFor(t, "the cancelled waiter to leave", func() bool { return l.Stats().Queued == 1 })
	l.Release()
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	l.Release()
	if st := l.Stats(); st.Running != 0 || st.Queued != 0 || st.Refused != 0 {
		t.Fatalf("stats %+v, want idle, nothing refused", st)
	}
}

func TestConfigRefusesNegatives(t *testing.T) {
	if _, err := New(Config{MaxConcurrent: -1}); err == nil {
		t.Fatal("negative MaxConcurrent accepted")
	}
}
