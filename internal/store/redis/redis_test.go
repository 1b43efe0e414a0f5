package redis

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/storetest"
)

// openT opens a store and closes it when t ends (unless the test did).
func openT(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open(%v): %v", opts.Addrs, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceStandalone(t *testing.T) {
	t.Parallel()
	addr := redistest.Standalone(t)
	storetest.RunWith(t, func(t *testing.T) store.Store {
		redistest.FlushAll(t, addr)
		s := openT(t, Options{Addrs: []string{addr}})
		if s.cluster {
			t.Fatal("a standalone server was taken for a cluster")
		}
		return s
	}, storetest.Options{BatchAtomic: true}) // one MSET per batch
	storetest.RunConditional(t, func(t *testing.T) storetest.CondStore {
		redistest.FlushAll(t, addr)
		return openT(t, Options{Addrs: []string{addr}})
	})
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.Cluster(t)
	storetest.RunWith(t, func(t *testing.T) store.Store {
		c.FlushAll()
		// One address is enough: rueidis finds the other nodes.
		s := openT(t, Options{Addrs: c.Addrs()[:1]})
		if !s.cluster {
			t.Fatal("a cluster was taken for a standalone server")
		}
		return s
	}, storetest.Options{BatchAtomic: false}) // batches span slots and masters
	storetest.RunConditional(t, func(t *testing.T) storetest.CondStore {
		c.FlushAll()
		return openT(t, Options{Addrs: c.Addrs()[:1]})
	})
	// Writes that wait for a replica of each master they touch.
	t.Run("Replicated", func(t *testing.T) {
		storetest.RunWith(t, func(t *testing.T) store.Store {
			c.FlushAll()
			return openT(t, Options{Addrs: c.Addrs()[:1], Replicas: 1})
		}, storetest.Options{BatchAtomic: false})
		storetest.RunConditional(t, func(t *testing.T) storetest.CondStore {
			c.FlushAll()
			return openT(t, Options{Addrs: c.Addrs()[:1], Replicas: 1})
		})
		t.Run("MastersWithoutTheScript", func(t *testing.T) {
			// As after a restart or a failover: WriteIf loads the script
			// again, and writes.
			for _, m := range c.Masters() {
				mustCommand(t, m, "SCRIPT", "FLUSH")
			}
			s := openT(t, Options{Addrs: c.Addrs()[:1], Replicas: 1})
			batch := make([]store.CondKV, 32)
			for i := range batch {
				batch[i] = store.CondKV{Key: fmt.Appendf(nil, "noscript/%d", i), Value: []byte("v")}
			}
			if err := s.WriteIf(context.Background(), batch, func(i int) { t.Errorf("row %d conflicts", i) }); err != nil {
				t.Fatalf("WriteIf on masters without the script: %v", err)
			}
			expect(t, s, "after WriteIf", map[string]string{"noscript/0": "v", "noscript/31": "v"})
		})
	})

	t.Run("OpenWithADeadAddress", func(t *testing.T) {
		// A node named first that does not answer does not stop Open.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		l.Close()
		s := openT(t, Options{Addrs: []string{dead, c.Addrs()[1]}})
		write(t, s, store.KV{Key: []byte("k"), Value: []byte("v")})
		expect(t, s, "through a cluster found past a dead address", map[string]string{"k": "v"})
	})
}

// countingDial counts the writes made on every connection it dials.
type countingDial struct{ writes atomic.Int64 }

