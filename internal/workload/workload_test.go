package workload

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
)

// collect returns copies of the first max history events of g.
func collect(g *Generator, max int) []event.Event {
	var out []event.Event
	g.History(func(ev *event.Event) bool {
		out = append(out, event.Event{TS: ev.TS, Fields: slices.Clone(ev.Fields)})
		return len(out) < max
	})
	return out
}

func eventsEqual(a, b event.Event) bool {
	return a.TS == b.TS && slices.EqualFunc(a.Fields, b.Fields, event.Value.Equal)
}

var (
	scale1Once sync.Once
	scale1Gen  *Generator
)

// scale1 returns the shared generator of the zero Config (RW1 at S = 1).
func scale1() *Generator {
	scale1Once.Do(func() { scale1Gen = NewGenerator(Config{}) })
	return scale1Gen
}

func TestDefaults(t *testing.T) {
	g := scale1()
	if g.Users() != 100_000 || g.Posts() != 1_000_000 || g.HistoryLen() != 20_000_000 {
		t.Fatalf("S=1: users %d posts %d events %d", g.Users(), g.Posts(), g.HistoryLen())
	}
	start, end := g.HistorySpan()
	if !end.Equal(DefaultNow) || end.Sub(start) != 30*24*time.Hour {
		t.Fatalf("span %v .. %v", start, end)
	}
	cfg := g.Config()
	if cfg.Scale != 1 || cfg.HistoryDays != 30 || !cfg.Now.Equal(DefaultNow) {
		t.Fatalf("config defaults: %+v", cfg)
	}
	if len(FieldNames) != numFields || FieldNames[FieldUserID] != "user_id" ||
		FieldNames[FieldPostID] != "post_id" || FieldNames[FieldKind] != "kind" ||
		FieldNames[FieldDwellMS] != "dwell_ms" || SourceName != "engagements" {
		t.Fatal("field names / source name")
	}

	g = NewGenerator(Config{Scale: 0.001, HistoryEvents: -1})
	if g.HistoryLen() != 0 {
		t.Fatalf("negative HistoryEvents: %d events", g.HistoryLen())
	}
	g.History(func(*event.Event) bool { t.Fatal("event from empty history"); return false })

	for _, bad := range []Config{{Scale: -1}, {Scale: math.NaN()}, {Scale: math.Inf(1)}, {HistoryDays: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewGenerator(%+v) did not panic", bad)
				}
			}()
			NewGenerator(bad)
		}()
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 7, Scale: 0.01, Now: time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)}
	a := collect(NewGenerator(cfg), 10_000)
	g := NewGenerator(cfg)
	b := collect(g, 10_000)
	again := collect(g, 10_000) // History restarts every call
	if len(a) != 10_000 || len(b) != 10_000 || len(again) != 10_000 {
		t.Fatalf("lengths %d %d %d", len(a), len(b), len(again))
	}
	for i := range a {
		if !eventsEqual(a[i], b[i]) || !eventsEqual(a[i], again[i]) {
			t.Fatalf("event %d differs: %v / %v / %v", i, a[i], b[i], again[i])
		}
	}

	cfg.Seed = 8
	c := collect(NewGenerator(cfg), 10_000)
	same := 0
	for i := range a {
		if eventsEqual(a[i], c[i]) {
			same++
		}
	}
	if same > 10 {
		t.Fatalf("seed 7 and 8 share %d of 10000 events", same)
	}

	// Live streams and queries are deterministic too.
	la, lb := NewGenerator(cfg).Live(0), NewGenerator(cfg).Live(0)
	now := time.Unix(1_700_000_000, 0)
	var ea, eb event.Event
	for i := 0; i < 1000; i++ {
		la.Next(now, &ea)
		lb.Next(now, &eb)
		if !eventsEqual(ea, eb) {
			t.Fatalf("live event %d differs", i)
		}
	}
	ra, rb := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
	pa := g.QueryPosts(ra, 500, nil)
	pb := g.QueryPosts(rb, 500, nil)
	if !slices.Equal(pa, pb) || g.QueryUser(ra) != g.QueryUser(rb) {
		t.Fatal("queries not deterministic")
	}
}

