// Package redis is the online store on Redis: one Redis server, or a Redis
// Cluster, reached through the rueidis client. The same Options work for
// both: Open asks the servers it is given and uses whichever they are.
//
// # Standalone or cluster
//
// rueidis first tries the addresses as a cluster (CLUSTER SLOTS). If there is
// exactly one address and that server is not in cluster mode, it falls back
// to a client for a single server. So a single server is named by one
// address; a cluster by one or more of its nodes (rueidis discovers the
// others from the first that answers; name several so that Open works while
// one is down). Several addresses of servers not in cluster mode are an
// error.
//
// # Reads
//
// Get sends one GET per key in a single rueidis DoMulti: on a single server
// they go out as one pipeline; on a cluster rueidis groups them by the node
// that owns each key's hash slot and sends one pipeline per node, to all
// nodes in parallel. Either way a Get costs one round trip per node it
// touches, never one per key. MOVED and ASK redirections (slots moving
// between masters) and failovers are followed by rueidis, within the call's
// timeout; reads that fail on a broken connection are retried by rueidis,
// also within the timeout.
//
// The values handed to fn are views of the reply strings rueidis reads off
// the connection (RedisMessage.AsBytes), not copies: the only allocations
// per key are rueidis's own, one string per value found. fn must not modify
// a value nor keep it past the call.
//
// # Writes and atomicity
//
// On a single server, Write sends the whole batch as one MSET, which Redis
// applies atomically: readers see all of a batch or none of it, as with
// Pebble. On a cluster, a batch's keys live in many hash slots on several
// masters, which no Redis command updates together, so Write sends one SET
// per row in a single DoMulti (one pipeline per master, in parallel): each
// row is atomic, the batch as a whole is not, and a reader may see part of it
// while Write runs. If Write returns an error, any subset of the batch may
// have been applied; writing the same batch again is safe, and rueidis
// itself retries the SETs (idempotent here) after a broken connection,
// within the timeout.
//
// A caveat shared by every Redis client that times calls out: the commands of
// a Write that timed out may already be on their way and be applied after
// Write returned its error. A writer that retries the same batch until it
// succeeds (as Kiln's ingest partitions do) is unaffected.
//
// # Durability and failover
//
// Write returns once the master(s) applied the batch in memory. What survives
// a crash depends on the servers' configuration (appendonly with appendfsync
// everysec loses at most about a second). Redis replicates asynchronously: a
// write acknowledged by a master that dies before its replica received it is
// lost when that replica takes over. The writer cannot tell which writes were
// lost; replaying the event log from the offsets stored with the rows
// rebuilds them.
//
// With Options.Replicas set, Write and WriteIf return only once WAIT
// confirmed the batch on that many replicas of every master it touched
// (see replicate.go for how the WAITs reach the connections that carried
// the writes), and fail with store.ErrUnavailable when fewer did within
// Options.ReplicationTimeout; the rows may then be on the master, as after
// any failed write. An acknowledged write then survives the loss of its
// master, as long as a replica that confirmed it is the one promoted (Redis
// Cluster promotes the most up-to-date replica). A master without enough
// replicas in sync takes no writes at all.
//
// # Authentication and TLS
//
// Options.Username and Password are sent with AUTH (HELLO) on every
// connection; Options.TLS makes every connection, to every node, a TLS one.
// Open's errors say what to check when the servers refuse the credentials
// or the TLS handshake fails.
//
// # Timeouts and errors
//
// Every call runs under a deadline of Options.Timeout (or the caller's
// context's, if earlier); rueidis also uses it to dial and to declare a
// connection that stopped answering dead. A call that fails because Redis
// could not be reached, did not answer in time, or answered with an error
// that means "not now" (CLUSTERDOWN, TRYAGAIN, LOADING, MASTERDOWN, READONLY,
// BUSY) returns an error wrapping store.ErrUnavailable, which the API answers
// with a retryable status. A call whose own context ended first returns an
// error wrapping ctx.Err() instead. After Close every call returns
// store.ErrClosed.
//
// # Client-side caching
//
// The store does not use rueidis's server-assisted client-side caching: Get
// always asks Redis. Rows change at every flush of the write path, so cached
// rows would be invalidated constantly, each connection's cache would take
// up to 128 MiB by default, and the serve layer keeps its own row cache in
// front of the store. Options.DisableCache goes further and stops rueidis
// from enabling CLIENT TRACKING on its connections at all, which servers and
// proxies without RESP3 or CLIENT TRACKING (Redis before 6, some managed
// services) need: Open fails with a hint to set it when it is needed.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/store"
)