func (d *countingDial) dial(ctx context.Context, addr string, nd *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: &d.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

var getCalls = regexp.MustCompile(`cmdstat_get:calls=(\d+)`)

// TestGetManyKeys reads 2,000 keys, spread over the hash slots of every
// master, in one Get, and checks that it went out as a few pipelined writes
// (not one per key) and that every master served its share.
func TestGetManyKeys(t *testing.T) {
	t.Parallel()
	t.Run("Standalone", func(t *testing.T) {
		t.Parallel()
		addr := redistest.Standalone(t)
		testGetManyKeys(t, []string{addr}, []string{addr})
	})
	t.Run("Cluster", func(t *testing.T) {
		t.Parallel()
		c := redistest.Cluster(t)
		testGetManyKeys(t, c.Addrs(), c.Masters())
	})
}

func testGetManyKeys(t *testing.T, addrs, masters []string) {
	const n = 2000
	d := &countingDial{}
	s := openT(t, Options{Addrs: addrs, dial: d.dial})
	ctx := context.Background()
	batch := make([]store.KV, n)
	keys := make([][]byte, n+1)
	for i := range batch {
		batch[i] = store.KV{Key: fmt.Appendf(nil, "many/%05d", i), Value: fmt.Appendf(nil, "value of %d", i)}
		keys[i] = batch[i].Key
	}
	keys[n] = []byte("many/missing")
	if err := s.Write(ctx, batch); err != nil {
		t.Fatalf("Write(%d rows): %v", n, err)
	}
	for _, m := range masters {
		if _, err := redistest.Command(m, "CONFIG", "RESETSTAT"); err != nil {
			t.Fatalf("CONFIG RESETSTAT on %s: %v", m, err)
		}
	}

	before := d.writes.Load()
	start := time.Now()
	got := 0
	if err := s.Get(ctx, keys, func(i int, v []byte, found bool) {
		if i == n {
			if found {
				t.Errorf("missing key found: %q", v)
			}
			return
		}
		if !found || !bytes.Equal(v, batch[i].Value) {
			t.Errorf("key %q: got %q, found=%v; want %q", keys[i], v, found, batch[i].Value)
		}
		got++
	}); err != nil {
		t.Fatalf("Get(%d keys): %v", len(keys), err)
	}
	elapsed := time.Since(start)
	writes := d.writes.Load() - before
	if got != n {
		t.Fatalf("fn saw %d present keys, want %d", got, n)
	}

	total := 0
	var perMaster []string
	for _, m := range masters {
		stats, err := redistest.Command(m, "INFO", "commandstats")
		if err != nil {
			t.Fatalf("INFO commandstats on %s: %v", m, err)
		}
		calls := 0
		if mm := getCalls.FindStringSubmatch(stats); mm != nil {
			calls, _ = strconv.Atoi(mm[1])
		}
		if calls == 0 {
			t.Errorf("master %s served no GET: the keys did not reach every master", m)
		}
		total += calls
		perMaster = append(perMaster, fmt.Sprintf("%s:%d", m, calls))
	}
	if total != n+1 {
		t.Errorf("the masters served %d GETs, want %d", total, n+1)
	}
	// One write per key would be 2,001; a pipeline per master is a handful
	// (rueidis may flush a large pipeline in a few writes).
	if limit := int64(8 * len(masters)); writes > limit {
		t.Errorf("Get of %d keys made %d writes to the servers, want at most %d (pipelined per node)", len(keys), writes, limit)
	}
	t.Logf("Get of %d keys: %v, %d socket writes, GETs per master %v", len(keys), elapsed.Round(time.Microsecond), writes, perMaster)
}

// TestClusterRedirects moves a slot from one master to another under a
// store whose view of the cluster predates the move: reads and writes must
// follow the ASK redirections of the migration and the MOVED ones after it.
func TestClusterRedirects(t *testing.T) {
	t.Parallel()
	c := redistest.Cluster(t)
	s := openT(t, Options{Addrs: c.Addrs()})

	// Keys with one hash tag share a slot.
	k1, k2, k3 := []byte("{mv}1"), []byte("{mv}2"), []byte("{mv}3")
	write(t, s, store.KV{Key: k1, Value: []byte("one")}, store.KV{Key: k2, Value: []byte("two")})
	expect(t, s, "before the move", map[string]string{"{mv}1": "one", "{mv}2": "two", "{mv}3": ""})

	slot := mustCommand(t, c.Masters()[0], "CLUSTER", "KEYSLOT", string(k1))
	var src, dst string
	for _, m := range c.Masters() {
		_, err := redistest.Command(m, "GET", string(k1))
		var re redistest.ReplyError
		if errors.As(err, &re) && strings.HasPrefix(string(re), "MOVED") {
			if dst == "" {
				dst = m
			}
			continue
		}
		src = m
	}
	if src == "" || dst == "" {
		t.Fatalf("cannot tell the owner of slot %s among %v", slot, c.Masters())
	}
	srcID := mustCommand(t, src, "CLUSTER", "MYID")
	dstID := mustCommand(t, dst, "CLUSTER", "MYID")
	dstHost, dstPort, _ := net.SplitHostPort(dst)
	t.Logf("moving slot %s from %s to %s", slot, src, dst)

	// Half-way: k1 is on dst, k2 still on src; src answers ASK for k1 and
	// for new keys.
	mustCommand(t, dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	mustCommand(t, src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	mustCommand(t, src, "MIGRATE", dstHost, dstPort, "", "0", "5000", "KEYS", string(k1))
	if _, err := redistest.Command(src, "GET", string(k1)); err == nil || !strings.HasPrefix(err.Error(), "ASK") {
		t.Fatalf("GET of a migrated key from its old master = %v, want an ASK redirection", err)
	}
	expect(t, s, "during the move", map[string]string{"{mv}1": "one", "{mv}2": "two", "{mv}3": ""})
	write(t, s, store.KV{Key: k3, Value: []byte("three")})
	expect(t, s, "during the move, after a write", map[string]string{"{mv}1": "one", "{mv}2": "two", "{mv}3": "three"})

	// Done: everything on dst; src answers MOVED.
	mustCommand(t, src, "MIGRATE", dstHost, dstPort, "", "0", "5000", "KEYS", string(k2))
	for _, m := range c.Masters() {
		mustCommand(t, m, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	}
	if _, err := redistest.Command(src, "GET", string(k2)); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
		t.Fatalf("GET from the old master after the move = %v, want a MOVED redirection", err)
	}
	expect(t, s, "after the move", map[string]string{"{mv}1": "one", "{mv}2": "two", "{mv}3": "three"})
	write(t, s, store.KV{Key: k1, Value: []byte("uno")})
	expect(t, s, "after the move, after a write", map[string]string{"{mv}1": "uno", "{mv}2": "two", "{mv}3": "three"})
	if v := mustCommand(t, dst, "GET", string(k1)); v != "uno" {
		t.Fatalf("GET %s on the new master = %q, want %q", k1, v, "uno")
	}
}

// TestClusterFailover kills a master while a writer is writing new rows,
// and checks that reads and writes work again once its replica has taken
// over, within seconds, with every failure on the way an ErrUnavailable.
// It reports which acknowledged rows were lost: Redis replicates
// asynchronously, so a few rows acknowledged by the dying master may be.
//
// With Replicas set (durability: replicated), no acknowledged row may be
// lost. The promoted replica then has no replica of its own, so writes to
// its slots fail (with ErrUnavailable, saying so) until one is added: only
// reads must come back.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	t.Run("Primary", func(t *testing.T) {
		t.Parallel()
		testClusterFailover(t, 0)
	})
	t.Run("Replicated", func(t *testing.T) {
		t.Parallel()
		testClusterFailover(t, 1)
	})
}

