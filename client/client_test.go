package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/grpcapi"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
	"github.com/kiln-dev/kiln/internal/query"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// replica is one gRPC server over the cluster's engine, behind an
// interceptor the test steers: it counts calls, and can fail them with a
// code, delay them, or stall them until the call is cancelled or the test
// ends.
type replica struct {
	addr string
	gs   *grpc.Server
	done chan struct{}

	gets, prepares atomic.Int64
	fail           atomic.Uint32 // a codes.Code to answer with; 0: none
	delay          atomic.Int64  // ns added to every call
	stall          atomic.Bool
	cancelled      chan struct{} // one send per stalled call whose ctx ended
	release        chan struct{} // closed when the test ends
	stopOnce       sync.Once
}

func (r *replica) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch info.FullMethod {
	case kilnv1.FeatureService_GetFeatures_FullMethodName:
		r.gets.Add(1)
	case kilnv1.FeatureService_Prepare_FullMethodName:
		r.prepares.Add(1)
	default:
		return handler(ctx, req)
	}
	if c := codes.Code(r.fail.Load()); c != codes.OK {
		return nil, status.Error(c, "injected by the test")
	}
	if d := time.Duration(r.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if r.stall.Load() {
		select {
		case <-ctx.Done():
			r.cancelled <- struct{}{}
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-r.release:
		}
	}
	return handler(ctx, req)
}

// stop kills the replica: its listener and connections close.
func (r *replica) stop() {
	r.stopOnce.Do(func() {
		close(r.release)
		r.gs.Stop()
		<-r.done
	})
}

type cluster struct {
	node     *node.Node
	replicas []*replica
}

// startCluster runs one node of the feed example with a fixed clock, pushes
// events to it, and serves its engine through n gRPC servers on loopback,
// each with its own grpcapi.Server (so prepared ids are per server).
func startCluster(t testing.TB, n int, apiOpts grpcapi.Options) *cluster {
	t.Helper()
	nd, _ := nodetest.Start(t, examples.FeedProjectName, examples.FeedProject, t0)
	push(t, nd)
	cl := &cluster{node: nd}
	for range n {
		cl.replicas = append(cl.replicas, serve(t, nd.Engine, apiOpts))
	}
	return cl
}