// digest hashes the first n (or, if n ≤ 0, all) history events of g.
func digest(g *Generator, n int) uint64 {
	h := fnv.New64a()
	var b []byte
	g.History(func(ev *event.Event) bool {
		b = binary.LittleEndian.AppendUint64(b[:0], uint64(ev.TS))
		b = binary.LittleEndian.AppendUint64(b, uint64(ev.Fields[FieldUserID].Int))
		b = binary.LittleEndian.AppendUint64(b, uint64(ev.Fields[FieldPostID].Int))
		b = append(b, ev.Fields[FieldKind].Str...)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(ev.Fields[FieldDwellMS].Float))
		h.Write(b)
		n--
		return n != 0
	})
	return h.Sum64()
}

// TestGolden pins the event sequence: the same Config must give the same
// bytes on every machine, GOARCH and GOAMD64 level, and across releases. A
// deliberate change to the generator must update these digests (and be
// announced: it changes every RW1 number).
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want uint64
	}{
		{Config{Seed: 42, Scale: 0.01}, 0x3026409225d187f7},
		{Config{Seed: 1, Scale: 0.001, HistoryDays: 3, Now: time.UnixMilli(1_750_000_000_123)}, 0xd63cda776763f3a4},
	} {
		if got := digest(NewGenerator(c.cfg), 50_000); got != c.want {
			t.Errorf("digest(%+v) = %#x, want %#x", c.cfg, got, c.want)
		}
	}
}

func TestHistoryOrderRangeCount(t *testing.T) {
	for _, cfg := range []Config{
		{Seed: 3, Scale: 0.001},
		{Seed: 4, Scale: 0.01, HistoryEvents: 100_003, HistoryDays: 7, Now: time.UnixMilli(1_700_000_000_555)},
		{Seed: 5, Scale: 0.001, HistoryEvents: 1},
		{Seed: 6, Scale: 0.001, HistoryEvents: 16_385, HistoryDays: 1},
		{Seed: 7, Scale: 0.001, HistoryEvents: 5000, HistoryDays: 400},
	} {
		g := NewGenerator(cfg)
		start, end := g.HistorySpan()
		lo, hi := start.UnixMilli(), end.UnixMilli()
		days := cfg.HistoryDays
		if days == 0 {
			days = 30
		}
		if cfg.Now.IsZero() {
			cfg.Now = DefaultNow
		}
		if hi != cfg.Now.UnixMilli() || hi-lo != int64(days)*msPerDay {
			t.Fatalf("%+v: span [%d, %d]", cfg, lo, hi)
		}
		n, prev := 0, int64(math.MinInt64)
		g.History(func(ev *event.Event) bool {
			if ev.TS < prev {
				t.Fatalf("%+v: event %d at %d before %d", cfg, n, ev.TS, prev)
			}
			if ev.TS < lo || ev.TS > hi {
				t.Fatalf("%+v: event %d at %d outside [%d, %d]", cfg, n, ev.TS, lo, hi)
			}
			prev = ev.TS
			n++
			return true
		})
		if n != g.HistoryLen() {
			t.Fatalf("%+v: %d events, want %d", cfg, n, g.HistoryLen())
		}
	}
}

func TestHistoryStop(t *testing.T) {
	g := NewGenerator(Config{Scale: 0.001})
	calls := 0
	g.History(func(*event.Event) bool { calls++; return calls < 5 })
	if calls != 5 {
		t.Fatalf("%d calls after stop at 5", calls)
	}
}

func TestKindMix(t *testing.T) {
	g := NewGenerator(Config{Seed: 11, Scale: 0.01}) // 200k events
	counts := map[string]int{}
	g.History(func(ev *event.Event) bool {
		counts[ev.Fields[FieldKind].Str]++
		return true
	})
	total := float64(g.HistoryLen())
	if total != 200_000 {
		t.Fatalf("%v events", total)
	}
	for kind, want := range map[string]float64{KindView: 0.85, KindLike: 0.10, KindShare: 0.02, KindComment: 0.03} {
		if got := float64(counts[kind]) / total; math.Abs(got-want) > 0.01 {
			t.Errorf("kind %s: %.4f, want %.2f ± 0.01", kind, got, want)
		}
	}
	if len(counts) != 4 {
		t.Errorf("kinds: %v", counts)
	}
}

