package main

import (
	"context"
	"flag"
	"io"
	"strings"

	"github.com/kiln-dev/kiln/internal/bench"
	"github.com/kiln-dev/kiln/internal/cli"
)

// runIngest is "kiln-bench ingest": ingestion throughput and freshness
// against the ingestion targets.
func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := bench.DefaultIngestConfig()
	fs := flag.NewFlagSet("kiln-bench ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln-bench ingest: measure ingestion (push API, Kafka, freshness) against kiln servers it starts", `usage: kiln-bench ingest [flags]

Measures ingestion on the embedded store (Pebble), or the one
--online-store names, each phase against a "kiln serve" child process on
the RW1 project:

  push       RW1 events POSTed to /v1/push in batches from several
             connections for a fixed period: events/s per server core
  kafka      a backlog of RW1 events in an in-process Kafka (kfake), read by
             the project's engagements source turned into a kafka source:
             events/s per server core until the lag is 0
  freshness  a new server on the kafka phase's data and group; RW1 events
             produced at a steady rate while Q2 runs open loop: the server's
             freshness_ms (record timestamp to durable and visible) and Q2's
             latency

Prints a table against the ingestion targets (push ≥ 500,000 events/s per
server core, Kafka ≥ 200,000 events/s per core, freshness p99 ≤ 100 ms;
docs/workload.md) and writes results.json to --out.

`+kilnHelp)
	phases := fs.String("phases", strings.Join(def.Phases, ","), "phases to run, comma-separated: push, kafka, freshness (freshness needs kafka), archive (push without and with the event archive, alternated; not a default)")
	archiveRounds := fs.Int("archive-rounds", def.ArchiveRounds, "archive phase: push runs without the event archive, and as many with it")
	data := fs.String("data", "", "directory for the servers' data directories (default: a temporary one, removed at the end)")
	scale := fs.Float64("scale", def.Scale, "RW1 scale factor S (S×100,000 users, S×1,000,000 posts)")
	seed := fs.Uint64("seed", def.Seed, "seed of the events and Q2's draws")
	pushConns := fs.Int("push-conns", def.PushConns, "concurrent push connections, each pushing back to back")
	pushBatch := fs.Int("push-batch", def.PushBatch, "events per push (at most 10000)")
	pushPool := fs.Int("push-pool", def.PushPool, "events encoded before the push phase and pushed in turn (cycled if the phase is longer)")
	pushDuration := fs.Duration("push-duration", def.PushDuration, "measured period of the push phase")
	pushWarmup := fs.Duration("push-warmup", def.PushWarmup, "unmeasured pushing before it")
	kafkaEvents := fs.Int("kafka-events", def.KafkaEvents, "events produced to Kafka before the kafka phase's server starts")
	kafkaPartitions := fs.Int("kafka-partitions", def.KafkaPartitions, "partitions of the topic")
	kafkaTimeout := fs.Duration("kafka-timeout", def.KafkaTimeout, "longest wait for the server to apply the backlog")
	freshRate := fs.Float64("fresh-rate", def.FreshRate, "events/s produced during the freshness phase")
	q2Rate := fs.Float64("q2-rate", def.Q2Rate, "Q2 requests/s (open loop) during the freshness phase")
	freshDuration := fs.Duration("fresh-duration", def.FreshDuration, "measured period of the freshness phase")
	freshWarmup := fs.Duration("fresh-warmup", def.FreshWarmup, "unrecorded Q2 warm-up before it (events are produced from its start)")
	inFlight := fs.Int("max-in-flight", def.MaxInFlight, "most Q2 requests in flight")
	timeout := fs.Duration("timeout", def.RequestTimeout, "timeout of each Q2 request")
	profile := fs.Duration("profile", 0, "take a server CPU profile of this length in each phase's measured period, into --out/<phase>.pprof (0: none)")
	out := fs.String("out", "kiln-bench-ingest", "directory for results.json")
	serverFlags := fs.String("server-flags", "", `more flags for each "kiln serve" the bench starts, space-separated (e.g. "--partitions=2" or "--write-through")`)
	onlineStore := fs.String("online-store", "", `the online_store of the servers' project files, as a project file writes it, like "{type: redis, addrs: [127.0.0.1:6379], durability: replicated}" (default: the embedded store; a Redis store is not emptied between phases or runs)`)
	kiln := fs.String("kiln", "", kilnFlagUsage)
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	cfg := def
	cfg.Phases = nil
	for p := range strings.SplitSeq(*phases, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Phases = append(cfg.Phases, p)
		}
	}
	cfg.DataDir, cfg.Scale, cfg.Seed, cfg.OnlineStore = *data, *scale, *seed, *onlineStore
	cfg.PushConns, cfg.PushBatch, cfg.PushPool, cfg.PushDuration, cfg.PushWarmup = *pushConns, *pushBatch, *pushPool, *pushDuration, *pushWarmup
	cfg.KafkaEvents, cfg.KafkaPartitions, cfg.KafkaTimeout = *kafkaEvents, *kafkaPartitions, *kafkaTimeout
	cfg.ArchiveRounds = *archiveRounds
	cfg.FreshRate, cfg.Q2Rate, cfg.FreshDuration, cfg.FreshWarmup = *freshRate, *q2Rate, *freshDuration, *freshWarmup
	cfg.MaxInFlight, cfg.RequestTimeout, cfg.Profile, cfg.OutDir = *inFlight, *timeout, *profile, *out
	cfg.Log = stderr
	if err := cfg.Check(); err != nil {
		return finish(nil, err, stdout, "")
	}
	bin, cleanup, err := kilnBinary(*kiln, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.ServerCommand = append([]string{bin, "serve"}, strings.Fields(*serverFlags)...)
	cfg.Command = strings.Join(append([]string{"kiln-bench", "ingest"}, args...), " ")
	rep, err := bench.RunIngest(ctx, cfg)
	if rep == nil {
		return finish(nil, err, stdout, "")
	}
	return finish(rep, err, stdout, filesIn("results.json is", *out))
}
