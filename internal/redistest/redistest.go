// Package redistest starts real redis-server processes for tests: one
// standalone server, or a Redis Cluster of three masters with one replica
// each. Every server listens on a free loopback port, keeps its files in its
// own t.TempDir(), and is killed (and waited for) when the test ends.
//
// The servers come from the redis-server and redis-cli binaries on PATH
// (Debian package redis-server). When they are missing the test is skipped,
// unless the environment variable KILN_REQUIRE_REDIS is set (to anything but
// "0"), as scripts/test.sh does: then the test fails, telling the reader to
// run scripts/test.sh, which installs them.
//
// Every wait in this package is a polling loop bounded by a deadline; a
// server that does not come up in time fails the test with the end of its
// log.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds the wait for one redis-server to answer PING.
	startTimeout = 10 * time.Second
	// clusterTimeout bounds the wait for a new cluster to be complete: every
	// slot assigned, every node agreeing the cluster is ok, every replica in
	// sync with its master.
	clusterTimeout = 30 * time.Second
	// FailoverTimeout bounds WaitFailover. A replica is promoted about
	// NodeTimeout plus a second after its master stops.
	FailoverTimeout = 30 * time.Second
	// NodeTimeout is the cluster-node-timeout of the test cluster: how long
	// a master may be unreachable before the others mark it failed and its
	// replica takes over. Redis's default of 15 s would make failover tests
	// slow; 1 s is still far above loopback latencies.
	NodeTimeout = 1000 * time.Millisecond
	// commandTimeout bounds one Command.
	commandTimeout = 5 * time.Second
	// pollInterval is how often the bounded waits look again.
	pollInterval = 20 * time.Millisecond
	// startAttempts is how many ports a server is tried on: a free port can
	// be taken by someone else between our check and the server's bind.
	startAttempts = 5
	// clusterBusOffset is the distance from a node's port to its cluster
	// bus port, fixed by Redis.
	clusterBusOffset = 10000
)

// requireRedis skips t, or fails it under KILN_REQUIRE_REDIS, when one of the
// binaries is not on PATH.
func requireRedis(t testing.TB, binaries ...string) {
	t.Helper()
	for _, name := range binaries {
		if _, err := exec.LookPath(name); err != nil {
			if v := os.Getenv("KILN_REQUIRE_REDIS"); v != "" && v != "0" {
				t.Fatalf("%s is not on PATH and KILN_REQUIRE_REDIS is set: run scripts/test.sh, which installs it "+
					"(as root: apt-get install redis-server)", name)
			}
			t.Skipf("%s is not on PATH; install the redis-server package or run scripts/test.sh (set KILN_REQUIRE_REDIS=1 to fail instead of skipping)", name)
		}
	}
}

// Standalone starts one redis-server, not in cluster mode, and returns its
// address (127.0.0.1:port). The server is killed when t ends. A test may
// stop it earlier with Command(addr, "SHUTDOWN", "NOSAVE").
func Standalone(t testing.TB) (addr string) {
	t.Helper()
	requireRedis(t, "redis-server")
	return startServer(t, false, ServerOptions{}).addr
}

// ServerOptions configure StandaloneWith.
type ServerOptions struct {
	// Config holds more redis.conf lines, such as requirepass or user.
	Config string
	// TLSCert and TLSKey are the PEM files of the server's certificate;
	// when set, the server also listens with TLS, on Server.TLSAddr. TLSCA
	// is the authority's certificate, which Redis needs to start TLS; with
	// ClientCerts, clients must show a certificate it signed.
	TLSCert, TLSKey, TLSCA string
	ClientCerts            bool
}

// Server is a standalone server started by StandaloneWith: Addr is its
// plain port (which Command can reach), TLSAddr its TLS port if it has one.
type Server struct {
	Addr, TLSAddr string
}

// StandaloneWith is Standalone with more configuration: passwords, ACL
// users, TLS.
func StandaloneWith(t testing.TB, o ServerOptions) Server {
	t.Helper()
	requireRedis(t, "redis-server")
	s := startServer(t, false, o)
	return Server{Addr: s.addr, TLSAddr: s.tlsAddr}
}

// ClusterHandle is a running Redis Cluster of three shards, each a master
// and one replica, made by Cluster. Its methods must be called from the
// test's goroutine or with its own synchronisation: they are not safe for
// concurrent use.
type ClusterHandle struct {
	t      testing.TB
	nodes  []*server // all of them, in the order they were started
	shards []shard   // in the order of the slots they own
}

// shard is a master and its replica; after a failover the replica is the
// master and replica is nil.
type shard struct {
	master, replica *server
}

