package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Limits and defaults of the client.
const (
	// MaxReplicas is the most addresses a Client takes.
	MaxReplicas = 64
	// DefaultTimeout is the deadline of a call whose ctx has none, when
	// Options.Timeout is zero.
	DefaultTimeout = time.Second
	// DefaultMaxRetries is Options.MaxRetries when zero.
	DefaultMaxRetries = 1
	// DefaultBackoff is Options.Backoff when zero.
	DefaultBackoff = 200 * time.Millisecond
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("kiln client: closed")

// Options configures a Client. Only Addrs is required; the package doc
// says what each option does.
type Options struct {
	// Addrs are the gRPC addresses (host:port) of the serving replicas.
	Addrs []string
	// Hedge is the delay after which a call that has no answer yet is
	// sent to a second replica. 0: no hedging.
	Hedge time.Duration
	// Affinity routes a call to the replica owning its first entity key
	// (rendezvous hashing), falling back to power of two choices when
	// that replica is down or over its share of calls in flight.
	Affinity bool
	// Timeout is the deadline of a call whose ctx has none. Default
	// DefaultTimeout.
	Timeout time.Duration
	// MaxRetries is how many other replicas a call tries after
	// UNAVAILABLE or RESOURCE_EXHAUSTED. Default DefaultMaxRetries;
	// negative: no retries.
	MaxRetries int
	// Backoff is how long a failed replica is skipped, doubled per
	// failure in a row up to MaxBackoffFactor times. Default
	// DefaultBackoff.
	Backoff time.Duration
	// Token, if set, is sent with every call as a bearer token (the
	// server's --token-file). Without TLS it crosses the network in
	// plaintext: set TLS beyond a trusted network.
	Token string
	// TLS, if set, connects over TLS with it (LoadTLS reads a CA and a
	// client certificate from files); nil connects in plaintext.
	TLS *tls.Config
	// DialOptions are added to every connection's, after the transport
	// credentials (TLS, or plaintext) and the token (a
	// grpc.WithTransportCredentials here replaces them).
	DialOptions []grpc.DialOption
}

func (o *Options) ensureDefaults() error {
	if len(o.Addrs) == 0 {
		return errors.New("kiln client: Options.Addrs is empty: give the gRPC address of at least one replica")
	}
	if len(o.Addrs) > MaxReplicas {
		return fmt.Errorf("kiln client: %d addresses, more than MaxReplicas (%d)", len(o.Addrs), MaxReplicas)
	}
	for i, a := range o.Addrs {
		if a == "" {
			return fmt.Errorf("kiln client: Options.Addrs[%d] is empty", i)
		}
		if slices.Contains(o.Addrs[:i], a) {
			return fmt.Errorf("kiln client: address %s is given twice", a)
		}
	}
	if o.Hedge < 0 || o.Timeout < 0 || o.Backoff < 0 {
		return fmt.Errorf("kiln client: negative duration (Hedge %v, Timeout %v, Backoff %v)", o.Hedge, o.Timeout, o.Backoff)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	return nil
}

// Client calls a set of Kiln replicas. It is safe for concurrent use.
type Client struct {
	opts     Options
	replicas []*replica
	epoch    time.Time // the client clock is time since epoch: monotonic
	closed   atomic.Bool
}

// New connects to every replica of opts.Addrs. It waits, until ctx ends,
// for each connection's first attempt to succeed or fail, so that the
// first calls find connections ready; replicas that could not be reached
// start marked down. It fails only for invalid options.
func New(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	c := &Client{opts: opts, epoch: time.Now()}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if opts.TLS != nil {
		dial[0] = grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS))
	}
	if opts.Token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(newBearerToken(opts.Token)))
	}
	dial = append(dial, opts.DialOptions...)
	for i, addr := range opts.Addrs {
		conn, err := grpc.NewClient(addr, dial...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("kiln client: replica %s: %w", addr, err)
		}
		conn.Connect()
		c.replicas = append(c.replicas, newReplica(i, addr, conn))
	}
	for _, r := range c.replicas {
		for {
			s := r.conn.GetState()
			if s == connectivity.TransientFailure {
				r.fail(c.now(), c.opts.Backoff)
			}
			if s == connectivity.Ready || s == connectivity.TransientFailure || s == connectivity.Shutdown ||
				!r.conn.WaitForStateChange(ctx, s) {
				break
			}
		}
	}
	return c, nil
}

// Close closes every connection. Calls in flight end with CANCELLED; later
// calls return ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, r := range c.replicas {
		errs = append(errs, r.conn.Close())
	}
	return errors.Join(errs...)
}

func (c *Client) now() int64 { return int64(time.Since(c.epoch)) }