// DefaultTimeout is the per-call timeout used when Options.Timeout is 0.
const DefaultTimeout = 2 * time.Second

// DefaultReplicationTimeout is how long a write waits for its replicas
// when Options.Replicas is set and Options.ReplicationTimeout is 0.
const DefaultReplicationTimeout = time.Second

// Options configures Open. Addrs is required; the zero value of every other
// field is ready to use.
type Options struct {
	// Addrs are host:port addresses: the one server of a standalone Redis,
	// or one or more nodes of a Redis Cluster.
	Addrs []string
	// Timeout bounds each call (Get, Write) and each dial; 0 means
	// DefaultTimeout (2 s). Open waits at most Timeout per address, plus
	// one more.
	Timeout time.Duration
	// Username and Password are sent with AUTH on every connection:
	// Username names a Redis ACL user (empty: the default user); an empty
	// Password sends no AUTH.
	Username, Password string
	// TLS, when not nil, makes every connection a TLS connection with this
	// configuration (the servers' tls-port).
	TLS *tls.Config
	// Replicas, when more than 0, makes every write wait until that many
	// replicas of each master it wrote to confirmed it (Redis's WAIT), for
	// at most ReplicationTimeout (default 1s); a write not confirmed in
	// time fails with store.ErrUnavailable (see "Durability and failover").
	Replicas           int
	ReplicationTimeout time.Duration
	// Logger receives the store's few log messages (what it connected to,
	// Close). nil discards them.
	Logger *slog.Logger
	// DisableCache stops rueidis from turning on CLIENT TRACKING (in OPTIN
	// mode) on its connections. The store never caches rows on the client
	// either way (see the package documentation); set DisableCache for
	// servers that do not support RESP3 or CLIENT TRACKING.
	DisableCache bool

	// dial, when set, replaces the dialer; tests count writes with it.
	dial func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error)
}

