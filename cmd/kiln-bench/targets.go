package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kiln-dev/kiln/internal/bench"
	"github.com/kiln-dev/kiln/internal/cli"
)

// runTargets is "kiln-bench targets": the RW1 reads as vegeta's targets.
func runTargets(_ context.Context, args []string, stdout, stderr io.Writer) error {
	def := bench.DefaultConfig()
	fs := flag.NewFlagSet("kiln-bench targets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln-bench targets: write the RW1 reads as targets of the vegeta load generator", `usage: kiln-bench targets [flags]

Writes into --out the requests of POST /v1/features that kiln-bench sends
with the same --scale, --seed, --q1-rates, --q2-rates, --duration and
--warmup (the same draws, in the same order), for another load generator
to send to the server at --target, and the RW1 project they read:

  q1.json, q2.json  vegeta's JSON targets (vegeta attack -format=json), one
                    request a line; a step at rate R sends the first
                    R×warmup lines in its warm-up, then the next R×duration
  kiln.yaml         the RW1 project: "kiln serve -c DIR/kiln.yaml --data
                    DATA" serves a data directory kiln-bench loaded
                    ("kiln-bench --data DATA" keeps it) with the same
                    --scale and --seed

scripts/vegeta-rw1.sh runs vegeta with them (docs/benchmarks.md).
`)
	draws := addDrawFlags(fs, def)
	target := fs.String("target", "http://127.0.0.1:7070", "base URL of the kiln server the targets name")
	out := fs.String("out", "kiln-bench-targets", "directory to write q1.json, q2.json and kiln.yaml into")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	cfg := def
	if err := draws.apply(&cfg); err != nil {
		return err
	}
	t, err := bench.WriteTargets(*out, *target, cfg)
	if err != nil {
		return finish(nil, err, stdout, "")
	}
	fmt.Fprintf(stdout, "%d Q1 requests in %s, %d Q2 requests in %s, the RW1 project in %s\n",
		t.Q1Requests, filepath.Join(t.Dir, bench.TargetsQ1File), t.Q2Requests, filepath.Join(t.Dir, bench.TargetsQ2File),
		filepath.Join(t.Dir, bench.TargetsProjectFile))
	return nil
}
