// Package workload generates RW1, Kiln's reference workload (feed ranking;
// docs/workload.md describes it): the events of the source
// "engagements" — a history spread over the days before "now" and a live
// stream at a set rate — and the entity keys that Q1/Q2 queries ask for.
//
// # Shape
//
// Every event has the fields of FieldNames, in that order — user_id int64,
// post_id int64, kind string, dwell_ms float64 — and its event time in
// Event.TS (Unix milliseconds). Callers map FieldNames onto their source
// schema.
//
//   - Entities: round(100,000·S) users with ids 1..U and round(1,000,000·S)
//     posts with ids 1..P (at least one of each); id 1 is the hottest.
//   - user_id ~ Zipf(s = 0.8) over 1..U and post_id ~ Zipf(s = 1.1) over
//     1..P, both truncated: P(k) = k^-s / Σ_{j≤n} j^-s. They are sampled with
//     alias tables (8 bytes per entity, built once per Generator: 8.8 MB at
//     S = 1), so any s > 0 works and a draw costs O(1).
//   - kind: view 85 %, like 10 %, share 2 %, comment 3 %.
//   - dwell_ms ~ log-normal, median 4,000 ms, sigma 1.0 (of the underlying
//     normal): dwell = 4000·e^Z, Z ~ N(0, 1), so the mean is 4000·e^0.5 ≈ 6,595
//     ms. It is always finite and > 0 (|Z| ≤ 12 by construction).
//   - The four fields are drawn independently of each other and of time.
//
// # History
//
// History yields Config.HistoryEvents events (exactly) with TS in
// [Now − HistoryDays, Now] (milliseconds, both ends inclusive), in
// non-decreasing time order, with a rate rising linearly from zero at the
// start to its maximum at Now: the event time, as a fraction x of the span,
// has density 2x, i.e. x = sqrt(u) for uniform u. The span is cut into
// slices of equal probability mass (about 16k events each); each slice gets
// exactly its share of the events (stratified sampling, so counts per slice
// have no multinomial noise), its times are drawn by inverse CDF inside the
// slice and sorted, and only then are the fields drawn. Memory is O(slice),
// not O(HistoryEvents).
//
// # Determinism
//
// The same Config gives the same events, byte for byte, on any machine and
// at any GOARCH/GOAMD64 level. All randomness comes from math/rand/v2's PCG
// seeded from Config.Seed (separate streams for history times, history
// fields and live events); nothing reads the global generator or the clock.
// Floating-point work uses only correctly rounded operations, with products
// kept from fusing into FMAs, plus a pure-Go log and exp (math.Log and
// math.Exp use per-architecture assembly). The sequence of events is part of
// the contract: TestGolden pins a digest of it.
//
// # Concurrency
//
// A Generator is immutable after NewGenerator: History, Live, QueryUser and
// QueryPosts may be called from any number of goroutines. A Live is not safe
// for concurrent use; make one per producer goroutine.
package workload

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
)

// SourceName is the name of the RW1 source.
const SourceName = "engagements"

// FieldNames are the names of the fields of every generated event, in the
// order of event.Event.Fields.
var FieldNames = []string{"user_id", "post_id", "kind", "dwell_ms"}

// Field positions in event.Event.Fields.
const (
	FieldUserID = iota
	FieldPostID
	FieldKind
	FieldDwellMS
	numFields
)

// The values of the kind field.
const (
	KindView    = "view"
	KindLike    = "like"
	KindShare   = "share"
	KindComment = "comment"
)

// Distribution parameters of RW1.
const (
	BaseUsers          = 100_000    // users at scale 1
	BasePosts          = 1_000_000  // posts at scale 1
	BaseHistoryEvents  = 20_000_000 // history events at scale 1
	DefaultHistoryDays = 30
	DefaultLiveRate    = 10_000.0 // events per second

	UserZipfS   = 0.8
	PostZipfS   = 1.1
	DwellMedian = 4000.0 // ms
	DwellSigma  = 1.0
)