func serve(t testing.TB, engine *query.Engine, apiOpts grpcapi.Options) *replica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{
		addr: ln.Addr().String(), done: make(chan struct{}),
		cancelled: make(chan struct{}, 1024), release: make(chan struct{}),
	}
	r.gs = grpc.NewServer(grpc.UnaryInterceptor(r.intercept))
	grpcapi.New(engine, apiOpts).Register(r.gs)
	go func() { r.gs.Serve(ln); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

// push sends engagements of users 1..5 with posts 100..139 over the last
// few days.
func push(t testing.TB, nd *node.Node) {
	t.Helper()
	kinds := []string{"view", "view", "like", "share", "comment"}
	var evs []map[string]any
	for i := range 600 {
		ev := map[string]any{
			"user_id": 1 + i%5, "post_id": 100 + (i*7)%40, "kind": kinds[i%len(kinds)],
			"ts": t0.Add(-time.Duration(i*i%5000) * time.Minute).UnixMilli(),
		}
		if i%3 > 0 {
			ev["dwell_ms"] = float64(i%97) * 12.5
		}
		evs = append(evs, ev)
	}
	body, err := json.Marshal(map[string]any{"source": "engagements", "events": evs})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(nd.URL()+"/v1/push", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if raw, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("push: %d %s", resp.StatusCode, raw)
	}
}

func (cl *cluster) addrs() []string {
	var out []string
	for _, r := range cl.replicas {
		out = append(out, r.addr)
	}
	return out
}

func (cl *cluster) gets() (n int64) {
	for _, r := range cl.replicas {
		n += r.gets.Load()
	}
	return n
}

func newClient(t testing.TB, cl *cluster, opts client.Options) *client.Client {
	t.Helper()
	opts.Addrs = cl.addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attempts is the number of calls c sent, over all replicas.
func attempts(c *client.Client) (n uint64) {
	for _, s := range c.Replicas() {
		n += s.Attempts
	}
	return n
}

func stats(c *client.Client, addr string) client.ReplicaStats {
	for _, s := range c.Replicas() {
		if s.Addr == addr {
			return s
		}
	}
	return client.ReplicaStats{}
}

func userReq(users ...int64) *client.Request {
	req := &client.Request{Selection: client.Service("user_profile")}
	req.AddInts("user", "user_id", users...)
	return req
}

func mustGet(t testing.TB, c *client.Client, req *client.Request) *client.Response {
	t.Helper()
	resp, err := c.Get(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// keyOwnedBy finds a user whose calls an affinity client sends to addr
// while every replica is idle and up.
func keyOwnedBy(t *testing.T, c *client.Client, addr string) int64 {
	t.Helper()
	for u := int64(1); u <= 200; u++ {
		if mustGet(t, c, userReq(u)).Addr() == addr {
			return u
		}
	}
	t.Fatalf("no user of 1..200 is routed to %s", addr)
	return 0
}

// checkAccessors checks that every typed accessor of resp says what the
// protobuf answer want says, and returns the number of present keys and
// of valid non-zero values.
func checkAccessors(t *testing.T, what string, resp *client.Response, want *kilnv1.GetFeaturesResponse) (present, nonzero int) {
	t.Helper()
	if !resp.EvaluatedAt().Equal(time.UnixMilli(want.EvaluatedAtMs)) || !resp.EvaluatedAt().Equal(t0) {
		t.Errorf("%s: evaluated at %v, want %v", what, resp.EvaluatedAt(), t0)
	}
	if resp.NumEntities() != len(want.Entities) {
		t.Fatalf("%s: %d entity types, want %d", what, resp.NumEntities(), len(want.Entities))
	}
	for ei, we := range want.Entities {
		e := resp.Entity(we.Entity)
		if e.Name() != we.Entity || resp.EntityAt(ei).Name() != we.Entity || e.Len() != len(we.Statuses) {
			t.Fatalf("%s: entity %s: %q with %d keys, want %d", what, we.Entity, e.Name(), e.Len(), len(we.Statuses))
		}
		for i, st := range we.Statuses {
			wantSt, wantTime := client.NotFound, time.Time{}
			if st == kilnv1.Status_STATUS_PRESENT {
				wantSt, wantTime = client.Present, time.UnixMilli(we.EventTimeMs[i])
				present++
			}
			if e.Status(i) != wantSt || e.Found(i) != (wantSt == client.Present) ||
				e.EventTimeMs(i) != we.EventTimeMs[i] || !e.EventTime(i).Equal(wantTime) {
				t.Errorf("%s: %s #%d: %v at %v, want %v at %v", what, we.Entity, i, e.Status(i), e.EventTime(i), wantSt, wantTime)
			}
		}
		if e.NumColumns() != len(we.Features) {
			t.Fatalf("%s: %s: %d columns, want %d", what, we.Entity, e.NumColumns(), len(we.Features))
		}
		for k, wc := range we.Features {
			col := e.Column(wc.Name)
			if !col.Exists() || col.Name() != wc.Name || e.ColumnAt(k).Name() != wc.Name {
				t.Fatalf("%s: %s: no column %s", what, we.Entity, wc.Name)
			}
			for i, valid := range wc.Valid {
				if col.Valid(i) != valid || e.Valid(wc.Name, i) != valid {
					t.Errorf("%s: %s #%d %s: valid %v, want %v", what, we.Entity, i, wc.Name, col.Valid(i), valid)
				}
				var ok, zero bool
				switch wc.Type {
				case kilnv1.ValueType_VALUE_TYPE_INT64:
					v := wc.IntValues[i]
					ok = col.Type() == client.TypeInt64 && col.Int64(i) == v && e.Int64(wc.Name, i) == v &&
						col.Float64(i) == float64(v) && col.Int64s()[i] == v && col.String(i) == ""
					zero = v == 0
				case kilnv1.ValueType_VALUE_TYPE_DOUBLE:
					v := wc.DoubleValues[i]
					ok = col.Type() == client.TypeFloat64 && col.Float64(i) == v && e.Float64(wc.Name, i) == v &&
						col.Float64s()[i] == v && col.Int64(i) == 0
					zero = v == 0
				default:
					t.Fatalf("%s: column %s of type %v: the feed example has none", what, wc.Name, wc.Type)
				}
				if !ok {
					t.Errorf("%s: %s #%d %s: accessors disagree with the answer", what, we.Entity, i, wc.Name)
				}
				if valid && !zero {
					nonzero++
				}
			}
		}
		if c := e.Column("no_such:feature"); c.Exists() || c.Valid(0) || c.Int64(0) != 0 || c.Float64(0) != 0 {
			t.Errorf("%s: a missing column is not empty", what)
		}
	}
	if e := resp.Entity("no_such_entity"); e.Len() != 0 {
		t.Errorf("%s: a missing entity has %d keys", what, e.Len())
	}
	return present, nonzero
}

// 1. The client's answers are the server's: the same protobuf as a direct
// gRPC call, read correctly by every typed accessor, for a service, a
// feature list and a prepared list.
func TestSameAnswerAsDirectCall(t *testing.T) {
	cl := startCluster(t, 2, grpcapi.Options{})
	c := newClient(t, cl, client.Options{})
	conn, err := grpc.NewClient(cl.replicas[1].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	direct := kilnv1.NewFeatureServiceClient(conn)
	ctx := context.Background()

	posts := []int64{900, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 139, 140, 120}
	ranking := &client.Request{Selection: client.Service("ranking")}
	ranking.Add("user", client.Int("user_id", 2))
	ranking.AddInts("post", "post_id", posts...)
	features := []string{"post_engagement:views_5m", "user_engagement:likes_24h", "post_engagement:dwell_mean_1h", "user_engagement:last_post"}
	list := &client.Request{Selection: client.Features(features...)}
	list.AddInts("post", "post_id", 101, 77, 100) // the post first: the answer still comes user, post
	list.AddInts("user", "user_id", 1)
	cases := []struct {
		name        string
		req         *client.Request
		in          *kilnv1.GetFeaturesRequest
		wantPresent int
	}{
		{"service", ranking, &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_Service{Service: "ranking"},
			Entities: []*kilnv1.EntityKeys{
				{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{2}}}},
				{Entity: "post", Keys: []*kilnv1.KeyColumn{{Field: "post_id", IntValues: posts}}},
			}}, 13},
		{"feature list", list, &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: features}},
			Entities: []*kilnv1.EntityKeys{
				{Entity: "post", Keys: []*kilnv1.KeyColumn{{Field: "post_id", IntValues: []int64{101, 77, 100}}}},
				{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}},
			}}, 3},
		{"not found", userReq(1, 77, 5), &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_Service{Service: "user_profile"},
			Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1, 77, 5}}}}},
		}, 2},
	}
	for _, tc := range cases {
		want, err := direct.GetFeatures(ctx, tc.in)
		if err != nil {
			t.Fatalf("%s: direct: %v", tc.name, err)
		}
		resp := mustGet(t, c, tc.req)
		if !proto.Equal(resp.Proto(), want) {
			t.Fatalf("%s: client answer\n%v\ndirect answer\n%v", tc.name, resp.Proto(), want)
		}
		present, nonzero := checkAccessors(t, tc.name, resp, want)
		if present != tc.wantPresent || nonzero == 0 {
			t.Errorf("%s: %d keys present (want %d), %d non-zero values", tc.name, present, tc.wantPresent, nonzero)
		}
	}

	// A prepared service answers as the service does, on every replica:
	// each prepares it on its first call.
	p, err := c.Prepare(ctx, client.Service("ranking"))
	if err != nil {
		t.Fatal(err)
	}
	ents := p.Entities()
	if len(ents) != 2 || ents[0].Name != "user" || ents[1].Name != "post" ||
		len(ents[1].KeyFields) != 1 || ents[1].KeyFields[0] != (client.Field{Name: "post_id", Type: client.TypeInt64}) ||
		len(ents[1].Features) != 19 || ents[1].Features[0].Name != "post_engagement:views_5m" {
		t.Errorf("prepared layout %+v", ents)
	}
	want, err := direct.GetFeatures(ctx, cases[0].in)
	if err != nil {
		t.Fatal(err)
	}
	prepared := &client.Request{Prepared: p}
	prepared.Add("user", client.Int("user_id", 2))
	prepared.AddInts("post", "post_id", posts...)
	used := map[string]bool{}
	for i := 0; i < 200 && len(used) < 2; i++ {
		resp := mustGet(t, c, prepared)
		if !proto.Equal(resp.Proto(), want) {
			t.Fatalf("prepared answer from %s differs from the service's", resp.Addr())
		}
		used[resp.Addr()] = true
	}
	if len(used) != 2 {
		t.Errorf("200 prepared calls went to %d replicas only", len(used))
	}
	for _, r := range cl.replicas {
		if n := r.prepares.Load(); n != 1 {
			t.Errorf("replica %s prepared %d times, want once", r.addr, n)
		}
	}
}

