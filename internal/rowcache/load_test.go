package rowcache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is a LoadFunc over a map that records what it was asked.
type memStore struct {
	mu    sync.Mutex
	rows  map[string]string
	calls [][]string
}

func (m *memStore) Get(_ context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var asked []string
	for i, k := range keys {
		asked = append(asked, string(k))
		v, ok := m.rows[string(k)]
		fn(i, []byte(v), ok)
	}
	m.calls = append(m.calls, asked)
	return nil
}

// gate is a LoadFunc that blocks until released, then answers every key
// with value (found unless value is "") or returns err.
type gate struct {
	started chan struct{} // closed when load is called
	release chan struct{}
	value   string
	err     error
}

func newGate(value string) *gate {
	return &gate{started: make(chan struct{}), release: make(chan struct{}), value: value}
}

func (g *gate) load(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	close(g.started)
	<-g.release
	if g.err != nil {
		return g.err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i := range keys {
		fn(i, []byte(g.value), g.value != "")
	}
	return nil
}

// loadOne is Load of one key: its value, whether found, and the error.
func loadOne(ctx context.Context, c *Cache, key string, load LoadFunc) (string, bool, error) {
	var v string
	var found bool
	err := c.Load(ctx, [][]byte{[]byte(key)}, load, func(_ int, value []byte, f bool) {
		v, found = string(value), f
	})
	return v, found, err
}

// goLoadOne runs loadOne on a new goroutine; the result arrives on the
// returned channel.
func goLoadOne(ctx context.Context, c *Cache, key string, load LoadFunc) <-chan string {
	out := make(chan string, 1)
	go func() {
		v, found, err := loadOne(ctx, c, key, load)
		out <- fmt.Sprintf("%q %v %v", v, found, err)
	}()
	return out
}

// waitFor spins, bounded, until cond holds. Goroutines under test block on
// channels, so the condition is reached without any sleep.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 10_000_000 {
		if cond() {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("gave up waiting for %s", what)
}

func never(context.Context, [][]byte, func(int, []byte, bool)) error {
	panic("load called for keys that should have been answered otherwise")
}

func TestLoadInOrder(t *testing.T) {
	c := New(Options{})
	c.Set([]byte("h0"), []byte("v0"))
	c.Set([]byte("h2"), []byte("v2"))
	c.Set([]byte("h6"), []byte("v6"))
	st := &memStore{rows: map[string]string{"m1": "v1", "m3": "v3"}}
	keys := [][]byte{[]byte("h0"), []byte("m1"), []byte("h2"), []byte("m3"), []byte("m1"), []byte("none"), []byte("h6")}
	var got []string
	err := c.Load(context.Background(), keys, st.Get, func(i int, v []byte, found bool) {
		got = append(got, fmt.Sprintf("%d=%s/%v", i, v, found))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0=v0/true", "1=v1/true", "2=v2/true", "3=v3/true", "4=v1/true", "5=/false", "6=v6/true"}
	if !slices.Equal(got, want) {
		t.Errorf("Load answered\n%v\nwant\n%v", got, want)
	}
	if want := [][]string{{"m1", "m3", "none"}}; !slices.EqualFunc(st.calls, want, slices.Equal) {
		t.Errorf("store asked %v, want %v (each missing key once, in one batch)", st.calls, want)
	}
	// Everything is cached now, the absence included.
	got = got[:0]
	if err := c.Load(context.Background(), keys, never, func(i int, v []byte, found bool) {
		got = append(got, fmt.Sprintf("%d=%s/%v", i, v, found))
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("second Load answered %v", got)
	}
	if s := c.Stats(); s.Loads != 1 || s.Hits != 3+7 || s.Misses != 4 || s.Coalesced != 0 {
		t.Errorf("Stats = %+v, want 1 load, 10 hits, 4 misses, none coalesced", s)
	}
	checkInvariants(t, c)
}

func TestLoadCopiesValues(t *testing.T) {
	c := New(Options{})
	buf := []byte("stored")
	load := func(_ context.Context, _ [][]byte, fn func(int, []byte, bool)) error {
		fn(0, buf, true)
		copy(buf, "XXXXXX") // the store reuses its buffer after fn returns
		return nil
	}
	if v, _, err := loadOne(context.Background(), c, "k", load); err != nil || v != "stored" {
		t.Fatalf("Load = %q, %v", v, err)
	}
	wantHit(t, c, "k", "stored")
}

// TestFillLosesToSet is rule 1: a reader misses, reads the store's old
// value; the writer commits and Sets the new one; the reader's fill must not
// overwrite it.
func TestFillLosesToSet(t *testing.T) {
	c := New(Options{})
	g := newGate("old")
	res := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	c.Set([]byte("k"), []byte("new"))
	close(g.release)
	// The reader still gets what it read: its request began before the Set.
	if got, want := <-res, `"old" true <nil>`; got != want {
		t.Errorf("Load = %s, want %s", got, want)
	}
	wantHit(t, c, "k", "new")
	if s := c.Stats(); s.FillsDropped != 1 {
		t.Errorf("Stats = %+v, want 1 fill dropped", s)
	}
	checkInvariants(t, c)
}

func TestFillLosesToDelete(t *testing.T) {
	c := New(Options{})
	g := newGate("old")
	res := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	c.Delete([]byte("k"))
	close(g.release)
	<-res
	wantMiss(t, c, "k")
	if s := c.Stats(); s.FillsDropped != 1 {
		t.Errorf("Stats = %+v, want 1 fill dropped", s)
	}
}

// TestSetDetachesFlight: after a Set or Delete, new readers must not wait for
// a load that began before it — they could get the old value after the
// write completed.
func TestSetDetachesFlight(t *testing.T) {
	c := New(Options{})
	old := newGate("old")
	res := goLoadOne(context.Background(), c, "k", old.load)
	<-old.started
	c.Delete([]byte("k"))
	st := &memStore{rows: map[string]string{"k": "new"}}
	r2 := goLoadOne(context.Background(), c, "k", st.Get)
	waitFor(t, "the second Load to load or wait", func() bool {
		s := c.Stats()
		return s.Loads == 2 || s.Coalesced == 1
	})
	close(old.release)
	if got, want := <-r2, `"new" true <nil>`; got != want {
		t.Errorf("Load after Delete = %s, want %s", got, want)
	}
	<-res
	wantHit(t, c, "k", "new") // the old flight did not overwrite the new fill
	if s := c.Stats(); s.Loads != 2 || s.Coalesced != 0 || s.FillsDropped != 1 {
		t.Errorf("Stats = %+v, want 2 loads, none coalesced, 1 fill dropped", s)
	}
}

// TestCoalesce is rule 3.
func TestCoalesce(t *testing.T) {
	const n = 16
	c := New(Options{})
	var calls atomic.Int32
	release := make(chan struct{})
	load := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		calls.Add(1)
		<-release
		fn(0, []byte("v"), true)
		return nil
	}
	results := make([]<-chan string, n)
	for i := range results {
		results[i] = goLoadOne(context.Background(), c, "k", load)
	}
	waitFor(t, "n-1 coalesced loads", func() bool { return c.Stats().Coalesced == n-1 })
	close(release)
	for i, r := range results {
		if got, want := <-r, `"v" true <nil>`; got != want {
			t.Errorf("caller %d got %s, want %s", i, got, want)
		}
	}
	if s := c.Stats(); s.Loads != 1 || calls.Load() != 1 || s.Misses != n {
		t.Errorf("Stats = %+v, %d calls; want 1 load of %d misses", s, calls.Load(), n)
	}
	wantHit(t, c, "k", "v")
}

func TestCoalescedAbsence(t *testing.T) {
	c := New(Options{})
	g := newGate("") // the store has no row
	r1 := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	r2 := goLoadOne(context.Background(), c, "k", never)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	close(g.release)
	for _, r := range []<-chan string{r1, r2} {
		if got, want := <-r, `"" false <nil>`; got != want {
			t.Errorf("Load = %s, want %s", got, want)
		}
	}
	if _, found, hit := lookup(c, "k"); !hit || found {
		t.Errorf("absence not cached: hit %v, found %v", hit, found)
	}
}

func TestLoadErrorReachesWaiters(t *testing.T) {
	c := New(Options{})
	boom := errors.New("boom")
	g := newGate("v")
	g.err = boom
	r1 := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	r2 := goLoadOne(context.Background(), c, "k", never)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	close(g.release)
	for _, r := range []<-chan string{r1, r2} {
		if got, want := <-r, `"" false boom`; got != want {
			t.Errorf("Load = %s, want %s", got, want)
		}
	}
	wantMiss(t, c, "k")
	// Nothing is left registered: the next Load loads again.
	st := &memStore{rows: map[string]string{"k": "v"}}
	if v, _, err := loadOne(context.Background(), c, "k", st.Get); err != nil || v != "v" {
		t.Errorf("Load after error = %q, %v", v, err)
	}
	if s := c.Stats(); s.Entries != 1 || s.Loads != 2 {
		t.Errorf("Stats = %+v, want 1 entry, 2 loads", s)
	}
}

func TestWaiterContextCanceled(t *testing.T) {
	c := New(Options{})
	g := newGate("v")
	r1 := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	r2 := goLoadOne(ctx, c, "k", never)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	cancel()
	if got, want := <-r2, `"" false context canceled`; got != want {
		t.Errorf("canceled waiter: Load = %s, want %s", got, want)
	}
	close(g.release)
	if got, want := <-r1, `"v" true <nil>`; got != want {
		t.Errorf("loader: Load = %s, want %s", got, want)
	}
	// A Load whose context is already done does not start a load.
	if _, _, err := loadOne(ctx, c, "other", never); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a done context = %v", err)
	}
}

// TestLoaderCanceledWaiterRetries: the loader's own context ending is not the
// waiter's failure; the waiter loads the key itself.
func TestLoaderCanceledWaiterRetries(t *testing.T) {
	c := New(Options{})
	g := newGate("v")
	ctx, cancel := context.WithCancel(context.Background())
	r1 := goLoadOne(ctx, c, "k", g.load)
	<-g.started
	st := &memStore{rows: map[string]string{"k": "v"}}
	r2 := goLoadOne(context.Background(), c, "k", st.Get)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	cancel()
	close(g.release)
	if got, want := <-r1, `"" false context canceled`; got != want {
		t.Errorf("loader: Load = %s, want %s", got, want)
	}
	if got, want := <-r2, `"v" true <nil>`; got != want {
		t.Errorf("waiter: Load = %s, want %s", got, want)
	}
	if s := c.Stats(); s.Loads != 2 {
		t.Errorf("Stats = %+v, want 2 loads", s)
	}
}

func TestLoadMustAnswerEveryKey(t *testing.T) {
	f := func(name string, load LoadFunc) {
		t.Helper()
		c := New(Options{})
		keys := [][]byte{[]byte("a"), []byte("b")}
		err := c.Load(context.Background(), keys, load, func(int, []byte, bool) {})
		if err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
		if s := c.Stats(); s.Entries != 0 {
			t.Errorf("%s: %d entries cached from a bad load", name, s.Entries)
		}
	}
	f("one missing", func(_ context.Context, _ [][]byte, fn func(int, []byte, bool)) error {
		fn(0, []byte("x"), true)
		return nil
	})
	f("twice", func(_ context.Context, _ [][]byte, fn func(int, []byte, bool)) error {
		fn(0, nil, false)
		fn(0, nil, false)
		fn(1, nil, false)
		return nil
	})
	f("out of range", func(_ context.Context, _ [][]byte, fn func(int, []byte, bool)) error {
		fn(0, nil, false)
		fn(1, nil, false)
		fn(2, nil, false)
		return nil
	})
}

func TestLoadPanicReleasesWaiters(t *testing.T) {
	c := New(Options{})
	started, release := make(chan struct{}), make(chan struct{})
	load := func(context.Context, [][]byte, func(int, []byte, bool)) error {
		close(started)
		<-release
		panic("store bug")
	}
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		loadOne(context.Background(), c, "k", load)
	}()
	<-started
	r2 := goLoadOne(context.Background(), c, "k", never)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	close(release)
	if p := <-panicked; p != "store bug" {
		t.Errorf("loader recovered %v", p)
	}
	if got, want := <-r2, fmt.Sprintf(`"" false %v`, errLoadPanicked); got != want {
		t.Errorf("waiter: Load = %s, want %s", got, want)
	}
	st := &memStore{rows: map[string]string{"k": "v"}}
	if v, _, err := loadOne(context.Background(), c, "k", st.Get); err != nil || v != "v" {
		t.Errorf("Load after panic = %q, %v", v, err)
	}
}

// TestFillStampedAtLoadStart is rule 2 for fills: the age of a loaded value
// counts from when the load began, not from when it returned.
func TestFillStampedAtLoadStart(t *testing.T) {
	clk := newClock()
	c := New(Options{MaxAge: 10 * time.Second, Now: clk.Now})
	slow := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		clk.Advance(4 * time.Second)
		for i := range keys {
			fn(i, []byte("v"), string(keys[i]) != "absent")
		}
		return nil
	}
	keys := [][]byte{[]byte("k"), []byte("absent")}
	if err := c.Load(context.Background(), keys, slow, func(int, []byte, bool) {}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second) // 10 s after the load began
	wantHit(t, c, "k", "v")
	if _, found, hit := lookup(c, "absent"); !hit || found {
		t.Errorf("absence: hit %v, found %v; want a cached absence", hit, found)
	}
	clk.Advance(time.Nanosecond)
	wantMiss(t, c, "k")
	wantMiss(t, c, "absent")

	// A load slower than MaxAge answers its caller but caches nothing.
	slower := func(_ context.Context, _ [][]byte, fn func(int, []byte, bool)) error {
		clk.Advance(11 * time.Second)
		fn(0, []byte("late"), true)
		return nil
	}
	if v, _, err := loadOne(context.Background(), c, "k", slower); err != nil || v != "late" {
		t.Errorf("slow Load = %q, %v", v, err)
	}
	wantMiss(t, c, "k")
	if s := c.Stats(); s.FillsDropped != 1 || s.Expired < 2 {
		t.Errorf("Stats = %+v, want 1 fill dropped, expired entries seen", s)
	}
}