// Store is a store.Store on Redis or Redis Cluster. It is safe for
// concurrent use. Make one with Open.
type Store struct {
	timeout time.Duration
	// replicas is how many replicas must confirm a write (0: none are
	// waited for), within replicationTimeout.
	replicas           int
	replicationTimeout time.Duration
	cluster            bool   // the servers are a Redis Cluster: batches are not atomic
	where              string // the addresses, for error messages
	logger             *slog.Logger

	// topo is the cluster's slot owners, for writes that wait for
	// replicas; nil until loaded, and after a write found it out of date.
	topo atomic.Pointer[topology]

	// mu guards client: Get and Write hold it for reading while they use
	// client, Close holds it for writing while it closes client, and sets
	// it to nil, which marks the store closed.
	mu     sync.RWMutex
	client rueidis.Client // guarded by mu; nil once closed
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis server or cluster at opts.Addrs. It fails if
// none of the addresses answers within the timeout (with an error wrapping
// store.ErrUnavailable), if the servers refuse the password, or if several
// addresses are given for servers that are not a cluster. Close the store
// to release its connections.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("store/redis: no addresses: Options.Addrs must name the Redis server, or one or more nodes of the Redis Cluster, as host:port")
	}
	for _, a := range opts.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("store/redis: address %q is not host:port: %w", a, err)
		}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("store/redis: Timeout is %v; it must be 0 (for the default, %v) or more", opts.Timeout, DefaultTimeout)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	where := strings.Join(opts.Addrs, ",")
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/redis: open %s: %w", where, err)
	}

	if opts.Replicas < 0 || opts.ReplicationTimeout < 0 {
		return nil, fmt.Errorf("store/redis: Replicas %d and ReplicationTimeout %v must not be negative", opts.Replicas, opts.ReplicationTimeout)
	}
	replicationTimeout := opts.ReplicationTimeout
	if replicationTimeout == 0 {
		replicationTimeout = DefaultReplicationTimeout
	}
	if opts.TLS != nil && opts.TLS.InsecureSkipVerify {
		logger.Warn("store/redis: TLS without verifying the servers' certificates (insecure_skip_verify): the connections are encrypted, but anyone on the path can pose as the servers", "addrs", where)
	}

	copt := rueidis.ClientOption{
		InitAddress: slices.Clone(opts.Addrs),
		Username:    opts.Username,
		Password:    opts.Password,
		TLSConfig:   opts.TLS,
		ClientName:  "kiln", // as CLIENT LIST shows it
		Dialer:      net.Dialer{Timeout: timeout},
		// A connection that has not answered within the timeout is broken
		// and redialled (rueidis's default is 10 s).
		ConnWriteTimeout: timeout,
		DisableCache:     opts.DisableCache,
		DialCtxFn:        opts.dial,
	}
	// rueidis.NewClient takes no context: run it aside, and let it finish
	// (and close what it made) in the background if ctx ends first.
	type opened struct {
		client rueidis.Client
		err    error
	}
	done := make(chan opened, 1)
	go func() {
		c, err := rueidis.NewClient(copt)
		done <- opened{c, err}
	}()
	openTimeout := timeout * time.Duration(len(opts.Addrs)+1)
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	var c rueidis.Client
	select {
	case o := <-done:
		if o.err != nil {
			return nil, openError(where, len(opts.Addrs), opts.TLS != nil, o.err)
		}
		c = o.client
	case <-octx.Done():
		go func() {
			if o := <-done; o.client != nil {
				o.client.Close()
			}
		}()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("store/redis: open %s: %w", where, err)
		}
		return nil, fmt.Errorf("store/redis: open %s: %w: no answer within %v", where, store.ErrUnavailable, openTimeout)
	}

	s := &Store{
		timeout:            timeout,
		replicas:           opts.Replicas,
		replicationTimeout: replicationTimeout,
		cluster:            c.Mode() == rueidis.ClientModeCluster,
		where:              where,
		logger:             logger,
		client:             c,
	}
	logger.Info("store/redis: connected", "addrs", where, "mode", string(c.Mode()), "nodes", len(c.Nodes()),
		"tls", opts.TLS != nil, "user", opts.Username, "replicas", opts.Replicas)
	return s, nil
}

// openError explains why rueidis.NewClient failed.
func openError(where string, nAddrs int, withTLS bool, err error) error {
	if errors.Is(err, rueidis.ErrNoCache) {
		return fmt.Errorf("store/redis: open %s: the server does not support client tracking (RESP3); set DisableCache: %w", where, err)
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		switch {
		case nAddrs > 1 && strings.Contains(strings.ToUpper(msg), "CLUSTER"):
			return fmt.Errorf("store/redis: open %s: several addresses are only right for a Redis Cluster, and these servers are not in cluster mode; for a single server give one address: %w", where, err)
		case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.Contains(msg, "AUTH"):
			return fmt.Errorf("store/redis: open %s: authentication failed: check username and password of online_store against the servers' requirepass or ACL users: %w", where, err)
		case strings.HasPrefix(msg, "NOPERM"):
			return fmt.Errorf("store/redis: open %s: the ACL user may not run a command Kiln needs: give it at least +@read +@write +@scripting +@connection +wait +cluster|slots: %w", where, err)
		case isRetryableReply(msg):
			return fmt.Errorf("store/redis: open %s: %w: %w", where, store.ErrUnavailable, err)
		}
		return fmt.Errorf("store/redis: open %s: %w", where, err)
	}
	if hint := definition.TLSHint(err, "tls of online_store"); hint != "" {
		return fmt.Errorf("store/redis: open %s: %s: %w", where, hint, err)
	}
	// A TLS client at a plain port waits for an answer that never comes; a
	// plain client at a TLS port is hung up on.
	hint := " (if the servers expect TLS, add tls to online_store)"
	if withTLS {
		hint = " (check that the addresses are the servers' tls-port)"
	}
	return fmt.Errorf("store/redis: open %s: %w: %w%s", where, store.ErrUnavailable, err, hint)
}