// A replica that forgot a prepared id (restart, eviction) answers
// NOT_FOUND; the client prepares again and the caller never sees it.
func TestPreparedAgainWhenForgotten(t *testing.T) {
	cl := startCluster(t, 1, grpcapi.Options{MaxPrepared: 1})
	c := newClient(t, cl, client.Options{})
	r := cl.replicas[0]
	ctx := context.Background()
	p, err := c.Prepare(ctx, client.Service("user_profile"))
	if err != nil {
		t.Fatal(err)
	}
	req := &client.Request{Prepared: p}
	req.AddInts("user", "user_id", 1, 2)
	mustGet(t, c, req)
	// Preparing another list evicts the first (MaxPrepared 1).
	if _, err := c.Prepare(ctx, client.Features("user_engagement:views_1h")); err != nil {
		t.Fatal(err)
	}
	resp := mustGet(t, c, req)
	if e := resp.Entity("user"); e.Len() != 2 || !e.Found(0) {
		t.Fatalf("answer after re-prepare: %v", resp.Proto())
	}
	// Calls: Get (ok), Get (NOT_FOUND), Get (ok); prepares: ours, the
	// evicting one, the transparent one.
	if g, p := r.gets.Load(), r.prepares.Load(); g != 3 || p != 3 {
		t.Errorf("%d GetFeatures and %d Prepare calls, want 3 and 3", g, p)
	}
}

