package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/bench"
	"github.com/kiln-dev/kiln/internal/cli"
)

// runRW1 is "kiln-bench": the RW1 read benchmark.
func runRW1(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := bench.DefaultConfig()
	fs := flag.NewFlagSet("kiln-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln-bench: run the RW1 read benchmark against a kiln server it starts", `usage: kiln-bench [flags]
       kiln-bench ingest [flags]   (ingestion throughput and freshness; see kiln-bench help ingest)
       kiln-bench targets [flags]  (these reads as vegeta's targets; see kiln-bench help targets)

Runs the RW1 read benchmark (docs/workload.md): starts "kiln serve" on the
RW1 project (or uses --target), loads the history through POST /v1/push,
then measures Q1 and Q2 open loop at each rate, Kiln and then the floor (the
store's raw multi-get of the same rows, POST /debug/rows or the Diagnostics
service's GetRows on the server's admin listener) with the same requests,
and a Q2 saturation step. Each step reports p50 to p99.99 and the max, and
the server's GC pauses during it: their total and the longest.
--overload adds the overload step (Q1 and Q2 at 2× and 5× their saturation
rate: refusals' and admitted requests' latency, goodput).
--transport feast sends Kiln's reads to Feast's POST /get-online-features
instead of POST /v1/features. Prints a table and writes results.json and
latency.svg to --out.

`+kilnHelp)
	target := fs.String("target", "", "base URL of a running kiln server with the RW1 project (default: start one)")
	grpcTarget := fs.String("grpc-target", "", "host:port of --target's gRPC API (with --transport grpc)")
	adminTarget := fs.String("admin-target", "", "base URL of --target's admin listener (kiln serve --admin-addr, like http://127.0.0.1:7072): the floor, the server's stats and GC pauses are read there, and gRPC Diagnostics with --transport grpc")
	data := fs.String("data", "", "data directory of the started server (default: a temporary one, removed at the end)")
	transport := fs.String("transport", def.Transport, "transport of Kiln's reads and the floor's: http (POST /v1/features), grpc, or feast (the same requests through Feast's POST /get-online-features; the floor stays POST /debug/rows)")
	draws := addDrawFlags(fs, def)
	skipLoad := fs.Bool("skip-load", false, "do not load the history (for a --target already loaded)")
	pushers := fs.Int("pushers", def.Pushers, "concurrent history pushes")
	batch := fs.Int("batch", def.BatchEvents, "events per history push (at most 10000)")
	settle := fs.Duration("settle", def.Settle, "longest wait after loading for the server to go quiet (0: none)")
	live := fs.Float64("live", def.Live, "live events per second pushed during the measurements (0: none)")
	baseline := fs.Duration("baseline", def.Baseline, "period before the first step that measures the server's CPU with only the live stream, and the load generator's own lateness (0: skip)")
	workers := fs.Int("saturation-workers", def.SaturationWorkers, "closed-loop workers of the Q2 saturation step (0: skip it)")
	inFlight := fs.Int("max-in-flight", def.MaxInFlight, "most requests in flight in an open-loop step (a request due while the bound is reached waits, and its latency still counts from its due time)")
	timeout := fs.Duration("timeout", def.RequestTimeout, "timeout of each read request")
	overload := fs.Bool("overload", false, "add the overload step: for Q1 and Q2, the saturation rate S (closed loop of --saturation-workers, at least 32), then Kiln at S/2 and at each of --overload-factors × S, open loop (replaces the Q2 saturation step; give --q1-rates= --q2-rates= to run it alone)")
	factors := fs.String("overload-factors", joinRates(def.OverloadFactors), "multiples of the saturation rate the overload step offers, comma-separated")
	overloadQueries := fs.String("overload-queries", "Q1,Q2", "queries of the overload step, comma-separated")
	out := fs.String("out", "kiln-bench", "directory for results.json and latency.svg")
	kiln := fs.String("kiln", "", kilnFlagUsage)
	trickle := fs.Int("trickle", 0, "slow clients kept connected through the measurements, each sending a push body a byte every --trickle-every (the server's --http-read-timeout cuts them off)")
	trickleEvery := fs.Duration("trickle-every", def.TrickleEvery, "how often each --trickle client sends a byte")
	serverArgs := fs.String("server-args", "", "more flags for the started kiln serve, separated by spaces (e.g. \"--http-read-timeout 10s\")")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	cfg := def
	cfg.Target, cfg.GRPCTarget, cfg.AdminTarget, cfg.DataDir, cfg.Transport = *target, *grpcTarget, *adminTarget, *data, *transport
	cfg.SkipLoad, cfg.Pushers, cfg.BatchEvents = *skipLoad, *pushers, *batch
	cfg.Settle, cfg.Live, cfg.Baseline = *settle, *live, *baseline
	cfg.SaturationWorkers, cfg.MaxInFlight, cfg.RequestTimeout, cfg.OutDir = *workers, *inFlight, *timeout, *out
	cfg.Trickle, cfg.TrickleEvery = *trickle, *trickleEvery
	cfg.Overload = *overload
	for _, q := range strings.Split(*overloadQueries, ",") {
		if q = strings.ToUpper(strings.TrimSpace(q)); q != "" {
			cfg.OverloadQueries = append(cfg.OverloadQueries, q)
		}
	}
	cfg.Log = stderr
	cfg.Command = strings.Join(append([]string{"kiln-bench"}, args...), " ")
	if err := draws.apply(&cfg); err != nil {
		return err
	}
	var err error
	if cfg.OverloadFactors, err = parseRates("overload-factors", *factors); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return finish(nil, err, stdout, "")
	}
	if cfg.Target == "" {
		bin, cleanup, err := kilnBinary(*kiln, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		cfg.ServerCommand = append([]string{bin, "serve"}, strings.Fields(*serverArgs)...)
	}
	rep, err := bench.Run(ctx, cfg)
	if rep == nil {
		return finish(nil, err, stdout, "")
	}
	return finish(rep, err, stdout, filesIn("results.json and latency.svg are", *out))
}