// begin starts a call of n keys or rows (op names it in errors): it returns
// the client, or a nil client and what the call returns at once: nil when
// n is 0, ErrClosed when the store is closed, or the context's error. The
// caller holds s.mu for reading until the call ends.
func (s *Store) begin(ctx context.Context, op string, n int) (rueidis.Client, error) {
	c := s.client
	if c == nil {
		return nil, store.ErrClosed
	}
	if n == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/redis: %s: %w", op, err)
	}
	return c, nil
}

// Get calls fn once per key, in order, with the value stored under keys[i]
// or with found == false when there is none. It reads every key in one
// DoMulti. The value is a view of rueidis's reply, valid only during the
// call; fn must not modify it. fn must not call methods of this store: Get
// holds the store open while it runs, and a Close waiting for it would
// deadlock.
//
// When Get returns an error it has not called fn at all.
func (s *Store) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.begin(ctx, "get", len(keys))
	if c == nil {
		return err
	}

	size := 0
	for _, k := range keys {
		size += len(k)
	}
	req := newRequest(len(keys), size)
	for i, k := range keys {
		req.cmds[i] = c.B().Get().Key(req.str(k)).Build()
	}
	cctx, cancel := s.callContext(ctx)
	resps := c.DoMulti(cctx, req.cmds...)
	cancel() // DoMulti has returned: rueidis is done with cctx
	for i, r := range resps {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return s.callError(ctx, fmt.Sprintf("get of %d keys (key %d)", len(keys), i), err)
		}
	}
	req.release(resps)
	for i, r := range resps {
		v, err := r.AsBytes()
		if err != nil { // rueidis.Nil: the other errors were returned above
			fn(i, nil, false)
			continue
		}
		if v == nil {
			v = []byte{} // an empty value is found, and not nil
		}
		fn(i, v, true)
	}
	return nil
}

// Write stores the batch: as one MSET on a single server, atomically; as one
// SET per row on a cluster, each row atomically (see the package
// documentation). Later pairs win over earlier pairs with the same key. An
// empty batch is a no-op. Write copies the keys and values it sends, and
// keeps none of the batch's slices.
func (s *Store) Write(ctx context.Context, batch []store.KV) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.begin(ctx, "write", len(batch))
	if c == nil {
		return err
	}

	size := 0
	for _, kv := range batch {
		size += len(kv.Key) + len(kv.Value)
	}
	// Retryable: setting a key to the value it may already have is
	// harmless, so rueidis may resend after a broken connection; but not
	// when replicas must confirm the write, since rueidis would resend it
	// without the WAIT after it.
	retryable := func(cmd rueidis.Completed) rueidis.Completed {
		if s.replicas > 0 {
			return cmd
		}
		return cmd.ToRetryable()
	}
	var req *request
	if s.cluster {
		req = newRequest(len(batch), size)
		for i, kv := range batch {
			req.cmds[i] = retryable(c.B().Set().Key(req.str(kv.Key)).Value(req.str(kv.Value)).Build())
		}
	} else {
		req = newRequest(1, size)
		mset := c.B().Mset().KeyValue()
		for _, kv := range batch {
			mset = mset.KeyValue(req.str(kv.Key), req.str(kv.Value))
		}
		req.cmds[0] = retryable(mset.Build())
	}
	cctx, cancel := s.callContext(ctx)
	resps, err := s.do(cctx, c, req)
	cancel() // do has returned: rueidis is done with cctx
	if err != nil {
		return s.callError(ctx, fmt.Sprintf("write of %d rows", len(batch)), err)
	}
	failed, first, firstErr := 0, 0, error(nil)
	for i, r := range resps {
		if err := r.Error(); err != nil {
			if failed == 0 {
				first, firstErr = i, err
			}
			failed++
		}
	}
	if failed > 0 {
		what := fmt.Sprintf("write of %d rows", len(batch))
		if s.cluster {
			what = fmt.Sprintf("write of %d rows (%d failed, the first row %d)", len(batch), failed, first)
		}
		return s.callError(ctx, what, firstErr)
	}
	req.release(resps)
	return nil
}

// Close closes the connections, after waiting for the Gets and Writes under
// way. Calls after the first return store.ErrClosed, Close included; it is
// safe to call Close concurrently with anything.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return store.ErrClosed
	}
	s.client.Close()
	s.client = nil
	s.logger.Info("store/redis: closed", "addrs", s.where)
	return nil
}

