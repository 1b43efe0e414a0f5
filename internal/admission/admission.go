// Package admission owns the read path's overload control: which feature
// reads run now, which wait a moment for a slot, and which are refused at
// once, before their request body is read or decoded.
//
// A Limiter runs at most MaxConcurrent reads at once; a read that finds
// every slot taken waits in a queue. The signal of overload is how long
// reads wait in that queue (their sojourn time), as in CoDel: a queue that
// forms and drains is a burst, and waits; a queue in which every read has
// waited longer than Target for a whole Interval is a standing queue — the
// reads arrive faster than they are served — and the Limiter is then
// overloaded. While overloaded it keeps at most MaxConcurrent reads
// waiting (about one read's time of waiting each) and refuses the rest on
// arrival with ErrOverloaded; entering that state it refuses the oldest
// waiters beyond that bound at once. It leaves the state once an Interval
// has passed without a refusal: the short queue was enough.
//
// Why this signal, and not latency or rows in flight: a read's latency
// grows when its rows are cold (right after a restart, rows come from the
// store rather than the row cache) although nothing queues, and rows in
// flight grow with latency (Little's law), so both refuse a server that
// is merely cold. Queueing delay grows only when reads arrive faster than
// they finish. Counting requests rather than their rows needs no decoded
// body, so the decision is made before any work: a refusal costs a lock, a
// counter and a 429 of a few hundred bytes. The defaults (10 ms for 1 s)
// let the slow reads of a cold start wait: with 5 ms for 100 ms, Q2 at
// 200/s right after a restart was refused 17 times in 2,000.
//
// What it does not see: work done before a handler runs. Reading and
// parsing requests on thousands of busy connections queues in the runtime
// and the kernel, not here; requests whose handlers cost little (one key)
// are shed only once their handlers queue too. A process that admits reads
// should keep a P of the Go scheduler free of them (see ReserveIntake):
// the runtime polls the network only when a P runs out of work, so while
// every P runs an admitted read, arriving requests — refusals included —
// wait unseen behind them.
//
// HTTPHandler and GRPCServerOptions put a Limiter in front of the APIs.
// The caller owns the Limiter; it is safe for concurrent use.
package admission

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded refuses a read because the server is at capacity. It is
// retryable: the client should back off, or try another replica.
var ErrOverloaded = errors.New("server at capacity: retry after a short backoff or on another replica")

// Defaults of Config.
const (
	DefaultConcurrentPerCPU = 1
	DefaultTarget           = 10 * time.Millisecond
	DefaultInterval         = time.Second
	// DefaultMaxQueuePerSlot bounds the reads waiting when the Limiter is
	// not overloaded, as a multiple of MaxConcurrent.
	DefaultMaxQueuePerSlot = 64
)

// Config configures a Limiter. The zero value takes every default.
type Config struct {
	// MaxConcurrent is the most admitted reads running at once. Default
	// PerCPU × CPUs.
	MaxConcurrent int
	// PerCPU is MaxConcurrent's default per CPU. Default
	// DefaultConcurrentPerCPU: a read that does not wait on a remote store
	// uses a CPU from start to end, so one per CPU keeps the CPUs busy, and
	// admitted reads do not share them with a crowd. Reads that wait on the
	// network (a remote store) need more.
	PerCPU int
	// CPUs is the CPUs the reads run on. Default GOMAXPROCS, or what
	// ReserveIntake returned.
	CPUs int
	// Target is the queueing delay above which a queue counts as standing
	// once every read has waited longer than it for Interval. Default
	// DefaultTarget.
	Target time.Duration
	// Interval is how long the queueing delay must stay above Target
	// before reads are refused: bursts shorter than it wait. Default
	// DefaultInterval.
	Interval time.Duration
	// MaxQueue bounds the reads waiting while not overloaded (their memory:
	// a goroutine and the request's headers). Default
	// DefaultMaxQueuePerSlot × MaxConcurrent.
	MaxQueue int
	// Now is a monotonic clock. Default: time since New.
	Now func() time.Duration
}

// Limiter admits, queues or refuses reads. See the package doc.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	running int       // admitted reads not yet released; guarded by mu
	queue   []*waiter // oldest first; guarded by mu
	// firstAbove is when the queueing delay, above Target since then,
	// makes the queue standing (0: the last delay was below Target);
	// guarded by mu.
	firstAbove time.Duration
	overloaded bool // guarded by mu
	// lastRefusal is when a read was last refused; guarded by mu. The
	// overload ends once an Interval has passed without one.
	lastRefusal time.Duration

	admitted, refused, overloads atomic.Int64
}

// waiter is a read waiting for a slot. The Limiter sends it nil (it holds a
// slot now) or ErrOverloaded, once.
type waiter struct {
	since time.Duration
	ch    chan error
}

var waiters = sync.Pool{New: func() any { return &waiter{ch: make(chan error, 1)} }}