func TestZipfRatio(t *testing.T) {
	g := scale1()
	r := rand.New(rand.NewPCG(5, 6))
	const draws = 2_000_000
	users := make([]int, g.Users()+1)
	posts := make([]int, g.Posts()+1)
	for i := 0; i < draws; i++ {
		users[g.QueryUser(r)]++
		posts[g.posts.drawRand(r)]++
	}
	for _, c := range []struct {
		name   string
		counts []int
		s      float64
	}{{"users", users, UserZipfS}, {"posts", posts, PostZipfS}} {
		ratio := float64(c.counts[1]) / float64(c.counts[10])
		want := math.Pow(10, c.s)
		if math.Abs(ratio/want-1) > 0.15 {
			t.Errorf("%s: rank1/rank10 = %.3f, want %.3f ± 15%%", c.name, ratio, want)
		}
		if c.counts[0] != 0 {
			t.Errorf("%s: id 0 drawn", c.name)
		}
		// Rank 1 against its exact probability.
		var h float64
		for k := len(c.counts) - 1; k >= 1; k-- {
			h += math.Pow(float64(k), -c.s)
		}
		if got := float64(c.counts[1]) / draws; math.Abs(got*h-1) > 0.03 {
			t.Errorf("%s: P(1) = %.5f, want %.5f", c.name, got, 1/h)
		}
	}
}

// TestZipfTable checks that the alias table encodes exactly the truncated
// Zipf law, for several sizes and exponents (including s < 1 and s = 1).
func TestZipfTable(t *testing.T) {
	for _, c := range []struct {
		n int64
		s float64
	}{{1, 0.8}, {2, 1.1}, {10, 0.5}, {1000, 0.8}, {1000, 1}, {8192, 1.1}, {8193, 0.8}, {100_000, 1.1}, {3, 3}} {
		z := newZipf(c.n, c.s)
		mass := z.probs()
		var h float64
		for k := c.n; k >= 1; k-- {
			h += math.Pow(float64(k), -c.s)
		}
		for k := int64(1); k <= c.n; k++ {
			want := math.Pow(float64(k), -c.s) / h
			got := mass[k]
			// Each column's threshold is quantized to 2^-32 ≈ 2.3e-10.
			if math.Abs(got-want) > 1e-9*(want+1/float64(min(c.n, headRanks+1))) {
				t.Fatalf("n=%d s=%v: P(%d) = %.12g, want %.12g", c.n, c.s, k, got, want)
			}
		}
	}
}

// probs returns the probability of each rank 1..n that z's tables encode
// (index 0 unused).
func (z *zipf) probs() []float64 {
	head := z.head.probs()
	p := make([]float64, z.n+1)
	copy(p[1:], head[:z.nHead])
	if z.tail != nil {
		for i, q := range z.tail.probs() {
			p[z.nHead+1+uint64(i)] = head[z.nHead] * q
		}
	}
	return p
}

func (a *aliasTable) probs() []float64 {
	mass := make([]float64, a.n)
	for i, e := range a.tab {
		alias := int(uint32(e))
		keep := float64(e>>32) / (1 << 32)
		if alias == i {
			mass[i]++
			continue
		}
		mass[i] += keep
		mass[alias] += 1 - keep
	}
	for i := range mass {
		mass[i] /= float64(a.n)
	}
	return mass
}

func TestRisingRate(t *testing.T) {
	g := NewGenerator(Config{Seed: 9, Scale: 0.01})
	start, end := g.HistorySpan()
	lo, span := start.UnixMilli(), end.UnixMilli()-start.UnixMilli()
	var thirds [3]int
	g.History(func(ev *event.Event) bool {
		third := int(3 * (ev.TS - lo) / (span + 1))
		thirds[third]++
		return true
	})
	n := float64(g.HistoryLen())
	for i, want := range []float64{1.0 / 9, 3.0 / 9, 5.0 / 9} {
		if got := float64(thirds[i]) / n; math.Abs(got-want) > 0.005 {
			t.Errorf("third %d: %.4f of events, want %.4f", i, got, want)
		}
	}
	if thirds[2] <= thirds[0] {
		t.Errorf("last third %d ≤ first third %d", thirds[2], thirds[0])
	}
}

func TestDwell(t *testing.T) {
	g := NewGenerator(Config{Seed: 12, Scale: 0.01})
	var dwell []float64
	var sumLog, sumLog2 float64
	g.History(func(ev *event.Event) bool {
		v := ev.Fields[FieldDwellMS]
		if v.Kind != event.Float64 || v.Valid() != nil || !(v.Float >= 0) {
			t.Fatalf("bad dwell %v", v)
		}
		dwell = append(dwell, v.Float)
		l := math.Log(v.Float / DwellMedian)
		sumLog += l
		sumLog2 += l * l
		return true
	})
	sort.Float64s(dwell)
	if med := dwell[len(dwell)/2]; math.Abs(med/DwellMedian-1) > 0.05 {
		t.Errorf("dwell median %.1f, want 4000 ± 5%%", med)
	}
	n := float64(len(dwell))
	mean := sumLog / n
	if sd := math.Sqrt(sumLog2/n - mean*mean); math.Abs(sd-DwellSigma) > 0.02 {
		t.Errorf("log-dwell sd %.4f, want %.1f", sd, DwellSigma)
	}
}