// Get reads the features req selects for its keys.
func (c *Client) Get(ctx context.Context, req *Request) (*Response, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := req.check(c); err != nil {
		return nil, status.Error(codes.InvalidArgument, "kiln client: "+err.Error())
	}
	rt := route{affinity: c.opts.Affinity}
	if rt.affinity {
		rt.hash = req.affinityHash()
	}
	ents := req.ents[:req.n]
	var do func(ctx context.Context, r *replica) (*kilnv1.GetFeaturesResponse, error)
	if p := req.Prepared; p != nil {
		do = func(ctx context.Context, r *replica) (*kilnv1.GetFeaturesResponse, error) {
			return c.getPrepared(ctx, r, p, ents)
		}
	} else {
		// One message for every attempt: gRPC only reads it.
		in := &kilnv1.GetFeaturesRequest{Entities: ents}
		if req.Service != "" {
			in.Selection = &kilnv1.GetFeaturesRequest_Service{Service: req.Service}
		} else {
			in.Selection = &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: req.Features}}
		}
		do = func(ctx context.Context, r *replica) (*kilnv1.GetFeaturesResponse, error) {
			return r.stub.GetFeatures(ctx, in)
		}
	}
	out, r, err := run(c, ctx, rt, do)
	if err != nil {
		return nil, err
	}
	return &Response{pb: out, addr: r.addr}, nil
}

// getPrepared calls GetFeatures with p's id on r, preparing p there first
// when r has no id for it, or forgot it.
func (c *Client) getPrepared(ctx context.Context, r *replica, p *Prepared, ents []*kilnv1.EntityKeys) (*kilnv1.GetFeaturesResponse, error) {
	id := p.ids[r.idx].Load()
	for again := false; ; again = true {
		if id == 0 {
			var err error
			if id, err = c.prepareOn(ctx, r, p); err != nil {
				return nil, err
			}
		}
		out, err := r.stub.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: id},
			Entities:  ents,
		})
		if status.Code(err) != codes.NotFound || again {
			return out, err
		}
		id = 0 // the replica restarted or evicted the list: prepare again
	}
}

func (c *Client) prepareOn(ctx context.Context, r *replica, p *Prepared) (uint64, error) {
	out, err := r.stub.Prepare(ctx, prepareRequest(p.sel))
	if err != nil {
		return 0, err
	}
	p.ids[r.idx].Store(out.GetPreparedId())
	return out.GetPreparedId(), nil
}

func prepareRequest(sel Selection) *kilnv1.PrepareRequest {
	if sel.Service != "" {
		return &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: sel.Service}}
	}
	return &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Features{Features: &kilnv1.FeatureList{Names: sel.Features}}}
}

// Prepared is a feature list resolved by the servers, for Request.Prepared.
// It keeps the id each replica gave it and is safe for concurrent use. It
// belongs to the Client that made it.
type Prepared struct {
	client   *Client
	sel      Selection
	entities []PreparedEntity
	ids      []atomic.Uint64 // by replica index; 0: not prepared there
}

// PreparedEntity is the part of a prepared list about one entity type: the
// key fields a request must give, and the columns of the answer, in order.
type PreparedEntity struct {
	Name      string
	KeyFields []Field
	Features  []Field
}

// Field is a named, typed key field or feature column.
type Field struct {
	Name string
	Type Type
}

// Selection is the list p resolves.
func (p *Prepared) Selection() Selection { return p.sel }

// Entities are the entity types of the list, in the order of the answer,
// as the replica that first prepared it described them. Do not modify.
func (p *Prepared) Entities() []PreparedEntity { return p.entities }

// Prepare resolves sel on a replica and returns it prepared, for
// Request.Prepared. Other replicas prepare it on their first call.
func (c *Client) Prepare(ctx context.Context, sel Selection) (*Prepared, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := sel.check(); err != nil {
		return nil, status.Error(codes.InvalidArgument, "kiln client: "+err.Error())
	}
	in := prepareRequest(sel)
	out, r, err := run(c, ctx, route{}, func(ctx context.Context, r *replica) (*kilnv1.PrepareResponse, error) {
		return r.stub.Prepare(ctx, in)
	})
	if err != nil {
		return nil, err
	}
	p := &Prepared{client: c, sel: sel, ids: make([]atomic.Uint64, len(c.replicas))}
	if len(sel.Features) > 0 {
		p.sel.Features = append([]string(nil), sel.Features...) // the caller may reuse its slice
	}
	p.ids[r.idx].Store(out.GetPreparedId())
	for _, pe := range out.GetEntities() {
		e := PreparedEntity{Name: pe.GetEntity()}
		for _, f := range pe.GetKeyFields() {
			e.KeyFields = append(e.KeyFields, Field{Name: f.GetName(), Type: typeOf(f.GetType())})
		}
		for _, f := range pe.GetFeatures() {
			e.Features = append(e.Features, Field{Name: f.GetName(), Type: typeOf(f.GetType())})
		}
		p.entities = append(p.entities, e)
	}
	return p, nil
}