// callContext returns the context a call runs under: ctx, with the store's
// timeout (plus the replication timeout, when writes wait for replicas)
// unless ctx's own deadline is earlier.
func (s *Store) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := s.timeout
	if s.replicas > 0 {
		timeout += s.replicationTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// callError describes the failure err of a call made under the caller's
// ctx.
func (s *Store) callError(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		// The caller's own context ended: it is their deadline or their
		// cancellation, not the store's failure.
		return fmt.Errorf("store/redis: %s: %w", what, cerr)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		// The caller's deadline passed, and rueidis (whose connection
		// deadline it was) noticed before ctx's own timer did.
		return fmt.Errorf("store/redis: %s: %w", what, context.DeadlineExceeded)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The store's own timeout: do not wrap context.DeadlineExceeded,
		// which would say the caller's deadline passed.
		return fmt.Errorf("store/redis: %s: %w: no answer from %s within %v", what, store.ErrUnavailable, s.where, s.timeout)
	}
	if unavailable(err) {
		return fmt.Errorf("store/redis: %s: %w: %w", what, store.ErrUnavailable, err)
	}
	return fmt.Errorf("store/redis: %s: %w", what, err)
}

// unavailable reports whether err, from a command, means Redis could not be
// reached or asks to be tried again later.
func unavailable(err error) bool {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return isRetryableReply(re.Error())
	}
	// Not a reply from Redis: the connection failed or was closed, or
	// rueidis knows no node for a slot (rueidis.ErrNoSlot) while a cluster
	// changes.
	return true
}

// retryableReplies are the prefixes of Redis error replies that mean "not
// now": the cluster is failing over or resharding, the server is loading its
// data, a replica lost its master, or a script is running. MOVED and ASK
// reach the caller only when rueidis gave up following them.
var retryableReplies = []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "BUSY ", "NOREPLICAS", "MOVED", "ASK"}

func isRetryableReply(msg string) bool {
	for _, p := range retryableReplies {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// request holds what one Get or Write hands to rueidis: the commands, and one
// buffer (arena) with a copy of every key and value they name. The commands'
// strings point into the arena (rueidis.BinaryString), so building them
// costs no allocation per key, and the caller's slices are free to change as
// soon as the call returns, even if rueidis still holds the commands of a
// call that timed out. Requests are pooled, but one goes back to the pool only
// after a call in which every command was answered (so rueidis no longer
// looks at it); the others are left to the garbage collector.
type request struct {
	cmds  []rueidis.Completed
	arena []byte
	// byNode and results are do's, for writes to a cluster that wait for
	// replicas.
	byNode  map[string][]int
	results []rueidis.RedisResult
}

// Requests bigger than these are not pooled, so that one huge batch does not
// pin its memory.
const (
	maxPooledCmds       = 1 << 14
	maxPooledArenaBytes = 1 << 20
)

var requests = sync.Pool{New: func() any { return new(request) }}

// newRequest returns a request for n commands whose strings total size
// bytes.
func newRequest(n, size int) *request {
	r := requests.Get().(*request)
	if cap(r.cmds) < n {
		r.cmds = make([]rueidis.Completed, n)
	}
	r.cmds = r.cmds[:n]
	if cap(r.arena) < size {
		r.arena = make([]byte, 0, size)
	}
	r.arena = r.arena[:0]
	return r
}

// str copies b into the arena and returns the copy as a string. The arena
// was sized for every string of the request, so it never moves.
func (r *request) str(b []byte) string {
	start := len(r.arena)
	r.arena = append(r.arena, b...)
	return rueidis.BinaryString(r.arena[start:len(r.arena):len(r.arena)])
}

// release returns r to the pool if every command of the call got an answer
// (a value, nil, or an error reply), so that nothing refers to it any more.
func (r *request) release(resps []rueidis.RedisResult) {
	for _, resp := range resps {
		if resp.NonRedisError() != nil {
			return
		}
	}
	if cap(r.cmds) > maxPooledCmds || cap(r.arena) > maxPooledArenaBytes {
		return
	}
	clear(r.cmds)
	clear(r.results)
	requests.Put(r)
}
