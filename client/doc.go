// Package client is Kiln's Go client for the gRPC API (kiln.v1.FeatureService,
// docs/grpc.md). It owns one persistent connection per serving replica and
// decides, call by call, which replica answers: power of two choices on
// requests in flight and observed latency, optional hedged requests,
// optional entity-affine routing, and retries where they are safe.
//
// The caller builds a Client once with New, shares it between goroutines,
// and calls Close when done. A call is a Request (which features, and the
// entity keys) and a Response (typed columns, read in place from the
// protobuf answer):
//
//	c, err := client.New(ctx, client.Options{
//		Addrs: []string{"10.0.0.1:7071", "10.0.0.2:7071", "10.0.0.3:7071"},
//		Hedge: 2 * time.Millisecond, // about the p95 of a call
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	req := &client.Request{Selection: client.Service("ranking")}
//	req.Add("user", client.Int("user_id", 42))
//	req.AddInts("post", "post_id", candidates...)
//	resp, err := c.Get(ctx, req)
//	if err != nil { ... } // a gRPC status error: status.Code(err) says what
//	posts := resp.Entity("post")
//	views := posts.Column("post_engagement:views_5m") // look a column up once
//	for i := range posts.Len() {
//		if views.Valid(i) {
//			score(candidates[i], views.Int64(i))
//		}
//	}
//
// A hot feature list can be prepared once: c.Prepare returns a *Prepared
// whose id the servers resolve without reading names; set Request.Prepared
// instead of Request.Selection. Ids are per server: the Prepared remembers
// one per replica, prepares lazily on a replica it has not met, and prepares
// again when a replica forgot (NOT_FOUND after a restart).
//
// # Options and their zero values
//
//   - Addrs: the gRPC address of every serving replica (1 to MaxReplicas).
//     Required.
//   - Hedge: 0 turns hedging off. Otherwise, when the first attempt has not
//     answered after Hedge, a second one goes to another replica; the first
//     answer wins and the other attempt is cancelled. Set it near the p95
//     latency: about 5 % more requests buy a tail cut at the p95.
//   - Affinity: false routes every call by power of two choices. True sends
//     a call to the replica that owns its first entity key by rendezvous
//     hashing, so each replica's row cache sees a stable share of the keys;
//     the call falls back to power of two choices when the owner is down or
//     has more than its bounded share (AffinityLoadFactor) of the calls in
//     flight.
//   - Timeout: the deadline of a call whose ctx has none. Default 1s
//     (DefaultTimeout).
//   - MaxRetries: how many more replicas a call may try after one answered
//     UNAVAILABLE or RESOURCE_EXHAUSTED, within the call's deadline.
//     Default 1; negative means none.
//   - Backoff: how long a replica that answered UNAVAILABLE or
//     RESOURCE_EXHAUSTED (or could not be reached) is skipped; it doubles
//     with each further failure in a row, up to MaxBackoffFactor times.
//     Default 200ms (DefaultBackoff).
//   - Token: a bearer token sent with every call, for servers started with
//     --token-file (docs/security.md). Empty: none. Without TLS it crosses
//     the network in plaintext.
//   - TLS: connect over TLS with this configuration; LoadTLS reads a CA
//     and, for mutual TLS, a client certificate and key from PEM files.
//     Nil: plaintext.
//   - DialOptions: extra grpc.DialOptions for every connection, after the
//     client's own (the transport credentials and the token).
//
// # Balancing, hedging, retries
//
// Each replica keeps the number of calls in flight from this client and a
// peak-sensitive moving average of the latency of its answers: a slower
// answer raises the average at once, faster ones pull it down by a quarter
// of the gap each, and an idle replica's average decays towards zero (time
// constant LatencyDecay) so that a replica that was slow is tried again
// later. A call picks two replicas at random and sends to the one with the
// lower (in flight + 1) × latency; ties go either way. A slow replica thus
// gets few calls, an overloaded one fewer as its queue grows, and a new one
// is tried quickly.
//
// A call is retried only when it is safe and useful: the reads of this API
// have no side effects, so UNAVAILABLE and RESOURCE_EXHAUSTED (the server
// refused or could not serve) go to another replica, at most MaxRetries
// times, never past the deadline. INVALID_ARGUMENT, NOT_FOUND (other than a
// forgotten prepared id), DEADLINE_EXCEEDED and CANCELLED are returned as
// they are. A replica that failed is marked down for Backoff and skipped
// while another is up; an attempt cancelled because its hedge won counts
// its elapsed time as a latency observation, so a stalling replica falls
// out of favour.
//
// # Errors and ownership
//
// Get and Prepare return gRPC status errors (status.Code works on them);
// the client's own checks of a Request come as INVALID_ARGUMENT before any
// call. Get returns once every attempt it started has ended, so the caller
// may change or reuse the Request as soon as Get returns. A Response reads
// the protobuf answer in place and is never reused by the client: it and
// the slices its accessors return stay valid as long as the caller keeps
// them, and must not be modified.
package client