func testClusterFailover(t *testing.T, replicas int) {
	c := redistest.Cluster(t)
	const timeout = 500 * time.Millisecond
	s := openT(t, Options{Addrs: c.Addrs(), Timeout: timeout, Replicas: replicas, ReplicationTimeout: timeout})
	ctx := context.Background()

	// The writer writes batches of new keys until told to stop, and keeps
	// the batches Redis acknowledged.
	const perBatch, maxBatches = 10, 5000
	var (
		mu      sync.Mutex
		acked   []store.KV // guarded by mu
		failed  int        // guarded by mu
		badErrs []error    // guarded by mu: failures not wrapping ErrUnavailable
	)
	stop := make(chan struct{})
	warm := make(chan struct{}) // closed after the first 50 acknowledged batches
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := range maxBatches {
			select {
			case <-stop:
				return
			default:
			}
			batch := make([]store.KV, perBatch)
			for i := range batch {
				k := fmt.Appendf(nil, "fo/%05d/%02d", b, i)
				batch[i] = store.KV{Key: k, Value: append([]byte("v:"), k...)}
			}
			err := s.Write(ctx, batch)
			mu.Lock()
			if err == nil {
				acked = append(acked, batch...)
				if len(acked) == 50*perBatch {
					close(warm)
				}
			} else {
				failed++
				if !errors.Is(err, store.ErrUnavailable) {
					badErrs = append(badErrs, err)
				}
			}
			mu.Unlock()
		}
	}()
	select {
	case <-warm:
	case <-time.After(10 * time.Second):
		close(stop)
		wg.Wait()
		t.Fatal("the writer did not get 50 batches acknowledged in 10 s")
	}

	killed := time.Now()
	c.StopMaster(0)

	// Reads and writes must come back within seconds. Every failure on
	// the way must be retryable.
	probeKeys := make([][]byte, 64)
	for i := range probeKeys {
		probeKeys[i] = fmt.Appendf(nil, "fo/%05d/%02d", i/perBatch, i%perBatch) // among the first acknowledged rows
	}
	const recoverWithin = 15 * time.Second
	attempts := 0
	for {
		attempts++
		errGet := s.Get(ctx, probeKeys, func(int, []byte, bool) {})
		var errWrite error
		if replicas == 0 {
			errWrite = s.Write(ctx, []store.KV{{Key: []byte("fo/probe"), Value: []byte("p")}})
		}
		if errGet == nil && errWrite == nil {
			break
		}
		for _, err := range []error{errGet, errWrite} {
			if err != nil && !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("during failover: %v, want an error wrapping store.ErrUnavailable", err)
			}
		}
		if time.Since(killed) > recoverWithin {
			close(stop)
			wg.Wait()
			t.Fatalf("reads and writes did not work again within %v of the kill; last errors: get %v, write %v", recoverWithin, errGet, errWrite)
		}
		time.Sleep(50 * time.Millisecond) // polling
	}
	recovered := time.Since(killed)
	close(stop)
	wg.Wait()
	newMaster := c.WaitFailover(0)
	what := "reads and writes"
	if replicas > 0 {
		what = "reads"
	}
	t.Logf("%s worked again %v after the kill (%d attempts); %s is shard 0's master now",
		what, recovered.Round(time.Millisecond), attempts, newMaster)

	mu.Lock()
	defer mu.Unlock()
	for _, err := range badErrs {
		t.Errorf("writer: %v, want an error wrapping store.ErrUnavailable", err)
	}
	keys := make([][]byte, len(acked))
	for i, kv := range acked {
		keys[i] = kv.Key
	}
	var lost []string
	if err := s.Get(ctx, keys, func(i int, v []byte, found bool) {
		switch {
		case !found:
			lost = append(lost, string(keys[i]))
		case !bytes.Equal(v, acked[i].Value):
			t.Errorf("key %q = %q, want %q", keys[i], v, acked[i].Value)
		}
	}); err != nil {
		t.Fatalf("Get of the %d acknowledged rows: %v", len(keys), err)
	}
	switch {
	case len(lost) == 0:
		t.Logf("all %d acknowledged rows survived the failover (%d writes failed during it, as expected)", len(acked), failed)
	case replicas > 0:
		t.Errorf("%d of %d acknowledged rows were LOST in the failover, though each write waited for a replica; first lost: %v",
			len(lost), len(acked), lost[:min(len(lost), 10)])
	default:
		sample := lost[:min(len(lost), 10)]
		t.Logf("%d of %d acknowledged rows were LOST in the failover: Redis replicates asynchronously, so writes "+
			"acknowledged by the killed master but not yet sent to its replica are gone. First lost: %v",
			len(lost), len(acked), sample)
	}
	if replicas > 0 {
		// The new master has no replica: a write to it is refused, and
		// says why.
		// 64 keys: all three masters' slots, but for a chance of (2/3)^64.
		batch := make([]store.KV, 64)
		for i := range batch {
			batch[i] = store.KV{Key: fmt.Appendf(nil, "fo/after/%d", i), Value: []byte("a")}
		}
		err := s.Write(ctx, batch)
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, errNotReplicated) {
			t.Errorf("a write to every master, one without a replica: %v, want ErrUnavailable, not replicated", err)
		}
		return
	}
	// And the new master takes writes.
	batch := []store.KV{{Key: []byte("fo/after/1"), Value: []byte("a1")}, {Key: []byte("fo/after/2"), Value: []byte("a2")}}
	write(t, s, batch...)
	expect(t, s, "after failover", map[string]string{"fo/after/1": "a1", "fo/after/2": "a2"})
}