// DefaultNow is the end of the history when Config.Now is zero. It is fixed
// (2026-01-01T00:00:00Z), never the wall clock, so that the zero Config is
// deterministic.
var DefaultNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config selects one RW1 instance. The zero Config is RW1 at scale 1 with
// seed 0 ending at DefaultNow.
type Config struct {
	// Seed seeds every random stream; 0 is a valid seed.
	Seed uint64
	// Scale is the scale factor S, multiplying entity and event counts.
	// 0 means 1. Any finite S > 0 works (e.g. 0.001 for tests and demos);
	// negative, NaN or infinite values make NewGenerator panic.
	Scale float64
	// Now is the end of the history (its last possible event time,
	// truncated to the millisecond). The zero time means DefaultNow.
	Now time.Time
	// HistoryEvents is the number of history events. 0 means
	// round(20,000,000·S); a negative value means no history at all.
	HistoryEvents int
	// HistoryDays is the length of the history in days. 0 means 30;
	// negative values make NewGenerator panic.
	HistoryDays int
}

// PCG stream selectors, one per independent random stream.
const (
	streamHistoryTime  = 0x6b696c6e2d747331 // "kiln-ts1"
	streamHistoryAttrs = 0x6b696c6e2d617431 // "kiln-at1"
	streamLive         = 0x6b696c6e2d6c7631 // "kiln-lv1"
)

// sliceEvents is the target number of history events per time slice.
const sliceEvents = 1 << 14

const msPerDay = 24 * 60 * 60 * 1000

// Generator produces one RW1 instance. Create it with NewGenerator.
type Generator struct {
	cfg     Config // with defaults filled in
	users   *zipf
	posts   *zipf
	nEvents uint64 // history events
	startMS int64  // first possible history TS
	endMS   int64  // last possible history TS (Now)
}

// NewGenerator builds the generator for cfg: it fills in the defaults and
// builds the Zipf tables (a few tens of milliseconds at S = 1). It panics on
// an invalid Config (see Config).
func NewGenerator(cfg Config) *Generator {
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if !(cfg.Scale > 0) || math.IsInf(cfg.Scale, 0) {
		panic(fmt.Sprintf("workload: invalid scale %v", cfg.Scale))
	}
	if cfg.Now.IsZero() {
		cfg.Now = DefaultNow
	}
	if cfg.HistoryDays == 0 {
		cfg.HistoryDays = DefaultHistoryDays
	}
	if cfg.HistoryDays < 0 {
		panic(fmt.Sprintf("workload: invalid history days %d", cfg.HistoryDays))
	}
	if cfg.HistoryEvents == 0 {
		cfg.HistoryEvents = int(scaled(BaseHistoryEvents, cfg.Scale, math.MaxInt))
	}
	var n uint64
	if cfg.HistoryEvents > 0 {
		n = uint64(cfg.HistoryEvents)
	}
	endMS := cfg.Now.UnixMilli()
	return &Generator{
		cfg:     cfg,
		users:   newZipf(scaled(BaseUsers, cfg.Scale, math.MaxUint32), UserZipfS),
		posts:   newZipf(scaled(BasePosts, cfg.Scale, math.MaxUint32), PostZipfS),
		nEvents: n,
		startMS: endMS - int64(cfg.HistoryDays)*msPerDay,
		endMS:   endMS,
	}
}

// scaled returns round(base·s), at least 1; it panics above limit.
func scaled(base, s float64, limit int64) int64 {
	v := max(math.Round(base*s), 1)
	if v >= float64(limit) {
		panic(fmt.Sprintf("workload: scale %v too large", s))
	}
	return int64(v)
}

// Config returns the generator's configuration with defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Users returns the number of users U; user ids are 1..U.
func (g *Generator) Users() int64 { return int64(g.users.n) }

// Posts returns the number of posts P; post ids are 1..P.
func (g *Generator) Posts() int64 { return int64(g.posts.n) }

// HistoryLen returns the number of events History yields.
func (g *Generator) HistoryLen() int { return int(g.nEvents) }

// HistorySpan returns the first and last possible history event times
// (Now − HistoryDays and Now, at millisecond precision).
func (g *Generator) HistorySpan() (start, end time.Time) {
	return time.UnixMilli(g.startMS).UTC(), time.UnixMilli(g.endMS).UTC()
}