// 2. Power of two choices: a replica that answers 20ms slower than the
// other gets a small share of the calls, sequential or concurrent.
func TestSlowReplicaGetsFewerRequests(t *testing.T) {
	cl := startCluster(t, 2, grpcapi.Options{})
	slow, fast := cl.replicas[0], cl.replicas[1]
	slow.delay.Store(int64(20 * time.Millisecond))
	c := newClient(t, cl, client.Options{})

	const sequential, workers, perWorker = 100, 4, 50
	for range sequential {
		mustGet(t, c, userReq(1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			req := userReq(2)
			for range perWorker {
				if _, err := c.Get(context.Background(), req); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, f := slow.gets.Load(), fast.gets.Load()
	if s+f != sequential+workers*perWorker {
		t.Fatalf("%d + %d calls, want %d", s, f, sequential+workers*perWorker)
	}
	share := float64(s) / float64(s+f)
	t.Logf("slow replica: %d calls, fast: %d (slow share %.1f %%); client: %+v", s, f, 100*share, c.Replicas())
	if share >= 0.30 {
		t.Errorf("the slow replica got %.1f %% of the calls, want < 30 %%", 100*share)
	}
}

// 3. Hedging: with one replica stalling every call forever, every call is
// answered by the hedge to the other replica, and the stalled attempt is
// cancelled (its server sees the call's context end).
func TestHedgeWinsWhenReplicaStalls(t *testing.T) {
	cl := startCluster(t, 2, grpcapi.Options{})
	stalled, healthy := cl.replicas[0], cl.replicas[1]
	stalled.stall.Store(true)
	c := newClient(t, cl, client.Options{Hedge: 5 * time.Millisecond})

	check := func(resp *client.Response, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		if resp.Addr() != healthy.addr || !resp.Entity("user").Found(0) {
			t.Errorf("answer from %s: %v", resp.Addr(), resp.Proto())
		}
	}
	// Sequential calls: the stalled replica, not yet measured, looks
	// cheapest and gets the first or second call, then is avoided.
	for range 20 {
		check(c.Get(context.Background(), userReq(3)))
	}
	// A burst of concurrent calls.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				check(c.Get(context.Background(), userReq(4)))
			}
		})
	}
	wg.Wait()

	n := stalled.gets.Load()
	if n == 0 {
		t.Fatal("the stalled replica got no call: the hedge was never needed")
	}
	if got := healthy.gets.Load(); got != 60 {
		t.Errorf("the healthy replica answered %d calls, want all 60", got)
	}
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-stalled.cancelled:
		case <-timeout:
			t.Fatalf("%d of the %d stalled calls were cancelled", i, n)
		}
	}
	if s, h := stats(c, stalled.addr), stats(c, healthy.addr); s.InFlight != 0 || s.Latency <= h.Latency {
		t.Errorf("stalled replica after the calls: %+v, healthy %+v (want nothing in flight and a latency penalty)", s, h)
	}
	t.Logf("stalled replica got %d of 60 calls, all cancelled", n)
}

