package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/rueidis"

	"github.com/kiln-dev/kiln/internal/store"
)

// Writes acknowledged after replication
//
// With Options.Replicas set, every write ends with Redis's WAIT, which
// blocks the connection it arrives on until the given number of replicas
// acknowledged every write made before it on that connection, or its
// timeout passes, and answers how many did. So the writes and their WAIT
// must travel on one connection, and reach the master that applies them:
//
//   - on a single server, the batch and one WAIT go in one DoMulti, which
//     rueidis sends on one dedicated connection because WAIT blocks;
//   - on a cluster, the rows are grouped by the master that owns their hash
//     slot (CLUSTER SLOTS, read once and again whenever a write finds it out
//     of date), and each master gets its rows and one WAIT in one DoMulti,
//     through the client of that node only. That client does not follow
//     MOVED or ASK: a row whose slot moved fails the write (retryably), and
//     is written again, with its WAIT, to the new owner, rather than being
//     redirected past the WAIT that should confirm it.
//
// Commands are never resent by rueidis after a broken connection in this
// mode either (they are not marked retryable): a resent write would not be
// followed by its WAIT. The caller retries the whole batch.

// errNotReplicated is the cause of a write that too few replicas confirmed
// in time.
var errNotReplicated = errors.New("not confirmed by enough replicas")

// topology is the master of each hash slot of a cluster, and a client of
// each master.
type topology struct {
	master [16384]string
	nodes  map[string]rueidis.Client
}

// do sends the commands of req, one per row (one MSET for all on a single
// server), and when writes wait for replicas, the WAITs that confirm them.
// It returns an answer per command, or an error when a WAIT could not
// confirm every row: then any subset of the rows may have been written.
func (s *Store) do(ctx context.Context, c rueidis.Client, req *request) ([]rueidis.RedisResult, error) {
	switch {
	case s.replicas == 0:
		return c.DoMulti(ctx, req.cmds...), nil
	case !s.cluster:
		n := len(req.cmds)
		resps := c.DoMulti(ctx, append(req.cmds, s.wait(c))...)
		return resps[:n], s.confirmed(resps[n])
	}
	topo, err := s.topology(ctx, c)
	if err != nil {
		return nil, err
	}
	if req.byNode == nil {
		req.byNode = map[string][]int{}
	}
	for addr, rows := range req.byNode {
		req.byNode[addr] = rows[:0]
	}
	for i := range req.cmds {
		addr := topo.master[req.cmds[i].Slot()]
		if topo.nodes[addr] == nil {
			s.topo.Store(nil)
			return nil, fmt.Errorf("%w: no master known for hash slot %d", store.ErrUnavailable, req.cmds[i].Slot())
		}
		req.byNode[addr] = append(req.byNode[addr], i)
	}
	if cap(req.results) < len(req.cmds) {
		req.results = make([]rueidis.RedisResult, len(req.cmds))
	}
	resps := req.results[:len(req.cmds)]
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error // guarded by mu
	)
	for addr, rows := range req.byNode {
		if len(rows) == 0 {
			continue // a master of an earlier request
		}
		wg.Go(func() {
			node := topo.nodes[addr]
			cmds := make([]rueidis.Completed, 0, len(rows)+1)
			for _, i := range rows {
				cmds = append(cmds, req.cmds[i])
			}
			out := node.DoMulti(ctx, append(cmds, s.wait(node))...)
			for j, i := range rows {
				resps[i] = out[j]
			}
			err := s.confirmed(out[len(rows)])
			for _, r := range out[:len(rows)] {
				if e := r.Error(); e != nil && movedOrBroken(e) {
					err = e // the slot moved, or the node is gone: look again
					s.topo.Store(nil)
					break
				}
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("master %s: %w", addr, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return resps, firstErr
}

// movedOrBroken reports whether err, a row's answer, means the topology
// changed: a MOVED or ASK redirection, a cluster that is down, or no
// answer from the node. Other error replies (NOSCRIPT, say) are the row's,
// for the caller to handle.
func movedOrBroken(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return true
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED") || strings.HasPrefix(msg, "ASK") || strings.HasPrefix(msg, "CLUSTERDOWN")
}

// wait returns the WAIT that ends a write.
func (s *Store) wait(c rueidis.Client) rueidis.Completed {
	ms := max(s.replicationTimeout.Milliseconds(), 1) // WAIT's 0 waits forever
	return c.B().Wait().Numreplicas(int64(s.replicas)).Timeout(ms).Build()
}

// confirmed checks a WAIT's answer: nil if it counted at least the replicas
// asked for.
func (s *Store) confirmed(r rueidis.RedisResult) error {
	n, err := r.AsInt64()
	if err != nil {
		return err
	}
	if n < int64(s.replicas) {
		return fmt.Errorf("%w: %w: %d of the %d replicas asked for confirmed it within %v (check that each master has %[4]d replicas in sync: INFO replication, CLUSTER NODES)",
			store.ErrUnavailable, errNotReplicated, n, s.replicas, s.replicationTimeout)
	}
	return nil
}

// topology returns the cluster's slot owners, reading them (CLUSTER SLOTS)
// when not known.
func (s *Store) topology(ctx context.Context, c rueidis.Client) (*topology, error) {
	if t := s.topo.Load(); t != nil {
		return t, nil
	}
	slots, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's slots: %w", err)
	}
	t := &topology{nodes: c.Nodes()}
	for _, r := range slots {
		e, err := r.ToArray()
		if err != nil || len(e) < 3 {
			return nil, fmt.Errorf("%w: CLUSTER SLOTS answered an entry of %d items", store.ErrUnavailable, len(e))
		}
		from, err1 := e[0].AsInt64()
		to, err2 := e[1].AsInt64()
		m, err3 := e[2].ToArray()
		if err := errors.Join(err1, err2, err3); err != nil || len(m) < 2 || from < 0 || to >= int64(len(t.master)) || from > to {
			return nil, fmt.Errorf("%w: CLUSTER SLOTS answered an entry Kiln cannot read: %v", store.ErrUnavailable, err)
		}
		host, err1 := m[0].ToString()
		port, err2 := m[1].AsInt64()
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%w: CLUSTER SLOTS answered a master Kiln cannot read: %v", store.ErrUnavailable, err)
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for slot := from; slot <= to; slot++ {
			t.master[slot] = addr
		}
	}
	s.topo.Store(t)
	return t, nil
}