// Cluster starts six redis-server processes in cluster mode, makes them a
// cluster of three masters with one replica each (redis-cli --cluster
// create), and waits until every node says cluster_state:ok with all 16384
// slots assigned and every replica is in sync with its master. The
// processes are killed when t ends.
func Cluster(t testing.TB) *ClusterHandle {
	t.Helper()
	requireRedis(t, "redis-server", "redis-cli")
	start := time.Now()
	c := &ClusterHandle{t: t}
	for range 6 {
		c.nodes = append(c.nodes, startServer(t, true, ServerOptions{}))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.waitReady()
	c.readTopology()
	t.Logf("redistest: cluster up in %v: masters %v, replicas %v",
		time.Since(start).Round(time.Millisecond), c.Masters(), c.replicas())
	return c
}

// Addrs returns the addresses of all six nodes, masters and replicas, in
// the order they were started, including any stopped since.
func (c *ClusterHandle) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// Masters returns the address of each shard's master, in the order of the
// slots the shards own: Masters()[i] is shard i's. After WaitFailover(i),
// shard i's master is its former replica.
func (c *ClusterHandle) Masters() []string {
	out := make([]string, len(c.shards))
	for i, s := range c.shards {
		out[i] = s.master.addr
	}
	return out
}

// Replica returns the address of shard i's replica, or "" once it has been
// promoted by a failover.
func (c *ClusterHandle) Replica(i int) string {
	if r := c.shards[i].replica; r != nil {
		return r.addr
	}
	return ""
}

func (c *ClusterHandle) replicas() []string {
	var out []string
	for i := range c.shards {
		out = append(out, c.Replica(i))
	}
	return out
}

// StopMaster kills shard i's master with SIGKILL, as a crash would, and
// waits for the process to exit. Its replica takes over after NodeTimeout
// and an election; WaitFailover waits for that.
func (c *ClusterHandle) StopMaster(i int) {
	c.t.Helper()
	m := c.shards[i].master
	if c.shards[i].replica == nil {
		c.t.Fatalf("redistest: shard %d has no replica left to take over; stopping its master would lose its slots", i)
	}
	m.kill()
	c.t.Logf("redistest: killed master %s of shard %d", m.addr, i)
}

// WaitFailover waits, for at most FailoverTimeout, until shard i's replica
// has been promoted to master and every node still running says
// cluster_state:ok, and returns the new master's address. Call it after
// StopMaster(i).
func (c *ClusterHandle) WaitFailover(i int) string {
	c.t.Helper()
	r := c.shards[i].replica
	if r == nil {
		c.t.Fatalf("redistest: shard %d has no replica", i)
	}
	start := time.Now()
	waitFor(c.t, FailoverTimeout, fmt.Sprintf("replica %s of shard %d to take over", r.addr, i), func() (bool, string) {
		role, err := Command(r.addr, "ROLE")
		if err != nil {
			return false, err.Error()
		}
		if first, _, _ := strings.Cut(role, "\n"); first != "master" {
			return false, "its ROLE is " + first
		}
		for _, n := range c.nodes {
			if n.exited() {
				continue
			}
			info, err := Command(n.addr, "CLUSTER", "INFO")
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.addr, err)
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return false, n.addr + " does not say cluster_state:ok yet"
			}
		}
		return true, ""
	})
	c.shards[i] = shard{master: r}
	c.t.Logf("redistest: replica %s of shard %d took over in %v", r.addr, i, time.Since(start).Round(time.Millisecond))
	return r.addr
}

// FlushAll empties the cluster: FLUSHALL on every master.
func (c *ClusterHandle) FlushAll() {
	c.t.Helper()
	FlushAll(c.t, c.Masters()...)
}

// FlushAll sends FLUSHALL to each of addrs, which must be masters (or
// standalone servers), and fails t if one of them fails.
func FlushAll(t testing.TB, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		if _, err := Command(addr, "FLUSHALL", "SYNC"); err != nil {
			t.Fatalf("redistest: FLUSHALL on %s: %v", addr, err)
		}
	}
}

// waitReady waits until every node agrees that the cluster is complete:
// three masters own all the slots, each has a replica, nobody is failing,
// and every replica has finished its first sync.
func (c *ClusterHandle) waitReady() {
	c.t.Helper()
	waitFor(c.t, clusterTimeout, "the cluster to be ready", func() (bool, string) {
		for _, n := range c.nodes {
			info, err := Command(n.addr, "CLUSTER", "INFO")
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.addr, err)
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384", "cluster_known_nodes:6"} {
				if !strings.Contains(info, want) {
					return false, fmt.Sprintf("%s does not say %s yet", n.addr, want)
				}
			}
			nodes, err := Command(n.addr, "CLUSTER", "NODES")
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.addr, err)
			}
			if _, err := c.parseTopology(nodes); err != nil {
				return false, fmt.Sprintf("%s: %v", n.addr, err)
			}
			repl, err := Command(n.addr, "INFO", "replication")
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.addr, err)
			}
			if strings.Contains(repl, "role:slave") &&
				(!strings.Contains(repl, "master_link_status:up") || !strings.Contains(repl, "master_sync_in_progress:0")) {
				return false, fmt.Sprintf("replica %s is not in sync with its master yet", n.addr)
			}
		}
		return true, ""
	})
}