// History calls fn for each history event in non-decreasing TS order (ties
// are possible at millisecond precision) until all HistoryLen events are
// yielded or fn returns false. Every call yields the same sequence.
//
// The *event.Event passed to fn, and its Fields slice, are reused for the
// next event: fn must copy what it keeps (copying the Values is enough; the
// kind strings are constants). fn must not retain ev or ev.Fields. In steady
// state History allocates nothing per event.
func (g *Generator) History(fn func(ev *event.Event) bool) {
	n := g.nEvents
	if n == 0 {
		return
	}
	nSlices := (n + sliceEvents - 1) / sliceEvents
	span := uint64(g.endMS - g.startMS)
	timeRNG := rand.NewPCG(g.cfg.Seed, streamHistoryTime)
	attrs := newAttrSource(g, rand.NewPCG(g.cfg.Seed, streamHistoryAttrs))
	ev := &event.Event{Fields: make([]event.Value, numFields)}

	// No slice holds more than ceil(n/nSlices) ≤ sliceEvents events.
	maxCount := (n + nSlices - 1) / nSlices
	buf := make([]uint64, 2*maxCount)
	keys, tmp := buf[:maxCount], buf[maxCount:]
	fslices, fspan := float64(nSlices), float64(span)
	prev := uint64(0) // events before slice i: floor(n·i/nSlices)
	for i := uint64(0); i < nSlices; i++ {
		hi, lo := bits.Mul64(n, i+1)
		next, _ := bits.Div64(hi, lo, nSlices)
		count := next - prev
		prev = next
		// Slice i covers CDF values [i/nSlices, (i+1)/nSlices); x = sqrt(F)
		// is the fraction of the span. base is the smallest offset the
		// slice can produce (sqrt and the float→int conversion are monotone).
		fi := float64(i)
		base := uint64(math.Sqrt(fi/fslices) * fspan)
		ks := keys[:count]
		var maxKey uint64
		for j := range ks {
			u := unitFloat(timeRNG.Uint64())
			off := uint64(math.Sqrt((fi+u)/fslices) * fspan)
			k := off - base
			ks[j] = k
			maxKey |= k
		}
		sorted := radixSort(ks, tmp[:count], maxKey)
		for _, k := range sorted {
			ev.TS = g.startMS + int64(base+k)
			if cap(ev.Fields) < numFields { // fn replaced it
				ev.Fields = make([]event.Value, numFields)
			}
			ev.Fields = ev.Fields[:numFields]
			attrs.fill(ev.Fields)
			if !fn(ev) {
				return
			}
		}
	}
}

