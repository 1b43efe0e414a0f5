// Package storetest is the conformance suite for store.Store backends. Every
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// The suite checks the behaviour package store documents, and nothing
// backend-specific. It has no sleeps and only bounded loops; run it with
// -race, as some of its subtests are about concurrent use.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/internal/store"
)

// Options says which of the guarantees package store leaves to the backend
// this one gives, so that the suite checks them too.
type Options struct {
	// BatchAtomic is set for a backend that applies a whole Write batch
	// atomically, so that a reader never sees part of a batch (Pebble, a
	// single Redis server). It is unset for one that only applies each row
	// atomically (Redis Cluster); the BatchAtomicVisibility check is then
	// skipped, and every other check still runs.
	BatchAtomic bool
}

// Run runs the conformance suite as subtests of t, for a backend that
// applies whole batches atomically: it is RunWith(t, open,
// Options{BatchAtomic: true}).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	RunWith(t, open, Options{BatchAtomic: true})
}

// RunWith runs the conformance suite as subtests of t, checking the optional
// guarantees opts names. open must return a new, empty store each time it is
// called; the suite closes every store it opens (and some of them more than
// once), so open need not, though it may register cleanups of its own, such
// as for a directory. Subtests run one after another, and each uses only the
// store it opened last, so a backend on a shared server may empty the server
// in open.
func RunWith(t *testing.T, open func(t *testing.T) store.Store, opts Options) {
	t.Helper()
	s := &suite{open: open}
	t.Run("ReadWhatWasWritten", s.readWhatWasWritten)
	t.Run("EmptyValue", s.emptyValue)
	t.Run("MissingKeys", s.missingKeys)
	t.Run("Overwrite", s.overwrite)
	t.Run("DuplicateKeyInBatch", s.duplicateKeyInBatch)
	t.Run("BatchWhole", s.batchWhole)
	if opts.BatchAtomic {
		t.Run("BatchAtomicVisibility", s.batchAtomicVisibility)
	}
	t.Run("LargeBatch", s.largeBatch)
	t.Run("LargeValue", s.largeValue)
	t.Run("EmptyBatchAndKeys", s.emptyBatchAndKeys)
	t.Run("ConcurrentWriters", s.concurrentWriters)
	t.Run("ValueNotRetained", s.valueNotRetained)
	t.Run("CallerSlicesNotRetained", s.callerSlicesNotRetained)
	t.Run("CanceledContext", s.canceledContext)
	t.Run("Closed", s.closed)
	t.Run("CloseConcurrent", s.closeConcurrent)
}

// RunDurable checks that a backend kept in a directory keeps what it was
// given across Close and a new open of the same directory. open must open
// the store in dir, creating it if it is empty; the suite calls it more than
// once with the same dir, and closes every store it opens.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	dir := t.TempDir()
	want := map[string][]byte{}
	var keys [][]byte
	put := func(s store.Store, batch []store.KV) {
		t.Helper()
		mustWrite(t, s, batch)
		for _, kv := range batch {
			if _, ok := want[string(kv.Key)]; !ok {
				keys = append(keys, kv.Key)
			}
			want[string(kv.Key)] = kv.Value
		}
	}
	check := func(s store.Store, when string) {
		t.Helper()
		got := mustGet(t, s, keys)
		for i, k := range keys {
			if !got[i].found {
				t.Fatalf("%s: key %q is missing", when, k)
			}
			if !bytes.Equal(got[i].value, want[string(k)]) {
				t.Fatalf("%s: key %q: got %d bytes %.16q…, want %d bytes %.16q…",
					when, k, len(got[i].value), got[i].value, len(want[string(k)]), want[string(k)])
			}
		}
	}

	s := open(t, dir)
	for b := range 20 {
		put(s, rows(fmt.Sprintf("durable/%02d/", b), 50, 100, 0))
	}
	put(s, rows("durable/05/", 10, 100, 1)) // overwrites
	put(s, []store.KV{{Key: []byte("durable/big"), Value: value("big", 1<<20)}})
	put(s, []store.KV{{Key: []byte("durable/empty"), Value: []byte{}}})
	check(s, "before close")
	mustClose(t, s)

	s = open(t, dir)
	check(s, "after reopen")
	put(s, rows("durable/05/", 10, 100, 2))
	put(s, rows("durable/new/", 100, 100, 0))
	mustClose(t, s)

	s = open(t, dir)
	check(s, "after second reopen")
	// Absent keys stay absent.
	got := mustGet(t, s, [][]byte{[]byte("durable/never")})
	if got[0].found {
		t.Fatalf("after second reopen: never-written key found")
	}
	mustClose(t, s)
}