// readTopology learns from CLUSTER NODES which node is the master of which
// slots and which is its replica: redis-cli chooses.
func (c *ClusterHandle) readTopology() {
	c.t.Helper()
	out, err := Command(c.nodes[0].addr, "CLUSTER", "NODES")
	if err != nil {
		c.t.Fatalf("redistest: CLUSTER NODES: %v", err)
	}
	shards, err := c.parseTopology(out)
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	c.shards = shards
}

// parseTopology reads the output of CLUSTER NODES, which must show three
// masters with slots, each with one replica, all of them ours and healthy,
// and returns the shards in the order of their slots.
func (c *ClusterHandle) parseTopology(out string) ([]shard, error) {
	byAddr := map[string]*server{}
	for _, n := range c.nodes {
		byAddr[n.addr] = n
	}
	type master struct {
		id        string
		node      *server
		firstSlot int
	}
	var masters []master
	replicaOf := map[string]*server{} // master id → its replica
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		// <id> <ip:port@cport> <flags> <master id or -> <ping> <pong> <epoch> <link> <slots>...
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("cannot parse CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := byAddr[addr]
		if n == nil {
			return nil, fmt.Errorf("CLUSTER NODES names %s, which is not one of ours", addr)
		}
		for _, bad := range []string{"fail", "handshake", "noaddr"} {
			if strings.Contains(f[2], bad) {
				return nil, fmt.Errorf("node %s is flagged %s", addr, f[2])
			}
		}
		switch {
		case strings.Contains(f[2], "master") && len(f) > 8:
			lo, _, _ := strings.Cut(f[8], "-")
			first, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("cannot parse slots %q of %s", f[8], addr)
			}
			masters = append(masters, master{id: f[0], node: n, firstSlot: first})
		case strings.Contains(f[2], "slave"):
			if replicaOf[f[3]] != nil {
				return nil, fmt.Errorf("master %s has two replicas", f[3])
			}
			replicaOf[f[3]] = n
		}
	}
	if len(masters) != 3 || len(replicaOf) != 3 {
		return nil, fmt.Errorf("want 3 masters with slots and 3 replicas; CLUSTER NODES says:\n%s", out)
	}
	slices.SortFunc(masters, func(a, b master) int { return a.firstSlot - b.firstSlot })
	var shards []shard
	for _, m := range masters {
		r := replicaOf[m.id]
		if r == nil {
			return nil, fmt.Errorf("master %s has no replica; CLUSTER NODES says:\n%s", m.node.addr, out)
		}
		shards = append(shards, shard{master: m.node, replica: r})
	}
	return shards, nil
}

// server is one redis-server process.
type server struct {
	addr    string
	tlsAddr string // "" without TLS
	dir     string
	pid     int
	done    chan struct{} // closed when the process has exited and been waited for
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill kills the server's process group (redis-server forks children for
// rewriting its append-only file and for syncing replicas) and waits for
// the server to exit.
func (s *server) kill() {
	// ESRCH means all of it is gone already.
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.done
}

// logTail returns the end of the server's log, for failure messages.
func (s *server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 3000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// startServer starts a redis-server on a free port and waits until it
// answers PING, trying other ports if the one it was given was taken.
func startServer(t testing.TB, cluster bool, o ServerOptions) *server {
	t.Helper()
	var lastErr string
	for range startAttempts {
		s, retry, err := tryStart(t, cluster, o)
		if err == nil {
			return s
		}
		if !retry {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = err.Error()
	}
	t.Fatalf("redistest: could not start redis-server in %d attempts; last: %s", startAttempts, lastErr)
	return nil
}

// tryStart starts one server. When it fails, retry says whether another port
// may work.
func tryStart(t testing.TB, cluster bool, o ServerOptions) (s *server, retry bool, err error) {
	t.Helper()
	port, err := freePort(cluster)
	if err != nil {
		return nil, false, err
	}
	dir := t.TempDir()
	conf := config(port, dir, cluster) + o.Config + "\n"
	tlsAddr := ""
	if o.TLSCert != "" {
		tlsPort, err := freePort(false)
		if err != nil {
			return nil, false, err
		}
		tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
		auth := "optional"
		if o.ClientCerts {
			auth = "yes"
		}
		conf += fmt.Sprintf("tls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients %s\n",
			tlsPort, o.TLSCert, o.TLSKey, o.TLSCA, auth)
	}
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, false, err
	}
	cmd := exec.Command("redis-server", confPath)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that kill reaches its children too.
		Setpgid: true,
		// Should the test binary die without running cleanups (a panic, a
		// -timeout), the kernel kills the server.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start redis-server: %w", err)
	}
	s = &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), tlsAddr: tlsAddr, dir: dir, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // killed by us, or exited on its own: the log says why
		close(s.done)
	}()
	t.Cleanup(s.kill)

	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := Command(s.addr, "PING")
		var re ReplyError
		if err == nil && reply == "PONG" || errors.As(err, &re) && strings.HasPrefix(string(re), "NOAUTH") {
			return s, false, nil // NOAUTH: up, and asking for a password
		}
		if s.exited() {
			log := s.logTail()
			return nil, strings.Contains(log, "Address already in use"),
				fmt.Errorf("redis-server on port %d exited at start; its log ends:\n%s", port, log)
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, false, fmt.Errorf("redis-server on port %d did not answer PING within %v; its log ends:\n%s", port, startTimeout, s.logTail())
		}
		select {
		case <-s.done:
		case <-time.After(pollInterval):
		}
	}
}