// radixSort sorts a by LSD radix sort with 11-bit digits, using tmp (same
// length) as scratch, and returns whichever of the two holds the result.
// maxBits has every bit set that any key has set.
func radixSort(a, tmp []uint64, maxBits uint64) []uint64 {
	const digit = 11
	const mask = 1<<digit - 1
	var count [1 << digit]int
	src, dst := a, tmp
	for shift := uint(0); shift < 64 && maxBits>>shift != 0; shift += digit {
		clear(count[:])
		for _, v := range src {
			count[(v>>shift)&mask]++
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for _, v := range src {
			d := (v >> shift) & mask
			dst[count[d]] = v
			count[d]++
		}
		src, dst = dst, src
	}
	return src
}

// unitFloat maps 64 random bits to a float64 in [0, 1) exactly like
// rand.Float64 (multiples of 2^-53).
func unitFloat(x uint64) float64 {
	return float64(x>>11) * (1.0 / (1 << 53))
}

// attrSource draws the four fields of an event from one PCG stream, in a
// fixed order per event: user, post, kind, dwell.
type attrSource struct {
	rng       *rand.PCG
	users     *zipf
	posts     *zipf
	spare     float64 // the second normal of the last polar-method pair
	haveSpare bool
}

func newAttrSource(g *Generator, rng *rand.PCG) *attrSource {
	return &attrSource{rng: rng, users: g.users, posts: g.posts}
}

// fill sets f[0:4] (len(f) must be ≥ 4).
func (a *attrSource) fill(f []event.Value) {
	_ = f[FieldDwellMS]
	f[FieldUserID] = event.IntValue(a.users.drawPCG(a.rng))
	f[FieldPostID] = event.IntValue(a.posts.drawPCG(a.rng))
	f[FieldKind] = event.StringValue(kindOf(a.rng.Uint64()))
	f[FieldDwellMS] = event.FloatValue(DwellMedian * detExp(DwellSigma*a.normal()))
}

// kindOf maps 64 random bits to a kind with the RW1 mix.
func kindOf(x uint64) string {
	pct, _ := bits.Mul64(x, 100) // uniform in 0..99
	switch {
	case pct < 85:
		return KindView
	case pct < 95:
		return KindLike
	case pct < 97:
		return KindShare
	default:
		return KindComment
	}
}

// normal returns a standard normal variate by Marsaglia's polar method,
// which needs only log and sqrt (so it stays deterministic; rand's
// NormFloat64 calls math.Exp and math.Log). |result| ≤ 12: s ≥ 2^-104.
func (a *attrSource) normal() float64 {
	if a.haveSpare {
		a.haveSpare = false
		return a.spare
	}
	for {
		// 2u−1 is exact: u is a multiple of 2^-53.
		u := 2*unitFloat(a.rng.Uint64()) - 1
		v := 2*unitFloat(a.rng.Uint64()) - 1
		s := float64(u*u) + float64(v*v)
		if s > 0 && s < 1 {
			m := math.Sqrt(-2 * detLog(s) / s)
			a.spare = v * m
			a.haveSpare = true
			return u * m
		}
	}
}

// Live is a steady stream of live events. Create it with Generator.Live. It
// is not safe for concurrent use.
type Live struct {
	attrs    *attrSource
	interval time.Duration
}

// Live returns a live stream of rate events per second (rate ≤ 0, NaN or
// infinite means DefaultLiveRate). Its events have the same distributions as
// the history; their fields come from a stream of their own seeded from
// Config.Seed, so every Live of the same Config yields the same sequence of
// fields (give each producer its own Generator seed if that matters).
func (g *Generator) Live(rate float64) *Live {
	if !(rate > 0) || math.IsInf(rate, 0) {
		rate = DefaultLiveRate
	}
	return &Live{
		attrs:    newAttrSource(g, rand.NewPCG(g.cfg.Seed, streamLive)),
		interval: time.Duration(float64(time.Second) / rate),
	}
}

// Interval returns the time between two events at the stream's rate,
// 1/rate (truncated to the nanosecond).
func (l *Live) Interval() time.Duration { return l.interval }

// Next fills ev with the next live event, with TS = now in Unix
// milliseconds. It reuses ev.Fields when its capacity allows (so a caller
// that reuses ev allocates nothing), and sets len(ev.Fields) to 4.
func (l *Live) Next(now time.Time, ev *event.Event) {
	if cap(ev.Fields) < numFields {
		ev.Fields = make([]event.Value, numFields)
	}
	ev.Fields = ev.Fields[:numFields]
	ev.TS = now.UnixMilli()
	l.attrs.fill(ev.Fields)
}

// QueryUser draws a user id for a query with the events' law, Zipf(0.8)
// over 1..U, using r (which must not be shared between goroutines).
func (g *Generator) QueryUser(r *rand.Rand) int64 {
	return g.users.drawRand(r)
}

// maxRedraws bounds the redraws of a duplicate post in QueryPosts.
const maxRedraws = 32

// QueryPosts appends n post ids for a ranking query to dst[:0] and returns
// it, drawn from Zipf(1.1) over 1..P with r.
//
// The ids of one request are distinct: a duplicate is redrawn, up to 32
// times; if all redraws collide (only when n is a large fraction of P), the
// next unused id after the last draw (cyclically) is taken instead. If
// n > P, distinctness is impossible: after every post is used once the set
// starts over, so each id appears ⌊n/P⌋ or ⌈n/P⌉ times. It allocates only
// when dst is too small or n > 512.
func (g *Generator) QueryPosts(r *rand.Rand, n int, dst []int64) []int64 {
	dst = dst[:0]
	if n <= 0 {
		return dst
	}
	if cap(dst) < n {
		dst = make([]int64, 0, n)
	}
	// Open-addressing set of the ids used in the current round, load ≤ 1/2.
	size := 1
	for size < 2*n {
		size <<= 1
	}
	var stack [1024]int64
	var set []int64
	if size <= len(stack) {
		set = stack[:size]
	} else {
		set = make([]int64, size)
	}
	mask := uint64(size - 1)
	P := int64(g.posts.n)
	inSet := 0
	// add inserts id unless present; it reports whether it was inserted.
	add := func(id int64) bool {
		h := (uint64(id) * 0x9e3779b97f4a7c15) >> 32 & mask
		for set[h] != 0 {
			if set[h] == id {
				return false
			}
			h = (h + 1) & mask
		}
		set[h] = id
		inSet++
		return true
	}
	for len(dst) < n {
		if int64(inSet) == P {
			clear(set)
			inSet = 0
		}
		id := g.posts.drawRand(r)
		ok := add(id)
		for try := 0; !ok && try < maxRedraws; try++ {
			id = g.posts.drawRand(r)
			ok = add(id)
		}
		for !ok {
			id = id%P + 1
			ok = add(id)
		}
		dst = append(dst, id)
	}
	return dst
}