func TestSmallScaleIDs(t *testing.T) {
	g := NewGenerator(Config{Seed: 13, Scale: 0.001})
	if g.Users() != 100 || g.Posts() != 1000 || g.HistoryLen() != 20_000 {
		t.Fatalf("S=0.001: users %d posts %d events %d", g.Users(), g.Posts(), g.HistoryLen())
	}
	seenUser := make([]bool, g.Users()+1)
	check := func(ev *event.Event) {
		f := ev.Fields
		if len(f) != 4 || f[FieldUserID].Kind != event.Int64 || f[FieldPostID].Kind != event.Int64 ||
			f[FieldKind].Kind != event.String || f[FieldDwellMS].Kind != event.Float64 {
			t.Fatalf("bad shape %v", f)
		}
		u, p := f[FieldUserID].Int, f[FieldPostID].Int
		if u < 1 || u > g.Users() || p < 1 || p > g.Posts() {
			t.Fatalf("ids out of range: user %d post %d", u, p)
		}
		seenUser[u] = true
	}
	g.History(func(ev *event.Event) bool { check(ev); return true })
	live := g.Live(500)
	var ev event.Event
	for i := 0; i < 10_000; i++ {
		live.Next(time.Unix(0, 0), &ev)
		check(&ev)
	}
	for u := 1; u <= int(g.Users()); u++ {
		if !seenUser[u] {
			t.Errorf("user %d never drawn", u)
		}
	}
	// Tiny scales round up to one entity.
	g = NewGenerator(Config{Scale: 1e-9})
	if g.Users() != 1 || g.Posts() != 1 || g.HistoryLen() != 1 {
		t.Fatalf("S=1e-9: users %d posts %d events %d", g.Users(), g.Posts(), g.HistoryLen())
	}
	g.History(func(ev *event.Event) bool { check(ev); return true })
}

func TestLive(t *testing.T) {
	g := NewGenerator(Config{Seed: 14, Scale: 0.001})
	if d := g.Live(10_000).Interval(); d != 100*time.Microsecond {
		t.Errorf("interval at 10k/s: %v", d)
	}
	if d := g.Live(0).Interval(); d != 100*time.Microsecond {
		t.Errorf("default interval: %v", d)
	}
	if d := g.Live(4).Interval(); d != 250*time.Millisecond {
		t.Errorf("interval at 4/s: %v", d)
	}
	l := g.Live(1000)
	now := time.UnixMilli(1_700_000_000_123).Add(456 * time.Microsecond)
	ev := event.Event{Fields: make([]event.Value, 2, 8)}
	l.Next(now, &ev)
	if ev.TS != 1_700_000_000_123 || len(ev.Fields) != 4 || cap(ev.Fields) != 8 {
		t.Fatalf("live event %+v", ev)
	}
	if a := testing.AllocsPerRun(1000, func() { l.Next(now, &ev) }); a != 0 {
		t.Errorf("Live.Next allocates %v per event", a)
	}
}

func TestQueryPosts(t *testing.T) {
	g := NewGenerator(Config{Seed: 15, Scale: 0.001}) // 1000 posts
	r := rand.New(rand.NewPCG(1, 1))
	dst := make([]int64, 0, 500)
	for i := 0; i < 50; i++ {
		dst = g.QueryPosts(r, 500, dst)
		if len(dst) != 500 {
			t.Fatalf("%d posts", len(dst))
		}
		seen := map[int64]bool{}
		for _, p := range dst {
			if p < 1 || p > g.Posts() || seen[p] {
				t.Fatalf("post %d out of range or duplicated", p)
			}
			seen[p] = true
		}
	}
	if a := testing.AllocsPerRun(100, func() { dst = g.QueryPosts(r, 500, dst) }); a != 0 {
		t.Errorf("QueryPosts allocates %v per call", a)
	}
	// All posts, and more than all: each id ⌊n/P⌋ or ⌈n/P⌉ times.
	for _, n := range []int{1000, 2500} {
		counts := map[int64]int{}
		for _, p := range g.QueryPosts(r, n, nil) {
			counts[p]++
		}
		for p := int64(1); p <= g.Posts(); p++ {
			if c := counts[p]; c < n/1000 || c > (n+999)/1000 {
				t.Fatalf("n=%d: post %d appears %d times", n, p, c)
			}
		}
	}
	if got := g.QueryPosts(r, 0, dst); len(got) != 0 {
		t.Fatal("n=0")
	}
	// Hot posts stay hot: post 1 is in (nearly) every request.
	hot := 0
	g = scale1()
	for i := 0; i < 200; i++ {
		if slices.Contains(g.QueryPosts(r, 500, dst), 1) {
			hot++
		}
	}
	if hot < 190 {
		t.Errorf("post 1 in %d of 200 requests", hot)
	}
	if u := g.QueryUser(r); u < 1 || u > g.Users() {
		t.Errorf("user %d", u)
	}
}