// 4. Affinity: a key always goes to the same replica, keys spread over the
// replicas, and a key whose replica fails moves to another.
func TestAffinity(t *testing.T) {
	cl := startCluster(t, 3, grpcapi.Options{})
	// A long backoff: the failing owner below must stay down for the test.
	c := newClient(t, cl, client.Options{Affinity: true, Backoff: time.Minute})

	owner := map[int64]string{}
	perReplica := map[string]int{}
	for u := int64(1); u <= 30; u++ {
		for range 3 {
			// The user is the first key: the posts do not change the route.
			req := &client.Request{Selection: client.Service("ranking")}
			req.Add("user", client.Int("user_id", u))
			req.AddInts("post", "post_id", 100+u, 200+u)
			addr := mustGet(t, c, req).Addr()
			if prev, ok := owner[u]; ok && prev != addr {
				t.Fatalf("user %d went to %s, then to %s", u, prev, addr)
			}
			owner[u] = addr
		}
		perReplica[owner[u]]++
	}
	t.Logf("30 users per replica: %v", perReplica)
	if len(perReplica) < 2 {
		t.Errorf("30 users all went to one replica: %v", perReplica)
	}
	for addr, n := range perReplica {
		if n > 24 {
			t.Errorf("replica %s owns %d of 30 users", addr, n)
		}
	}

	// The owner of user 1 fails: the call is answered elsewhere, and the
	// owner is skipped while it is down.
	var down *replica
	for _, r := range cl.replicas {
		if r.addr == owner[1] {
			down = r
		}
	}
	down.fail.Store(uint32(codes.Unavailable))
	before := down.gets.Load()
	for range 5 {
		if addr := mustGet(t, c, userReq(1)).Addr(); addr == down.addr {
			t.Fatalf("answered by the failing owner %s", addr)
		}
	}
	if got := down.gets.Load() - before; got != 1 {
		t.Errorf("the failing owner got %d calls, want 1 (then it is down)", got)
	}
	if !stats(c, down.addr).Down {
		t.Errorf("the failing owner is not marked down: %+v", c.Replicas())
	}
}