// drawFlags are the flags that decide which requests of Q1 and Q2 a run
// sends, in kiln-bench and in kiln-bench targets alike.
type drawFlags struct {
	scale            *float64
	seed             *uint64
	q1Rates, q2Rates *string
	duration, warmup *time.Duration
}

func addDrawFlags(fs *flag.FlagSet, def bench.Config) *drawFlags {
	return &drawFlags{
		scale:    fs.Float64("scale", def.Scale, "RW1 scale factor S (S×100,000 users, S×1,000,000 posts, S×20,000,000 history events)"),
		seed:     fs.Uint64("seed", def.Seed, "seed of the history, the live stream and the query draws"),
		q1Rates:  fs.String("q1-rates", joinRates(def.Q1Rates), "Q1 offered rates, requests/s, comma-separated (empty: skip Q1)"),
		q2Rates:  fs.String("q2-rates", joinRates(def.Q2Rates), "Q2 offered rates, requests/s, comma-separated (empty: skip Q2)"),
		duration: fs.Duration("duration", def.Duration, "measured period of each step"),
		warmup:   fs.Duration("warmup", def.Warmup, "unrecorded warm-up before each step"),
	}
}

// apply sets the parsed flags in cfg.
func (d *drawFlags) apply(cfg *bench.Config) error {
	cfg.Scale, cfg.Seed, cfg.Duration, cfg.Warmup = *d.scale, *d.seed, *d.duration, *d.warmup
	var err error
	if cfg.Q1Rates, err = parseRates("q1-rates", *d.q1Rates); err != nil {
		return err
	}
	cfg.Q2Rates, err = parseRates("q2-rates", *d.q2Rates)
	return err
}

// filesIn says where a run's files are; "" when it writes none.
func filesIn(what, dir string) string {
	if dir == "" {
		return ""
	}
	return what + " in " + dir
}

// report is what both benchmarks' reports print.
type report interface{ PrintSummary(io.Writer) }

// finish prints a run's report, if any, and where its files are (files ""
// when there are none), and turns the run's error into the command's.
func finish(rep report, err error, stdout io.Writer, files string) error {
	if errors.Is(err, bench.ErrConfig) {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if rep != nil {
		fmt.Fprintln(stdout)
		rep.PrintSummary(stdout)
		if files != "" {
			fmt.Fprintf(stdout, "\n%s\n", files)
		}
	}
	if err != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}

// parseRates parses a comma-separated list of positive rates.
func parseRates(name, s string) ([]float64, error) {
	var rates []float64
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || !(r > 0) {
			return nil, fmt.Errorf("%w: --%s: %q is not a positive number of requests per second", cli.ErrUsage, name, f)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

func joinRates(rates []float64) string {
	s := make([]string, len(rates))
	for i, r := range rates {
		s[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strings.Join(s, ",")
}