func TestHistoryAllocs(t *testing.T) {
	g := NewGenerator(Config{Seed: 16, Scale: 0.001, HistoryEvents: 200_000})
	n := 0
	a := testing.AllocsPerRun(3, func() {
		g.History(func(*event.Event) bool { n++; return true })
	})
	if a > 10 {
		t.Errorf("History allocates %v times for 200k events", a)
	}
}

// TestDetMath compares the portable log and exp with the math package.
func TestDetMath(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	ulps := func(a, b float64) int64 {
		d := int64(math.Float64bits(a)) - int64(math.Float64bits(b))
		if d < 0 {
			d = -d
		}
		return d
	}
	for i := 0; i < 200_000; i++ {
		x := math.Exp(r.Float64()*80 - 40)
		if d := ulps(detLog(x), math.Log(x)); d > 1 {
			t.Fatalf("detLog(%v) = %v, math.Log = %v", x, detLog(x), math.Log(x))
		}
		y := r.Float64()*100 - 50
		// math.Exp is assembly on amd64 and arm64, itself up to ~1 ulp off.
		if d := ulps(detExp(y), math.Exp(y)); d > 2 {
			t.Fatalf("detExp(%v) = %v, math.Exp = %v", y, detExp(y), math.Exp(y))
		}
	}
	for _, x := range []float64{1, 2, 0.5, 1e-300, 1e300, math.MaxFloat64} {
		if d := ulps(detLog(x), math.Log(x)); d > 1 {
			t.Errorf("detLog(%v) = %v, want %v", x, detLog(x), math.Log(x))
		}
	}
	// Against correctly rounded values (Python decimal, 50 digits).
	if got := detExp(-28.777371086583294); got != 3.1779461467826310e-13 && got != 3.1779461467826305e-13 {
		t.Errorf("detExp(-28.777371086583294) = %v", got)
	}
	// (math.Log on amd64 gets subnormals wrong: −709.09 for 2^-1074.)
	if got := detLog(math.SmallestNonzeroFloat64); got != -744.4400719213812 {
		t.Errorf("detLog(2^-1074) = %v", got)
	}
	if detLog(0) != math.Inf(-1) || !math.IsNaN(detLog(-1)) || detExp(0) != 1 ||
		detExp(-1000) != 0 || !math.IsInf(detExp(1000), 1) {
		t.Error("special cases")
	}
}

// BenchmarkHistory measures history generation at S = 1 (1M-post table).
func BenchmarkHistory(b *testing.B) {
	g := *scale1()
	g.nEvents = uint64(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	var sink int64
	g.History(func(ev *event.Event) bool {
		sink += ev.Fields[FieldUserID].Int
		return true
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if sink == 0 {
		b.Fatal("no events")
	}
}

func BenchmarkLiveNext(b *testing.B) {
	l := scale1().Live(0)
	var ev event.Event
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Next(now, &ev)
	}
}

func BenchmarkQueryPosts500(b *testing.B) {
	g := scale1()
	r := rand.New(rand.NewPCG(1, 2))
	dst := make([]int64, 0, 500)
	b.ReportAllocs()
	for b.Loop() {
		dst = g.QueryPosts(r, 500, dst)
	}
}

// TestConcurrent runs History, Live and queries of one Generator in
// parallel (meaningful under -race) and checks they agree.
func TestConcurrent(t *testing.T) {
	g := NewGenerator(Config{Seed: 17, Scale: 0.001})
	want := digest(g, 0)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			if digest(g, 0) != want {
				t.Error("concurrent History differs")
			}
			r := rand.New(rand.NewPCG(uint64(i), 0))
			l := g.Live(0)
			var ev event.Event
			for j := 0; j < 1000; j++ {
				l.Next(time.Unix(0, 0), &ev)
				g.QueryUser(r)
				g.QueryPosts(r, 50, nil)
			}
		})
	}
	wg.Wait()
}