// 5. A replica killed (server and listener stopped) makes no call fail:
// the attempt that meets it gets UNAVAILABLE and is retried on the other,
// which answers everything after; the dead one is marked down.
func TestKilledReplica(t *testing.T) {
	cl := startCluster(t, 2, grpcapi.Options{})
	dead, alive := cl.replicas[0], cl.replicas[1]
	// With affinity the first call after the kill goes to the dead replica
	// for sure; a plain client is used beside it.
	aff := newClient(t, cl, client.Options{Affinity: true})
	p2c := newClient(t, cl, client.Options{})
	u := keyOwnedBy(t, aff, dead.addr)
	for range 10 {
		mustGet(t, p2c, userReq(1))
	}

	dead.stop()
	if addr := mustGet(t, aff, userReq(u)).Addr(); addr != alive.addr {
		t.Fatalf("answered by %s", addr)
	}
	if s := stats(aff, dead.addr); !s.Down || s.Failures != 1 {
		t.Errorf("killed replica: %+v, want down after 1 failure", s)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				for _, c := range []*client.Client{aff, p2c} {
					resp, err := c.Get(context.Background(), userReq(int64(1+(w*10+i)%5)))
					if err != nil {
						t.Error(err)
						return
					}
					if resp.Addr() != alive.addr {
						t.Errorf("answered by %s", resp.Addr())
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("affinity client: %+v; p2c client: %+v", aff.Replicas(), p2c.Replicas())
}

// 6. Retries only where safe: RESOURCE_EXHAUSTED goes to another replica
// (at most MaxRetries times); INVALID_ARGUMENT and DEADLINE_EXCEEDED are
// returned after one attempt.
func TestRetries(t *testing.T) {
	cl := startCluster(t, 2, grpcapi.Options{})
	busy, other := cl.replicas[0], cl.replicas[1]
	c := newClient(t, cl, client.Options{Affinity: true})
	u := keyOwnedBy(t, c, busy.addr)
	ctx := context.Background()

	busy.fail.Store(uint32(codes.ResourceExhausted))
	b0, o0 := busy.gets.Load(), other.gets.Load()
	if addr := mustGet(t, c, userReq(u)).Addr(); addr != other.addr {
		t.Fatalf("answered by %s", addr)
	}
	if b, o := busy.gets.Load()-b0, other.gets.Load()-o0; b != 1 || o != 1 {
		t.Errorf("refused on %d calls, answered on %d: want one each", b, o)
	}

	// Both refuse: one retry, then the refusal is the answer.
	other.fail.Store(uint32(codes.ResourceExhausted))
	a0 := attempts(c)
	_, err := c.Get(ctx, userReq(u))
	if status.Code(err) != codes.ResourceExhausted || attempts(c)-a0 != 2 {
		t.Errorf("both refusing: %v after %d attempts, want RESOURCE_EXHAUSTED after 2", err, attempts(c)-a0)
	}
	busy.fail.Store(0)
	other.fail.Store(0)

	// A bad request is not retried.
	a0, g0 := attempts(c), cl.gets()
	bad := &client.Request{Selection: client.Features("user_engagement:no_such_feature")}
	bad.AddInts("user", "user_id", 1)
	_, err = c.Get(ctx, bad)
	if status.Code(err) != codes.InvalidArgument || attempts(c)-a0 != 1 || cl.gets()-g0 != 1 {
		t.Errorf("bad request: %v after %d attempts and %d calls, want INVALID_ARGUMENT after 1", err, attempts(c)-a0, cl.gets()-g0)
	}

	// Nor is a call whose deadline passed.
	busy.delay.Store(int64(time.Second))
	other.delay.Store(int64(time.Second))
	a0 = attempts(c)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err = c.Get(dctx, userReq(1))
	if status.Code(err) != codes.DeadlineExceeded || attempts(c)-a0 != 1 {
		t.Errorf("slow call: %v after %d attempts, want DEADLINE_EXCEEDED after 1", err, attempts(c)-a0)
	}
}

// Mistakes the client can see are INVALID_ARGUMENT before any call.
func TestRequestChecks(t *testing.T) {
	cl := startCluster(t, 1, grpcapi.Options{})
	c := newClient(t, cl, client.Options{})
	other := newClient(t, cl, client.Options{})
	p, err := other.Prepare(context.Background(), client.Service("user_profile"))
	if err != nil {
		t.Fatal(err)
	}
	mixed := userReq(1)
	mixed.AddStrings("user", "user_id", "x")
	uneven := &client.Request{Selection: client.Service("ranking")}
	uneven.Add("post", client.Int("post_id", 1), client.Int("extra", 2))
	uneven.Add("post", client.Int("post_id", 3))
	both := userReq(1)
	both.Prepared = p
	foreign := &client.Request{Prepared: p}
	foreign.AddInts("user", "user_id", 1)
	for name, req := range map[string]*client.Request{
		"no selection":        {},
		"no keys":             {Selection: client.Service("user_profile")},
		"service and list":    {Selection: client.Selection{Service: "x", Features: []string{"y"}}},
		"int and string":      mixed,
		"uneven columns":      uneven,
		"prepared and select": both,
		"another client's":    foreign,
	} {
		if _, err := c.Get(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if n := cl.gets(); n != 0 {
		t.Errorf("%d calls reached the server", n)
	}
	// Reset keeps the selection and drops the keys.
	req := userReq(1, 2, 3)
	req.Reset()
	req.AddInts("user", "user_id", 4)
	if req.Len("user") != 1 || mustGet(t, c, req).Entity("user").Len() != 1 {
		t.Errorf("after Reset: %d keys", req.Len("user"))
	}
	if _, err := client.New(context.Background(), client.Options{}); err == nil {
		t.Error("New without addresses succeeded")
	}
	c.Close()
	if _, err := c.Get(context.Background(), req); err != client.ErrClosed {
		t.Errorf("Get after Close: %v", err)
	}
}