func TestReadThrough(t *testing.T) {
	c := New(Options{})
	st := &memStore{rows: map[string]string{"a": "1"}}
	src := ReadThrough{Cache: c, Load: st.Get}
	var got []string
	for range 2 {
		if err := src.Get(context.Background(), [][]byte{[]byte("a"), []byte("b")}, func(i int, v []byte, found bool) {
			got = append(got, fmt.Sprintf("%d=%s/%v", i, v, found))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"0=1/true", "1=/false", "0=1/true", "1=/false"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(st.calls) != 1 {
		t.Errorf("store called %d times, want 1", len(st.calls))
	}
}

// TestLoadedValueOutlivesSet: a loaded value handed to fn lives in the
// buffer the cache entry owns; a Set of the key while fn runs must not
// write into it.
func TestLoadedValueOutlivesSet(t *testing.T) {
	c := New(Options{})
	st := &memStore{rows: map[string]string{"k": "old"}}
	err := c.Load(context.Background(), [][]byte{[]byte("k")}, st.Get, func(_ int, v []byte, _ bool) {
		done := make(chan struct{})
		go func() {
			c.Set([]byte("k"), []byte("new")) // same length: a candidate for reuse
			close(done)
		}()
		<-done
		if string(v) != "old" {
			t.Errorf("value changed to %q under fn", v)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	wantHit(t, c, "k", "new")
}

// LoadUnordered answers exactly what Load answers, each key once, whatever
// mix of hits, misses, absences and repeated keys a call has.
func TestLoadUnorderedAnswersAsLoad(t *testing.T) {
	rows := map[string]string{}
	for i := range 40 {
		if i%5 != 0 {
			rows[fmt.Sprint("k", i)] = fmt.Sprint("value-", i)
		}
	}
	for round := range 3 {
		c := New(Options{})
		st := &memStore{rows: rows}
		for i := range 40 {
			if i%3 == round%3 { // a third of the keys cached beforehand
				if v, ok := rows[fmt.Sprint("k", i)]; ok {
					c.Set([]byte(fmt.Sprint("k", i)), []byte(v))
				}
			}
		}
		var keys [][]byte
		for i := range 40 {
			keys = append(keys, []byte(fmt.Sprint("k", (i*7)%40)))
		}
		keys = append(keys, keys[3], keys[11]) // repeated keys
		got := make([]string, len(keys))
		calls := 0
		err := c.LoadUnordered(context.Background(), keys, st.Get, func(i int, v []byte, found bool) {
			calls++
			if got[i] != "" {
				t.Errorf("key %d answered twice", i)
			}
			got[i] = fmt.Sprintf("%q %v", v, found)
		})
		if err != nil {
			t.Fatal(err)
		}
		if calls != len(keys) {
			t.Errorf("%d answers for %d keys", calls, len(keys))
		}
		for i, k := range keys {
			v, ok := rows[string(k)]
			if want := fmt.Sprintf("%q %v", v, ok); got[i] != want {
				t.Errorf("round %d: key %d (%s) = %s, want %s", round, i, k, got[i], want)
			}
		}
		if len(st.calls) != 1 {
			t.Errorf("store called %d times, want 1", len(st.calls))
		}
		checkInvariants(t, c)
	}
}

// A panic of fn while LoadUnordered hands out hits on its own goroutine
// reaches LoadUnordered's caller, and the keys being loaded are released.
func TestLoadUnorderedFnPanic(t *testing.T) {
	c := New(Options{})
	c.Set([]byte("hit"), []byte("v"))
	st := &memStore{rows: map[string]string{"miss": "w"}}
	keys := [][]byte{[]byte("miss"), []byte("hit")}
	func() {
		defer func() {
			if p := recover(); p != "fn bug" {
				t.Errorf("recovered %v, want the panic of fn", p)
			}
		}()
		c.LoadUnordered(context.Background(), keys, st.Get, func(i int, _ []byte, _ bool) {
			if i == 1 {
				panic("fn bug")
			}
		})
	}()
	for si := range c.shards {
		if n := len(c.shards[si].inflight); n != 0 {
			t.Errorf("shard %d: %d loads still registered", si, n)
		}
	}
	wantHit(t, c, "miss", "w")
}

// A waiter whose loader's fill lost to a Set gets the Set's (newer) value;
// one whose loader's fill was dropped as too old loads the key itself.
func TestWaiterAfterDroppedFill(t *testing.T) {
	c := New(Options{})
	g := newGate("old")
	r1 := goLoadOne(context.Background(), c, "k", g.load)
	<-g.started
	r2 := goLoadOne(context.Background(), c, "k", never)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	c.Set([]byte("k"), []byte("new"))
	close(g.release)
	if got, want := <-r1, `"old" true <nil>`; got != want {
		t.Errorf("loader: Load = %s, want %s", got, want)
	}
	if got, want := <-r2, `"new" true <nil>`; got != want {
		t.Errorf("waiter: Load = %s, want %s", got, want)
	}

	clk := newClock()
	c = New(Options{MaxAge: time.Second, Now: clk.Now})
	started, release := make(chan struct{}), make(chan struct{})
	slow := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		close(started)
		<-release
		clk.Advance(2 * time.Second) // the load outlived MaxAge: no fill
		fn(0, []byte("late"), true)
		return nil
	}
	r1 = goLoadOne(context.Background(), c, "k", slow)
	<-started
	st := &memStore{rows: map[string]string{"k": "again"}}
	r2 = goLoadOne(context.Background(), c, "k", st.Get)
	waitFor(t, "a coalesced load", func() bool { return c.Stats().Coalesced == 1 })
	close(release)
	if got, want := <-r1, `"late" true <nil>`; got != want {
		t.Errorf("slow loader: Load = %s, want %s", got, want)
	}
	if got, want := <-r2, `"again" true <nil>`; got != want {
		t.Errorf("waiter: Load = %s, want %s", got, want)
	}
	if s := c.Stats(); s.Loads != 2 || s.FillsDropped != 1 {
		t.Errorf("Stats = %+v, want 2 loads, 1 fill dropped", s)
	}
}

// The refill of an expired row reuses the expired entry's buffer: a
// refresh allocates per call, not per key.
func TestRefillReusesExpiredBuffer(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	clk := newClock()
	c := New(Options{MaxAge: time.Second, Now: clk.Now})
	rows := map[string][]byte{}
	var keys [][]byte
	for i := range 50 {
		k := fmt.Sprint("key-", i)
		rows[k] = []byte(fmt.Sprint("value-", i))
		keys = append(keys, []byte(k))
	}
	load := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		for i, k := range keys {
			fn(i, rows[string(k)], true)
		}
		return nil
	}
	fn := func(int, []byte, bool) {}
	allocs := func(keys [][]byte) float64 {
		if err := c.Load(context.Background(), keys, load, fn); err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(20, func() {
			clk.Advance(2 * time.Second)
			if err := c.LoadUnordered(context.Background(), keys, load, fn); err != nil {
				t.Fatal(err)
			}
		})
	}
	if small, large := allocs(keys[:2]), allocs(keys); large > small {
		t.Errorf("allocations per refill: %v for 2 keys, %v for 50", small, large)
	}
	wantHit(t, c, "key-7", "value-7")
	checkInvariants(t, c)
}

// TestUpdate: Update replaces a row the cache holds, leaves out one it does
// not, and like Set keeps a load that began before it from filling the cache
// with the old value.
func TestUpdate(t *testing.T) {
	c := New(Options{})
	c.Update([]byte("absent"), []byte("v"))
	wantMiss(t, c, "absent")
	c.Set([]byte("k"), []byte("1"))
	c.Update([]byte("k"), []byte("22"))
	wantHit(t, c, "k", "22")

	g := newGate("old")
	res := goLoadOne(context.Background(), c, "j", g.load)
	<-g.started
	c.Update([]byte("j"), []byte("new"))
	close(g.release)
	<-res
	wantMiss(t, c, "j")
	if s := c.Stats(); s.FillsDropped != 1 {
		t.Errorf("Stats = %+v, want 1 fill dropped", s)
	}
	checkInvariants(t, c)
}
