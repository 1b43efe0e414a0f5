// Package bench owns Kiln's load generator and its two benchmarks on RW1,
// the reference workload of docs/workload.md: the read benchmark (Run) and
// the ingestion benchmark (RunIngest). cmd/kiln-bench runs them.
//
// # The load generator
//
// OpenLoop sends requests at a fixed arrival rate, as wrk2 does: request i
// is due at start + i/rate whatever happened to the requests before it, and
// its latency is measured from that due time to its completion. A server
// that stalls therefore shows the stall in every request that was due during
// it, not only in the one request that was in flight (the "coordinated
// omission" a closed-loop client makes). At most MaxInFlight requests are in
// flight; when that bound is reached the next request waits for a free slot,
// and its latency still counts from its due time, so the bound never hides
// a stall. Requests due in the warm-up are sent but not recorded.
//
// ClosedLoop runs a fixed number of workers back to back, to find the most
// requests per second a server completes (saturation). Its latencies are
// service times, not corrected: a closed loop has no schedule to be late
// against.
//
// Latencies go into HDR histograms (github.com/HdrHistogram/hdrhistogram-go)
// in microseconds, from 1 µs to 60 s with 3 significant digits.
//
// The caller gives a Call that performs request i. It must honour its
// context (return soon after the context is cancelled): that is how a run
// that has reached its end stops requests still in flight.
//
// # The RW1 benchmark
//
// Run starts a Kiln server as a child process (or uses one at Config.Target),
// loads the RW1 history through POST /v1/push, keeps a live event stream
// going, and measures, for each query type (Q1: one user, Q2: one user and
// 500 posts) and offered rate, Kiln's read path and then the floor (POST
// /debug/rows or gRPC Diagnostics.GetRows: the store's raw multi-get of the
// same rows) with the same pre-generated request sequence. Kiln's reads go
// to POST /v1/features, to gRPC GetFeatures, or, in Feast's shape, to
// Feast's POST /get-online-features (one row per post, each carrying the
// user), so that the two HTTP APIs compare at the same rates. It charges
// server CPU from GET /debug/stats, then writes a table, results.json and
// latency.svg. The client does no per-request generation work: every
// request body is built before the clock starts.
//
// WriteTargets writes the same requests of Q1 and Q2, for the same
// configuration, as files of vegeta's JSON targets, so that an independent
// load generator can send them (scripts/vegeta-rw1.sh runs vegeta with
// them).
//
// With Config.Overload it adds the overload step: for Q1 and Q2, the
// saturation rate S of a closed loop, then Kiln open loop at S/2 and at
// multiples of S (2× and 5× by default). Refusals by admission control
// (429, RESOURCE_EXHAUSTED) are counted apart from errors, with latencies
// of their own, so the step reports the refusals' p99, the admitted
// requests' p99 beside their p99 at S/2, and the goodput over S.
//
// # The ingestion benchmark
//
// RunIngest measures, each phase against a server of its own on the
// embedded store, push throughput per server core, Kafka throughput per
// core from a backlog in an in-process broker (franz-go's kfake), and
// freshness while Q2 runs, against the ingestion targets.
//
// # Shared parts
//
// Both start and stop the server the same way (server.go, harness.go),
// sample latencies into the same histograms and the server's resources
// between the same marks (sample.go), check their configuration alike
// (config.go) and write results.json the same way (report.go).
package bench