// config returns a redis.conf for a server on port keeping its files in dir.
func config(port int, dir string, cluster bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "port %d\n", port)
	b.WriteString("bind 127.0.0.1\n")
	b.WriteString("protected-mode no\n")
	fmt.Fprintf(&b, "dir %s\n", dir)
	fmt.Fprintf(&b, "logfile %s\n", filepath.Join(dir, "redis.log"))
	b.WriteString("daemonize no\n")
	b.WriteString("appendonly yes\n")
	b.WriteString("appendfsync everysec\n")
	b.WriteString("save \"\"\n")
	// Replicas start syncing at once, rather than after the default 5 s
	// wait for more replicas to share one transfer.
	b.WriteString("repl-diskless-sync-delay 0\n")
	if cluster {
		b.WriteString("cluster-enabled yes\n")
		b.WriteString("cluster-config-file nodes.conf\n")
		fmt.Fprintf(&b, "cluster-node-timeout %d\n", NodeTimeout.Milliseconds())
	}
	return b.String()
}

var (
	portsMu sync.Mutex
	// portsTaken holds the ports this process has handed out, and their
	// cluster bus ports, so that no two servers of one test binary are
	// given the same one. Guarded by portsMu.
	portsTaken = map[int]bool{}
)

// freePort returns a loopback port nothing listens on, found by listening on
// port 0 and closing. For a cluster node, the bus port (port+10000) must be
// free too.
func freePort(cluster bool) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := !portsTaken[port]
		if ok && cluster {
			bus := port + clusterBusOffset
			ok = bus <= 65535 && !portsTaken[bus]
			if ok {
				lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus)))
				ok = err == nil
				if ok {
					lb.Close()
				}
			}
		}
		l.Close()
		if ok {
			portsTaken[port] = true
			if cluster {
				portsTaken[port+clusterBusOffset] = true
			}
			return port, nil
		}
	}
	return 0, errors.New("find a free port: no luck in 100 tries")
}

// waitFor calls cond until it returns true, for at most timeout, then fails
// t with what it was waiting for and cond's last explanation.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: gave up after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(pollInterval)
	}
}

// ErrNil is returned by Command for a nil reply, such as GET of a missing key.
var ErrNil = errors.New("redistest: nil reply")

// ReplyError is an error reply from the server, such as "MOVED 3999 127.0.0.1:6381".
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Command sends one command to the server at addr on a new connection and
// returns its reply: a status, integer or bulk string as it is, an array as
// its elements on separate lines. An error reply comes back as a ReplyError,
// a nil reply as ErrNil. It gives up after a few seconds.
func Command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return "", err
	}
	req := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		req = fmt.Appendf(req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(req); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("redistest: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", ReplyError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redistest: bad bulk length %q", line)
		}
		if n < 0 {
			return "", ErrNil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redistest: bad array length %q", line)
		}
		if n < 0 {
			return "", ErrNil
		}
		elems := make([]string, n)
		for i := range elems {
			e, err := readReply(r)
			if err != nil && !errors.Is(err, ErrNil) {
				return "", err
			}
			elems[i] = e
		}
		return strings.Join(elems, "\n"), nil
	default:
		return "", fmt.Errorf("redistest: unexpected reply %q", line)
	}
}