type suite struct {
	open func(t *testing.T) store.Store
}

// store opens a fresh store for t and closes it when t ends.
func (s *suite) store(t *testing.T) store.Store {
	t.Helper()
	st := s.open(t)
	if st == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

func (s *suite) readWhatWasWritten(t *testing.T) {
	st := s.store(t)
	batch := []store.KV{
		{Key: []byte("a"), Value: []byte("alpha")},
		{Key: []byte("b"), Value: []byte("beta")},
		{Key: []byte{0, 0xff, 0}, Value: []byte{1, 2, 3, 0, 0xff}}, // binary key and value
		{Key: []byte("k/with/longer/key"), Value: value("x", 1000)},
	}
	mustWrite(t, st, batch)
	checkBatch(t, st, batch)

	// Each key alone, too.
	for _, kv := range batch {
		got := mustGet(t, st, [][]byte{kv.Key})
		if !got[0].found || !bytes.Equal(got[0].value, kv.Value) {
			t.Fatalf("Get(%q) alone = %q, %v; want %q, true", kv.Key, got[0].value, got[0].found, kv.Value)
		}
	}
}

func (s *suite) emptyValue(t *testing.T) {
	st := s.store(t)
	mustWrite(t, st, []store.KV{
		{Key: []byte("empty"), Value: []byte{}},
		{Key: []byte("nil"), Value: nil},
	})
	got := mustGet(t, st, [][]byte{[]byte("empty"), []byte("nil")})
	for i, name := range []string{"empty", "nil"} {
		if !got[i].found {
			t.Errorf("key with %s value: found == false, want true", name)
		}
		if len(got[i].value) != 0 {
			t.Errorf("key with %s value: got %q, want empty", name, got[i].value)
		}
	}
}

func (s *suite) missingKeys(t *testing.T) {
	st := s.store(t)
	mustWrite(t, st, []store.KV{
		{Key: []byte("p1"), Value: []byte("v1")},
		{Key: []byte("p2"), Value: []byte("v2")},
		{Key: []byte("p3"), Value: []byte("v3")},
	})
	// Unsorted, with repeats, present and missing interleaved; "p" and
	// "p10" are missing neighbours of present keys.
	keys := [][]byte{
		[]byte("m0"), []byte("p3"), []byte("p"), []byte("p1"), []byte("p10"),
		[]byte("p2"), []byte("m0"), []byte("p1"), []byte(""), []byte("zz"),
	}
	want := []string{"", "v3", "", "v1", "", "v2", "", "v1", "", ""}
	found := []bool{false, true, false, true, false, true, false, true, false, false}
	got := mustGet(t, st, keys)
	for i := range keys {
		if got[i].found != found[i] || string(got[i].value) != want[i] {
			t.Errorf("key %d (%q): got %q, found=%v; want %q, found=%v",
				i, keys[i], got[i].value, got[i].found, want[i], found[i])
		}
		if !got[i].found && got[i].value != nil {
			t.Errorf("key %d (%q): missing, but fn got a non-nil value %q", i, keys[i], got[i].value)
		}
	}

	// An empty store has nothing.
	empty := s.store(t)
	got = mustGet(t, empty, keys)
	for i := range keys {
		if got[i].found {
			t.Errorf("empty store: key %q found", keys[i])
		}
	}
}

func (s *suite) overwrite(t *testing.T) {
	st := s.store(t)
	k := []byte("key")
	for round, v := range []string{"first", "second, longer value", "3rd", ""} {
		mustWrite(t, st, []store.KV{{Key: k, Value: []byte(v)}, {Key: []byte("other"), Value: []byte("same")}})
		got := mustGet(t, st, [][]byte{k, []byte("other")})
		if !got[0].found || string(got[0].value) != v {
			t.Fatalf("round %d: got %q, found=%v; want %q", round, got[0].value, got[0].found, v)
		}
		if string(got[1].value) != "same" {
			t.Fatalf("round %d: untouched key changed to %q", round, got[1].value)
		}
	}
}

func (s *suite) duplicateKeyInBatch(t *testing.T) {
	st := s.store(t)
	mustWrite(t, st, []store.KV{
		{Key: []byte("dup"), Value: []byte("one")},
		{Key: []byte("x"), Value: []byte("x")},
		{Key: []byte("dup"), Value: []byte("two")},
	})
	got := mustGet(t, st, [][]byte{[]byte("dup")})
	if string(got[0].value) != "two" {
		t.Fatalf("key written twice in one batch: got %q, want the later value %q", got[0].value, "two")
	}
}

func (s *suite) batchWhole(t *testing.T) {
	st := s.store(t)
	batch := rows("whole/", 500, 64, 0)
	mustWrite(t, st, batch)
	checkBatch(t, st, batch)

	// A second batch overwriting half and adding more is also applied whole.
	batch2 := append(rows("whole/", 250, 32, 1), rows("whole2/", 250, 32, 1)...)
	mustWrite(t, st, batch2)
	checkBatch(t, st, batch2)
	checkBatch(t, st, batch[250:])
}

// batchAtomicVisibility has a writer write batches 1, 2, …, each setting
// every key of a group to its batch number, while a reader reads the first key
// with one Get and then the rest with another. If batches become visible
// whole, every key read later is at least the version of the first key.
func (s *suite) batchAtomicVisibility(t *testing.T) {
	st := s.store(t)
	const nKeys, nBatches = 16, 200
	keys := make([][]byte, nKeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "atomic/%02d", i)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for n := 1; n <= nBatches; n++ {
			batch := make([]store.KV, nKeys)
			for i, k := range keys {
				batch[i] = store.KV{Key: k, Value: fmt.Appendf(nil, "%08d", n)}
			}
			if err := st.Write(context.Background(), batch); err != nil {
				t.Errorf("Write batch %d: %v", n, err)
				return
			}
		}
	}()

	version := func(v []byte, found bool) int {
		if !found {
			return 0
		}
		var n int
		if _, err := fmt.Sscanf(string(v), "%d", &n); err != nil {
			t.Errorf("bad value %q", v)
		}
		return n
	}
	reads := 0
	for stop := false; !stop; reads++ {
		select {
		case <-done:
			stop = true // one more read after the last batch
		default:
		}
		var first int
		if err := st.Get(context.Background(), keys[:1], func(_ int, v []byte, found bool) {
			first = version(v, found)
		}); err != nil {
			t.Errorf("Get: %v", err)
		}
		if err := st.Get(context.Background(), keys[1:], func(i int, v []byte, found bool) {
			if n := version(v, found); n < first {
				t.Errorf("read %d: key %q at batch %d, after key %q at batch %d: a batch was visible in part",
					reads, keys[1+i], n, keys[0], first)
			}
		}); err != nil {
			t.Errorf("Get: %v", err)
		}
		if t.Failed() {
			break // and let the writer finish before the store is closed
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := mustGet(t, st, keys)
	for i := range keys {
		if n := version(got[i].value, got[i].found); n != nBatches {
			t.Errorf("after all writes: key %q at batch %d, want %d", keys[i], n, nBatches)
		}
	}
}

func (s *suite) largeBatch(t *testing.T) {
	st := s.store(t)
	batch := rows("large/", 5000, 200, 0)
	mustWrite(t, st, batch)
	checkBatch(t, st, batch)
}

func (s *suite) largeValue(t *testing.T) {
	st := s.store(t)
	big := value("big", 1<<20)
	batch := []store.KV{
		{Key: []byte("before"), Value: []byte("b")},
		{Key: []byte("big"), Value: big},
		{Key: []byte("zafter"), Value: []byte("a")},
	}
	mustWrite(t, st, batch)
	checkBatch(t, st, batch)
}

func (s *suite) emptyBatchAndKeys(t *testing.T) {
	st := s.store(t)
	ctx := context.Background()
	if err := st.Write(ctx, nil); err != nil {
		t.Errorf("Write(nil) = %v, want nil", err)
	}
	if err := st.Write(ctx, []store.KV{}); err != nil {
		t.Errorf("Write(empty) = %v, want nil", err)
	}
	calls := 0
	fn := func(int, []byte, bool) { calls++ }
	if err := st.Get(ctx, nil, fn); err != nil {
		t.Errorf("Get(nil keys) = %v, want nil", err)
	}
	if err := st.Get(ctx, [][]byte{}, fn); err != nil {
		t.Errorf("Get(no keys) = %v, want nil", err)
	}
	if calls != 0 {
		t.Errorf("fn called %d times for no keys", calls)
	}
	// The store still works.
	batch := []store.KV{{Key: []byte("k"), Value: []byte("v")}}
	mustWrite(t, st, batch)
	checkBatch(t, st, batch)
}

func (s *suite) concurrentWriters(t *testing.T) {
	st := s.store(t)
	const writers, batches, perBatch = 8, 200, 4
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for b := range batches {
				// Each writer rewrites its own keys; the last batch wins.
				batch := rows(fmt.Sprintf("w%d/", w), perBatch, 40, b)
				if err := st.Write(ctx, batch); err != nil {
					t.Errorf("writer %d batch %d: Write: %v", w, b, err)
					return
				}
				// Read back what this writer just wrote.
				keys := make([][]byte, len(batch))
				for i, kv := range batch {
					keys[i] = kv.Key
				}
				if err := st.Get(ctx, keys, func(i int, v []byte, found bool) {
					if !found || !bytes.Equal(v, batch[i].Value) {
						t.Errorf("writer %d batch %d: key %q: got %q, found=%v; want %q",
							w, b, keys[i], v, found, batch[i].Value)
					}
				}); err != nil {
					t.Errorf("writer %d batch %d: Get: %v", w, b, err)
					return
				}
				if t.Failed() {
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		checkBatch(t, st, rows(fmt.Sprintf("w%d/", w), perBatch, 40, batches-1))
	}
}

func (s *suite) valueNotRetained(t *testing.T) {
	st := s.store(t)
	ctx := context.Background()
	orig := rows("keep/", 64, 300, 0)
	mustWrite(t, st, orig)

	keys := make([][]byte, len(orig))
	for i, kv := range orig {
		keys[i] = kv.Key
	}
	copied := make([][]byte, len(keys)) // copies made inside fn
	if err := st.Get(ctx, keys, func(i int, v []byte, found bool) {
		copied[i] = bytes.Clone(v)
	}); err != nil {
		t.Fatalf("Get: %v", err)
	}

	// Overwrite every key, and write plenty more, so any buffer the store
	// handed out and reused would now hold other bytes.
	for round := 1; round <= 4; round++ {
		mustWrite(t, st, rows("keep/", 64, 300, round))
		mustWrite(t, st, rows(fmt.Sprintf("churn%d/", round), 500, 300, round))
	}
	for i := range keys {
		if !bytes.Equal(copied[i], orig[i].Value) {
			t.Fatalf("key %q: the copy made in fn is %q, want %q", keys[i], copied[i], orig[i].Value)
		}
	}
	checkBatch(t, st, rows("keep/", 64, 300, 4))
}

func (s *suite) callerSlicesNotRetained(t *testing.T) {
	st := s.store(t)
	batch := rows("caller/", 32, 50, 0)
	want := make([]store.KV, len(batch))
	for i, kv := range batch {
		want[i] = store.KV{Key: bytes.Clone(kv.Key), Value: bytes.Clone(kv.Value)}
	}
	mustWrite(t, st, batch)
	// The caller may reuse its buffers as soon as Write returns.
	for _, kv := range batch {
		for j := range kv.Value {
			kv.Value[j] = '#'
		}
		for j := range kv.Key {
			kv.Key[j] = '#'
		}
	}
	checkBatch(t, st, want)

	// And the keys given to Get as soon as Get returns.
	keys := [][]byte{bytes.Clone(want[0].Key)}
	_ = mustGet(t, st, keys)
	keys[0][0] = '#'
	checkBatch(t, st, want[:1])
}

func (s *suite) canceledContext(t *testing.T) {
	st := s.store(t)
	batch := []store.KV{{Key: []byte("k"), Value: []byte("v")}}
	mustWrite(t, st, batch)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := st.Get(ctx, [][]byte{[]byte("k"), []byte("missing")}, func(int, []byte, bool) {})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context = %v, want an error wrapping context.Canceled", err)
	}
	err = st.Write(ctx, []store.KV{{Key: []byte("k2"), Value: []byte("v2")}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a canceled context = %v, want an error wrapping context.Canceled", err)
	}
	// The store is fine afterwards. (Whether the canceled batch was applied
	// is not specified: Write may fail after applying it.)
	checkBatch(t, st, batch)
	batch2 := []store.KV{{Key: []byte("k3"), Value: []byte("v3")}}
	mustWrite(t, st, batch2)
	checkBatch(t, st, batch2)
}

func (s *suite) closed(t *testing.T) {
	st := s.store(t)
	mustWrite(t, st, []store.KV{{Key: []byte("k"), Value: []byte("v")}})
	mustClose(t, st)
	ctx := context.Background()

	calls := 0
	if err := st.Get(ctx, [][]byte{[]byte("k")}, func(int, []byte, bool) { calls++ }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close = %v, want store.ErrClosed", err)
	}
	if calls != 0 {
		t.Errorf("Get after Close called fn %d times", calls)
	}
	if err := st.Get(ctx, nil, func(int, []byte, bool) {}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get(no keys) after Close = %v, want store.ErrClosed", err)
	}
	if err := st.Write(ctx, []store.KV{{Key: []byte("k"), Value: []byte("v")}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Write after Close = %v, want store.ErrClosed", err)
	}
	if err := st.Write(ctx, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Write(empty) after Close = %v, want store.ErrClosed", err)
	}
	if err := st.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v, want store.ErrClosed", err)
	}
}

// closeConcurrent closes the store while readers and writers are busy; every
// call must return nil or store.ErrClosed, and nothing may panic or race.
func (s *suite) closeConcurrent(t *testing.T) {
	st := s.store(t)
	mustWrite(t, st, rows("cc/", 10, 20, 0))
	const workers, ops = 4, 100
	start := make(chan struct{})
	var wg sync.WaitGroup
	check := func(what string, err error) bool {
		if err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s during Close = %v, want nil or store.ErrClosed", what, err)
		}
		return errors.Is(err, store.ErrClosed)
	}
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			keys := [][]byte{[]byte("cc/00000"), []byte("nope")}
			for range ops {
				if check("Get", st.Get(context.Background(), keys, func(int, []byte, bool) {})) {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			for n := range ops {
				if check("Write", st.Write(context.Background(), rows(fmt.Sprintf("cc%d/", w), 2, 20, n))) {
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			check("Close", st.Close())
		}()
	}
	close(start)
	wg.Wait()
	if err := st.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Close after concurrent Closes = %v, want store.ErrClosed", err)
	}
}

// result is what fn was called with for one key, the value copied.
type result struct {
	value []byte
	found bool
}

// mustGet reads keys, checking that fn is called exactly once per key, in
// order, and returns copies of the values.
func mustGet(t *testing.T, st store.Store, keys [][]byte) []result {
	t.Helper()
	out := make([]result, len(keys))
	next := 0
	err := st.Get(context.Background(), keys, func(i int, v []byte, found bool) {
		if i != next {
			t.Errorf("fn called with i=%d, want %d (once per key, in order)", i, next)
		}
		if i >= 0 && i < len(out) {
			out[i] = result{value: bytes.Clone(v), found: found}
		}
		next++
	})
	if err != nil {
		t.Fatalf("Get(%d keys): %v", len(keys), err)
	}
	if next != len(keys) {
		t.Fatalf("Get(%d keys) called fn %d times", len(keys), next)
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func mustWrite(t *testing.T, st store.Store, batch []store.KV) {
	t.Helper()
	if err := st.Write(context.Background(), batch); err != nil {
		t.Fatalf("Write(%d pairs): %v", len(batch), err)
	}
}

func mustClose(t *testing.T, st store.Store) {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// checkBatch reads back every key of batch and checks it holds the value the
// batch gave it; batch must not repeat a key.
func checkBatch(t *testing.T, st store.Store, batch []store.KV) {
	t.Helper()
	keys := make([][]byte, len(batch))
	for i, kv := range batch {
		keys[i] = kv.Key
	}
	got := mustGet(t, st, keys)
	bad := 0
	for i, kv := range batch {
		if got[i].found && bytes.Equal(got[i].value, kv.Value) {
			continue
		}
		if bad++; bad > 5 {
			t.Fatalf("… and more")
		}
		t.Errorf("key %q: got %d bytes %.20q, found=%v; want %d bytes %.20q",
			kv.Key, len(got[i].value), got[i].value, got[i].found, len(kv.Value), kv.Value)
	}
	if bad > 0 {
		t.FailNow()
	}
}

// rows makes n pairs with keys prefix+%05d and values of size bytes that
// depend on the key and on version.
func rows(prefix string, n, size, version int) []store.KV {
	out := make([]store.KV, n)
	for i := range out {
		k := fmt.Appendf(nil, "%s%05d", prefix, i)
		out[i] = store.KV{Key: k, Value: value(fmt.Sprintf("%s@%d", k, version), size)}
	}
	return out
}

// value returns size bytes made of seed repeated with a counter, so that
// values of different seeds differ throughout and truncation shows.
func value(seed string, size int) []byte {
	v := make([]byte, 0, size+32)
	for n := 0; len(v) < size; n++ {
		v = fmt.Appendf(v, "%s#%d;", seed, n)
	}
	return v[:size]
}