// ReplicaStats is what the client knows of one replica.
type ReplicaStats struct {
	Addr string
	// InFlight is the number of attempts under way.
	InFlight int
	// Latency is the current latency estimate (decayed); 0 before the
	// first answer.
	Latency time.Duration
	// Down is true while the replica is skipped after a failure.
	Down bool
	// Attempts counts the calls sent to it, Failures those that ended in
	// UNAVAILABLE or RESOURCE_EXHAUSTED.
	Attempts, Failures uint64
}

// Replicas describes every replica, in the order of Options.Addrs.
func (c *Client) Replicas() []ReplicaStats {
	now := c.now()
	out := make([]ReplicaStats, len(c.replicas))
	for i, r := range c.replicas {
		out[i] = ReplicaStats{
			Addr: r.addr, InFlight: int(r.inflight.Load()), Latency: time.Duration(r.latency(now)),
			Down: r.down(now), Attempts: r.attempts.Load(), Failures: r.failures.Load(),
		}
	}
	return out
}

// retryable reports whether another replica may succeed where one failed
// with err: it refused load or could not serve. Nothing else is retried:
// a bad request stays bad, and a deadline is the caller's.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// attempt sends one call to r and accounts for it.
func attempt[T any](c *Client, ctx context.Context, r *replica, do func(context.Context, *replica) (T, error)) (T, error) {
	r.attempts.Add(1)
	r.inflight.Add(1)
	start := c.now()
	v, err := do(ctx, r)
	end := c.now()
	r.inflight.Add(-1)
	switch status.Code(err) {
	case codes.OK:
		r.observe(end, end-start, false)
		r.ok()
	case codes.Unavailable, codes.ResourceExhausted:
		r.fail(end, c.opts.Backoff)
	case codes.Canceled, codes.DeadlineExceeded:
		// No answer: the replica took at least this long.
		r.observe(end, end-start, true)
	default:
		// An answer, if not a happy one: its latency counts.
		r.observe(end, end-start, false)
	}
	return v, err
}

// run makes one call: it picks a replica, retries on another where safe,
// and hedges when opts.Hedge is set. It returns the answer and the replica
// that gave it, once every attempt it started has ended.
func run[T any](c *Client, ctx context.Context, rt route, do func(context.Context, *replica) (T, error)) (T, *replica, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	if c.opts.Hedge > 0 {
		return runHedged(c, ctx, rt, do)
	}
	var zero T
	var tried uint64
	var lastErr error
	var last *replica
	for retries := c.opts.MaxRetries; ; retries-- {
		r := c.pick(tried, rt, c.now())
		if r == nil {
			break
		}
		tried |= 1 << r.idx
		v, err := attempt(c, ctx, r, do)
		if err == nil {
			return v, r, nil
		}
		lastErr, last = err, r
		if !retryable(err) || retries == 0 || ctx.Err() != nil {
			break
		}
	}
	return zero, last, replicaError(last, lastErr)
}

type result[T any] struct {
	r   *replica
	v   T
	err error
}

// runHedged is run with a hedge: the attempts run in goroutines and the
// first answer wins.
func runHedged[T any](c *Client, ctx context.Context, rt route, do func(context.Context, *replica) (T, error)) (T, *replica, error) {
	var zero T
	maxAttempts := 2 + c.opts.MaxRetries // the first, the hedge, the retries
	results := make(chan result[T], maxAttempts)
	cancels := make([]context.CancelFunc, 0, maxAttempts)
	var tried uint64
	pending := 0
	launch := func() bool {
		r := c.pick(tried, rt, c.now())
		if r == nil || ctx.Err() != nil {
			return false
		}
		tried |= 1 << r.idx
		actx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		pending++
		go func() {
			v, err := attempt(c, actx, r, do)
			results <- result[T]{r, v, err}
		}()
		return true
	}
	// finish cancels the attempts still under way and waits for them, so
	// that none outlives the call (nor reads the caller's request after).
	finish := func() {
		for _, cancel := range cancels {
			cancel()
		}
		for ; pending > 0; pending-- {
			<-results
		}
	}
	defer finish()

	launch()
	timer := time.NewTimer(c.opts.Hedge)
	defer timer.Stop()
	hedge := timer.C
	retries := c.opts.MaxRetries
	var lastErr error
	var last *replica
	for pending > 0 {
		select {
		case res := <-results:
			pending--
			if res.err == nil {
				return res.v, res.r, nil
			}
			lastErr, last = res.err, res.r
			if !retryable(res.err) {
				return zero, last, replicaError(last, lastErr)
			}
			if retries > 0 && launch() {
				retries--
			}
		case <-hedge:
			hedge = nil
			launch()
		}
	}
	return zero, last, replicaError(last, lastErr)
}

// replicaError names the replica in err's message, keeping its code.
func replicaError(r *replica, err error) error {
	if r == nil || err == nil {
		return err
	}
	st := status.Convert(err)
	return status.Error(st.Code(), "replica "+r.addr+": "+st.Message())
}