// TestUnavailable checks that a server that does not answer, or is gone,
// makes calls fail within the timeout with store.ErrUnavailable, and that
// the caller's own deadline is reported as such.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	// Calls must return within the timeout, plus room for a slow machine.
	const limit = timeout + time.Second
	addr := redistest.Standalone(t)
	s := openT(t, Options{Addrs: []string{addr}, Timeout: timeout})
	ctx := context.Background()
	write(t, s, store.KV{Key: []byte("k"), Value: []byte("v")})

	check := func(what string, f func() error) {
		t.Helper()
		start := time.Now()
		err := f()
		elapsed := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s = %v, want an error wrapping store.ErrUnavailable", what, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s = %v: the store's own timeout must not look like the caller's deadline", what, err)
		}
		if elapsed > limit {
			t.Errorf("%s took %v, want at most %v", what, elapsed, limit)
		}
		t.Logf("%s: %v after %v", what, err, elapsed.Round(time.Millisecond))
	}
	get := func(ctx context.Context) error {
		return s.Get(ctx, [][]byte{[]byte("k")}, func(int, []byte, bool) {})
	}
	put := func(ctx context.Context) error {
		return s.Write(ctx, []store.KV{{Key: []byte("k2"), Value: []byte("v2")}})
	}

	t.Run("Paused", func(t *testing.T) {
		// The server is up but answers nobody for 1.5 s.
		mustCommand(t, addr, "CLIENT", "PAUSE", "1500", "ALL")
		check("Get from a paused server", func() error { return get(ctx) })
		check("Write to a paused server", func() error { return put(ctx) })
		// The caller's deadline, earlier than the store's, is the caller's.
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := get(short); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Get past the caller's deadline = %v, want an error wrapping context.DeadlineExceeded only", err)
		}
		// PING is answered once the pause ends; then the store works again
		// (its connection may need redialling first).
		if _, err := redistest.Command(addr, "PING"); err != nil {
			t.Fatalf("PING after the pause: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := get(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Get after the pause ended: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // polling
		}
	})
	t.Run("Stopped", func(t *testing.T) {
		_, _ = redistest.Command(addr, "SHUTDOWN", "NOSAVE") // no reply: the server exits
		check("Get from a stopped server", func() error { return get(ctx) })
		check("Write to a stopped server", func() error { return put(ctx) })
		check("Open of a stopped server", func() error {
			s2, err := Open(ctx, Options{Addrs: []string{addr}, Timeout: timeout})
			if err == nil {
				s2.Close()
			}
			return err
		})
	})
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"NoAddrs", Options{}, "no addresses"},
		{"BadAddr", Options{Addrs: []string{"localhost"}}, `"localhost" is not host:port`},
		{"NegativeTimeout", Options{Addrs: []string{"127.0.0.1:1"}, Timeout: -time.Second}, "Timeout is -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctx, tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("Server", func(t *testing.T) {
		addr := redistest.Standalone(t)
		// Several addresses mean a cluster.
		_, err := Open(ctx, Options{Addrs: []string{addr, addr}})
		if err == nil || !strings.Contains(err.Error(), "for a single server give one address") {
			t.Errorf("Open of a standalone server by two addresses: %v, want the hint to give one address", err)
		}
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Open(canceled, Options{Addrs: []string{addr}}); !errors.Is(err, context.Canceled) {
			t.Errorf("Open with a canceled context: %v, want context.Canceled", err)
		}

		mustCommand(t, addr, "CONFIG", "SET", "requirepass", "secret")
		for _, pw := range []string{"", "wrong"} {
			_, err = Open(ctx, Options{Addrs: []string{addr}, Password: pw})
			if err == nil || !strings.Contains(err.Error(), "authentication failed") || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open with password %q, the server's being another: %v, want an authentication error", pw, err)
			}
		}
		s := openT(t, Options{Addrs: []string{addr}, Password: "secret"})
		write(t, s, store.KV{Key: []byte("k"), Value: []byte("v")})
	})
}