// New returns a Limiter; it refuses a Config with negative values.
func New(cfg Config) (*Limiter, error) {
	if cfg.MaxConcurrent < 0 || cfg.PerCPU < 0 || cfg.CPUs < 0 || cfg.Target < 0 || cfg.Interval < 0 || cfg.MaxQueue < 0 {
		return nil, errors.New("admission: MaxConcurrent, PerCPU, CPUs, Target, Interval and MaxQueue take 0 for their defaults or positive values")
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = runtime.GOMAXPROCS(0)
	}
	if cfg.PerCPU == 0 {
		cfg.PerCPU = DefaultConcurrentPerCPU
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = cfg.PerCPU * cfg.CPUs
	}
	if cfg.Target == 0 {
		cfg.Target = DefaultTarget
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueuePerSlot * cfg.MaxConcurrent
	}
	if cfg.Now == nil {
		start := time.Now()
		cfg.Now = func() time.Duration { return time.Since(start) }
	}
	return &Limiter{cfg: cfg}, nil
}

// Acquire admits a read, waiting for a slot if need be, or refuses it with
// ErrOverloaded at once. It returns ctx's error if ctx ends while the read
// waits. After a nil error the caller must call Release when the read is
// done.
func (l *Limiter) Acquire(ctx context.Context) error {
	now := l.cfg.Now()
	l.mu.Lock()
	if l.overloaded && now-l.lastRefusal >= l.cfg.Interval {
		// A whole interval with no read refused: the short queue kept
		// while overloaded was enough.
		l.overloaded = false
	}
	if l.running < l.cfg.MaxConcurrent && len(l.queue) == 0 {
		// No queue: reads are not arriving faster than they finish now.
		l.running++
		l.firstAbove = 0
		l.mu.Unlock()
		l.admitted.Add(1)
		return nil
	}
	if l.fullLocked() {
		l.lastRefusal = now
		l.mu.Unlock()
		l.refused.Add(1)
		return ErrOverloaded
	}
	w := waiters.Get().(*waiter)
	w.since = now
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	select {
	case err := <-w.ch:
		waiters.Put(w)
		return err
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, q := range l.queue {
		if q == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			l.mu.Unlock()
			waiters.Put(w)
			return ctx.Err()
		}
	}
	l.mu.Unlock()
	// It was answered meanwhile: give back the slot it was handed.
	if err := <-w.ch; err == nil {
		l.Release()
	}
	waiters.Put(w)
	return ctx.Err()
}

// fullLocked reports whether a read that finds no free slot is refused.
func (l *Limiter) fullLocked() bool {
	return len(l.queue) >= l.cfg.MaxQueue || l.overloaded && len(l.queue) >= l.cfg.MaxConcurrent
}

// Release ends an admitted read: its slot goes to the oldest waiter.
func (l *Limiter) Release() {
	now := l.cfg.Now()
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.running--
		l.mu.Unlock()
		return
	}
	w := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	l.observeLocked(now, now-w.since)
	l.mu.Unlock()
	l.admitted.Add(1)
	w.ch <- nil
}

// observeLocked takes the queueing delay of a read leaving the queue, and
// enters the overloaded state when the delay has stayed above Target for
// Interval.
func (l *Limiter) observeLocked(now, delay time.Duration) {
	switch {
	case delay < l.cfg.Target:
		l.firstAbove = 0
	case l.firstAbove == 0:
		l.firstAbove = now + l.cfg.Interval
	case now >= l.firstAbove && !l.overloaded:
		l.overloaded = true
		l.overloads.Add(1)
		// The reads beyond what the overloaded state keeps waiting have
		// waited long already: refuse the oldest now rather than serve
		// them late.
		if n := len(l.queue) - l.cfg.MaxConcurrent; n > 0 {
			for _, w := range l.queue[:n] {
				w.ch <- ErrOverloaded
			}
			l.refused.Add(int64(n))
			l.queue = append(l.queue[:0], l.queue[n:]...)
		}
		l.lastRefusal = now
	}
}

// Refuse is Acquire's answer when it would refuse at once: it counts the
// refusal and returns ErrOverloaded, or returns nil and admits nothing. A
// caller that must not wait (gRPC's tap handle runs on the connection's
// reader) asks it first, then calls Acquire later.
func (l *Limiter) Refuse() error {
	now := l.cfg.Now()
	l.mu.Lock()
	full := l.running >= l.cfg.MaxConcurrent && l.fullLocked()
	if full {
		l.lastRefusal = now
	}
	l.mu.Unlock()
	if full {
		l.refused.Add(1)
		return ErrOverloaded
	}
	return nil
}

// Refused is the number of reads refused so far.
func (l *Limiter) Refused() int64 { return l.refused.Load() }

// Stats is what a Limiter is doing, for GET /debug/stats.
type Stats struct {
	MaxConcurrent int  `json:"max_concurrent"`
	Running       int  `json:"running"`
	Queued        int  `json:"queued"`
	Overloaded    bool `json:"overloaded"`
	// Admitted and Refused count reads; Overloads counts the times a
	// standing queue made the Limiter refuse.
	Admitted  int64 `json:"admitted"`
	Refused   int64 `json:"refused"`
	Overloads int64 `json:"overloads"`
}

// Stats returns the Limiter's state and counters.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		MaxConcurrent: l.cfg.MaxConcurrent, Running: l.running, Queued: len(l.queue), Overloaded: l.overloaded,
		Admitted: l.admitted.Load(), Refused: l.refused.Load(), Overloads: l.overloads.Load(),
	}
}
