package client

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc"

	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Constants of the balancing rule. They are not options: the defaults are
// what the rule needs, and tuning them is a change to measure.
const (
	// LatencyDecay is the time constant with which the latency estimate
	// of a replica that answers nothing decays towards zero: a replica
	// estimated k times slower than the others is tried again after about
	// LatencyDecay × ln(k) without answers (ln 40 ≈ 3.7).
	LatencyDecay = time.Second
	// latencyAlpha is how far one faster answer pulls the estimate down.
	latencyAlpha = 0.25
	// unmeasuredLatency stands for the latency of a replica not yet measured
	// (or decayed to nothing): low, so that it is tried soon, but not
	// zero, so that calls in flight still count.
	unmeasuredLatency = 10 * time.Microsecond
	// AffinityLoadFactor bounds the share of the calls in flight that an
	// affinity owner takes before calls spill to other replicas: at most
	// ⌈AffinityLoadFactor × (in flight + 1) / replicas up⌉ (consistent
	// hashing with bounded loads).
	AffinityLoadFactor = 1.25
	// MaxBackoffFactor caps how many times Backoff a replica stays down
	// after failures in a row.
	MaxBackoffFactor = 1 << maxBackoffShift
	maxBackoffShift  = 5
)

// replica is one serving process and what this client knows of it. Its
// counters are atomics: picking a replica takes no lock.
type replica struct {
	idx  int
	addr string
	hash uint64 // of addr, for rendezvous hashing
	conn *grpc.ClientConn
	stub kilnv1.FeatureServiceClient

	inflight  atomic.Int64
	ewmaNs    atomic.Int64 // latency estimate at lastNs, ns; 0: none yet
	lastNs    atomic.Int64 // client clock of the last observation
	downUntil atomic.Int64 // client clock until which the replica is skipped; 0: up
	fails     atomic.Int64 // failures in a row
	attempts  atomic.Uint64
	failures  atomic.Uint64
}

func newReplica(idx int, addr string, conn *grpc.ClientConn) *replica {
	return &replica{
		idx: idx, addr: addr, hash: xxhash.Sum64String(addr),
		conn: conn, stub: kilnv1.NewFeatureServiceClient(conn),
	}
}

// latency is the estimate at now: the last one, decayed by the time since.
func (r *replica) latency(now int64) float64 {
	est := float64(r.ewmaNs.Load())
	if dt := now - r.lastNs.Load(); dt > 0 && est > 0 {
		est *= math.Exp(-float64(dt) / float64(LatencyDecay))
	}
	return est
}

// observe folds a latency into the estimate. An exact observation is the
// duration of an answer; a lower bound is the elapsed time of an attempt
// that never answered (cancelled, deadline), which can only raise it.
func (r *replica) observe(now, rtt int64, lowerBound bool) {
	for {
		old := r.ewmaNs.Load()
		cur := r.latency(now)
		var next float64
		switch {
		case float64(rtt) > cur:
			next = float64(rtt) // peak: a slow answer counts at once
		case lowerBound:
			return
		default:
			next = cur + latencyAlpha*(float64(rtt)-cur)
		}
		if r.ewmaNs.CompareAndSwap(old, int64(next)) {
			r.lastNs.Store(now)
			return
		}
	}
}

// cost is what power of two choices compares: expected wait for one more
// call.
func (r *replica) cost(now int64) float64 {
	return float64(r.inflight.Load()+1) * max(r.latency(now), float64(unmeasuredLatency))
}

func (r *replica) down(now int64) bool { return r.downUntil.Load() > now }

// fail marks the replica down for backoff, doubled per failure in a row.
func (r *replica) fail(now int64, backoff time.Duration) {
	r.failures.Add(1)
	n := r.fails.Add(1)
	d := backoff << min(n-1, maxBackoffShift)
	r.downUntil.Store(now + int64(d))
}

func (r *replica) ok() {
	if r.fails.Load() != 0 {
		r.fails.Store(0)
	}
	if r.downUntil.Load() != 0 {
		r.downUntil.Store(0)
	}
}

// route is how a call picks replicas.
type route struct {
	affinity bool
	hash     uint64 // of the first entity key, when affinity
}

// pick chooses a replica not in tried (a bit per replica index), or nil
// when every replica was tried. Replicas that are down are chosen only
// when every untried one is down: trying one beats failing at once.
func (c *Client) pick(tried uint64, rt route, now int64) *replica {
	if rt.affinity {
		if r := c.owner(rt.hash, now); r != nil && tried&(1<<r.idx) == 0 {
			return r
		}
	}
	var up, down [MaxReplicas]*replica
	nu, nd := 0, 0
	for _, r := range c.replicas {
		switch {
		case tried&(1<<r.idx) != 0:
		case r.down(now):
			down[nd] = r
			nd++
		default:
			up[nu] = r
			nu++
		}
	}
	if nu > 0 {
		return twoChoices(up[:nu], now)
	}
	if nd > 0 {
		return twoChoices(down[:nd], now)
	}
	return nil
}

// twoChoices is power of two choices: two distinct replicas at random,
// the cheaper wins.
func twoChoices(rs []*replica, now int64) *replica {
	if len(rs) == 1 {
		return rs[0]
	}
	i := rand.IntN(len(rs))
	j := rand.IntN(len(rs) - 1)
	if j >= i {
		j++
	}
	a, b := rs[i], rs[j]
	if b.cost(now) < a.cost(now) {
		return b
	}
	return a
}

// owner is the replica that owns a key by rendezvous hashing, if it is up
// and within its bounded share of the calls in flight; nil otherwise.
func (c *Client) owner(hash uint64, now int64) *replica {
	var best *replica
	var bestScore uint64
	var total int64
	nUp := 0
	for _, r := range c.replicas {
		if s := mix64(hash ^ r.hash); best == nil || s > bestScore {
			best, bestScore = r, s
		}
		if !r.down(now) {
			nUp++
			total += r.inflight.Load()
		}
	}
	if best.down(now) {
		return nil
	}
	limit := math.Ceil(AffinityLoadFactor * float64(total+1) / float64(nUp))
	if float64(best.inflight.Load()+1) > limit {
		return nil
	}
	return best
}