func TestClose(t *testing.T) {
	t.Parallel()
	addr := redistest.Standalone(t)
	s := openT(t, Options{Addrs: []string{addr}})
	write(t, s, store.KV{Key: []byte("k"), Value: []byte("v")})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := context.Background()
	if err := s.Get(ctx, [][]byte{[]byte("k")}, func(int, []byte, bool) { t.Error("fn called after Close") }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close = %v, want store.ErrClosed", err)
	}
	if err := s.Write(ctx, []store.KV{{Key: []byte("k"), Value: []byte("v")}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Write after Close = %v, want store.ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v, want store.ErrClosed", err)
	}
}

// BenchmarkGet reads 100 present keys per Get from a standalone server, to
// show the allocations per call (rueidis's: about one per value found).
func BenchmarkGet(b *testing.B) {
	addr := redistest.Standalone(b)
	s := openT(b, Options{Addrs: []string{addr}})
	ctx := context.Background()
	batch := make([]store.KV, 100)
	keys := make([][]byte, len(batch))
	for i := range batch {
		batch[i] = store.KV{Key: fmt.Appendf(nil, "bench/%03d", i), Value: bytes.Repeat([]byte{'x'}, 200)}
		keys[i] = batch[i].Key
	}
	if err := s.Write(ctx, batch); err != nil {
		b.Fatal(err)
	}
	fn := func(int, []byte, bool) {}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Get(ctx, keys, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func write(t *testing.T, s *Store, batch ...store.KV) {
	t.Helper()
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// expect reads the keys of want and checks their values; "" means missing.
func expect(t *testing.T, s *Store, when string, want map[string]string) {
	t.Helper()
	var keys [][]byte
	for k := range want {
		keys = append(keys, []byte(k))
	}
	if err := s.Get(context.Background(), keys, func(i int, v []byte, found bool) {
		w := want[string(keys[i])]
		if found != (w != "") || string(v) != w {
			t.Errorf("%s: key %q = %q (found=%v), want %q", when, keys[i], v, found, w)
		}
	}); err != nil {
		t.Fatalf("%s: Get: %v", when, err)
	}
}

func mustCommand(t *testing.T, addr string, args ...string) string {
	t.Helper()
	reply, err := redistest.Command(addr, args...)
	if err != nil {
		t.Fatalf("%s on %s: %v", strings.Join(args, " "), addr, err)
	}
	return reply
}
