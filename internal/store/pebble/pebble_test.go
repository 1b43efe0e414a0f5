package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/storetest"
)

func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	return s
}

func TestConformanceMem(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, "db", Options{FS: vfs.NewMem()})
	})
}

func TestConformanceDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, t.TempDir(), Options{})
	})
}

func TestDurableDisk(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		return openT(t, dir, Options{})
	})
}

func TestDurableMem(t *testing.T) {
	fs := vfs.NewMem()
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		return openT(t, dir, Options{FS: fs})
	})
}

// TestCrashDurability checks that what Write acknowledged survives a crash
// that loses everything not synced.
func TestCrashDurability(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openT(t, "db", Options{FS: fs})
	defer s.Close()
	ctx := context.Background()
	var all []store.KV
	for b := range 50 {
		batch := make([]store.KV, 20)
		for i := range batch {
			batch[i] = store.KV{
				Key:   fmt.Appendf(nil, "k/%03d/%03d", b, i),
				Value: fmt.Appendf(nil, "value %d %d", b, i),
			}
		}
		if err := s.Write(ctx, batch); err != nil {
			t.Fatalf("Write: %v", err)
		}
		all = append(all, batch...)
	}

	// The clone holds exactly what was synced, as after a power loss.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2 := openT(t, "db", Options{FS: crashed})
	defer s2.Close()
	keys := make([][]byte, len(all))
	for i, kv := range all {
		keys[i] = kv.Key
	}
	if err := s2.Get(ctx, keys, func(i int, v []byte, found bool) {
		if !found || !bytes.Equal(v, all[i].Value) {
			t.Errorf("after crash: key %q = %q, found=%v; want %q", keys[i], v, found, all[i].Value)
		}
	}); err != nil {
		t.Fatalf("Get: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{
		{"disk", nil, t.TempDir()},
		{"mem", vfs.NewMem(), "db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, tc.dir, Options{FS: tc.fs})
			s2, err := Open(tc.dir, Options{FS: tc.fs})
			if err == nil {
				s2.Close()
				t.Fatal("second Open of an open directory succeeded")
			}
			if want := "is another kiln serve running on this --data directory?"; !strings.Contains(err.Error(), want) {
				t.Errorf("second Open error = %q, want it to contain %q", err, want)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// Closing releases the directory.
			s3 := openT(t, tc.dir, Options{FS: tc.fs})
			if err := s3.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("db", Options{FS: vfs.NewMem(), CacheBytes: -1}); err == nil {
		t.Error("Open with CacheBytes -1 succeeded")
	}
	// A file where the directory should be.
	fs := vfs.NewMem()
	f, err := fs.Create("file", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open("file", Options{FS: fs}); err == nil {
		t.Error("Open of a regular file succeeded")
	} else if strings.Contains(err.Error(), "kiln serve") {
		t.Errorf("Open of a regular file blames a lock: %v", err)
	}
}

// TestGetStopsOnCancel checks that Get checks its context between keys.
func TestGetStopsOnCancel(t *testing.T) {
	s := openT(t, "db", Options{FS: vfs.NewMem()})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := make([][]byte, 10)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	calls := 0
	err := s.Get(ctx, keys, func(i int, _ []byte, _ bool) {
		calls++
		if i == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v, want context.Canceled", err)
	}
	if calls != 3 {
		t.Errorf("fn called %d times, want 3 (stop at the first key after the cancel)", calls)
	}
}

// TestWriteCanceledNotApplied: this backend checks the context before it
// commits, so a canceled Write applies nothing.
func TestWriteCanceledNotApplied(t *testing.T) {
	s := openT(t, "db", Options{FS: vfs.NewMem()})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, []store.KV{{Key: []byte("k"), Value: []byte("v")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v, want context.Canceled", err)
	}
	if err := s.Get(context.Background(), [][]byte{[]byte("k")}, func(_ int, _ []byte, found bool) {
		if found {
			t.Error("canceled Write was applied")
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGetAllocs checks that Get allocates nothing per key of its own: the
// allocations of a 100-key Get are those of a 1-key Get.
func TestGetAllocs(t *testing.T) {
	if !poolKeeps() {
		t.Skip("sync.Pool drops objects in this build (the race detector does so on purpose); Pebble's pooled readers allocate")
	}
	s := openT(t, "db", Options{FS: vfs.NewMem()})
	defer s.Close()
	ctx := context.Background()
	keys := make([][]byte, 100)
	batch := make([]store.KV, 0, len(keys))
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key/%04d", i)
		if i%2 == 0 { // half present, half missing
			batch = append(batch, store.KV{Key: keys[i], Value: bytes.Repeat([]byte{'v'}, 300)})
		}
	}
	if err := s.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	fn := func(int, []byte, bool) {}
	one := testing.AllocsPerRun(100, func() { _ = s.Get(ctx, keys[:1], fn) })
	many := testing.AllocsPerRun(100, func() { _ = s.Get(ctx, keys, fn) })
	t.Logf("allocs: 1 key %.1f, %d keys %.1f", one, len(keys), many)
	if many > one+1 {
		t.Errorf("Get of %d keys allocates %.1f times, 1 key %.1f: Get allocates per key", len(keys), many, one)
	}
}

// poolKeeps reports whether a sync.Pool returns what was just put in it, as
// it does except in race-detector builds, which drop a quarter of Puts.
func poolKeeps() bool {
	var p sync.Pool
	for range 100 {
		x := new(int)
		p.Put(x)
		if p.Get() != x {
			return false
		}
	}
	return true
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slogLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Infof("chatter %d", 1)
	if buf.Len() != 0 {
		t.Errorf("Infof logged above debug level: %q", buf.String())
	}
	l.Errorf("trouble %d", 2)
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "trouble 2") {
		t.Errorf("Errorf logged %q, want an error with the message", buf.String())
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "doom 3") {
				t.Errorf("Fatalf: recovered %v, want a panic with the message", r)
			}
		}()
		l.Fatalf("doom %d", 3)
	}()

	// A store with a debug logger logs through it, and with none, discards.
	buf.Reset()
	s := openT(t, "db", Options{FS: vfs.NewMem(), Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line != "" && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("routine open/close logged above debug level: %s", line)
		}
	}
}

const (
	benchRows     = 100_000
	benchValueLen = 300
)

func benchKey(i int) []byte { return fmt.Appendf(nil, "bench/row/%08d", i) }

func randValue(r *rand.Rand, n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

// BenchmarkGet500 reads 500 random existing keys out of 100k rows of 300
// bytes, on disk (the rows fit in the block cache).
func BenchmarkGet500(b *testing.B) {
	s := openT(b, b.TempDir(), Options{})
	defer s.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	order := r.Perm(benchRows)
	for start := 0; start < benchRows; start += 1000 {
		batch := make([]store.KV, 0, 1000)
		for _, i := range order[start:min(start+1000, benchRows)] {
			batch = append(batch, store.KV{Key: benchKey(i), Value: randValue(r, benchValueLen)})
		}
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	// Compact everything, as a store that has been running for a while
	// would be, so that background compactions do not run during the
	// measurement.
	if err := s.db.Compact(ctx, []byte("bench/"), []byte("bench0"), true); err != nil {
		b.Fatal(err)
	}
	const sets, perGet = 64, 500
	keySets := make([][][]byte, sets)
	for i := range keySets {
		keySets[i] = make([][]byte, perGet)
		for j := range keySets[i] {
			keySets[i][j] = benchKey(r.IntN(benchRows))
		}
	}
	var found int
	fn := func(_ int, v []byte, ok bool) {
		if ok && len(v) == benchValueLen {
			found++
		}
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Get(ctx, keySets[n%sets], fn); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if found != n*perGet {
		b.Fatalf("found %d of %d keys", found, n*perGet)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*perGet), "ns/key")
}

// BenchmarkWrite writes batches of 256 rows of 300 bytes to random keys out
// of a million, synced: on disk the cost is mostly fsync; in memory, CPU.
func BenchmarkWrite(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"disk", func(b *testing.B) *Store { return openT(b, b.TempDir(), Options{}) }},
		{"mem", func(b *testing.B) *Store { return openT(b, "db", Options{FS: vfs.NewMem()}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			defer s.Close()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(3, 4))
			const batchLen, sets = 256, 16
			batches := make([][]store.KV, sets)
			for i := range batches {
				batches[i] = make([]store.KV, batchLen)
				for j := range batches[i] {
					batches[i][j] = store.KV{Key: benchKey(r.IntN(1_000_000)), Value: randValue(r, benchValueLen)}
				}
			}
			n := 0
			b.ReportAllocs()
			b.SetBytes(batchLen * (benchValueLen + int64(len(benchKey(0)))))
			for b.Loop() {
				if err := s.Write(ctx, batches[n%sets]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*batchLen)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
