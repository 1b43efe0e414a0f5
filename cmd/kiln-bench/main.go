// Command kiln-bench runs Kiln's benchmarks against a kiln server it starts
// as a child process (docs/benchmarks.md has the measured figures,
// docs/workload.md the workload they run):
//
//	kiln-bench [flags]          the RW1 read benchmark: latency and throughput
//	                            of Q1 and Q2 beside the floor (the store's raw
//	                            multi-get of the same rows)
//	kiln-bench ingest [flags]   ingestion: push API, Kafka, freshness
//	kiln-bench targets [flags]  the RW1 benchmark's reads as targets of the
//	                            vegeta load generator
//	kiln-bench help [CMD]       the help of any of them
//
// The benchmarks live in their own command so that the server binary links
// neither them nor the in-process Kafka broker they use. The kiln binary the
// benchmarks start comes from --kiln; without it, inside Kiln's source tree
// kiln-bench builds ./cmd/kiln with "go build" into a temporary directory
// (so it measures the code at hand), and elsewhere it takes the kiln beside
// its own executable, or else the one on PATH.
//
// Run "kiln-bench -h", "kiln-bench ingest -h" or "kiln-bench targets -h"
// (or "kiln-bench help [ingest|targets]") for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-dev/kiln/internal/cli"
)

func main() { cli.Main("kiln-bench", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ingest" {
		return runIngest(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "targets" {
		return runTargets(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "help" {
		return runHelp(ctx, args[1:], stdout, stderr)
	}
	return runRW1(ctx, args, stdout, stderr)
}

// runHelp is "kiln-bench help [ingest|targets]": the help of the RW1
// benchmark or of the subcommand, as their -h writes it, on stdout; exit 0.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var err error
	switch {
	case len(args) == 0:
		err = runRW1(ctx, []string{"-h"}, stdout, stderr)
	case len(args) == 1 && args[0] == "ingest":
		err = runIngest(ctx, []string{"-h"}, stdout, stderr)
	case len(args) == 1 && args[0] == "targets":
		err = runTargets(ctx, []string{"-h"}, stdout, stderr)
	default:
		return fmt.Errorf("%w: kiln-bench help takes nothing, ingest or targets, not %q", cli.ErrUsage, strings.Join(args, " "))
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// kilnFlagUsage and kilnHelp say, in both commands' help, which kiln
// binary they start.
const (
	kilnFlagUsage = `the kiln binary to start the servers with (default: inside Kiln's source tree, ./cmd/kiln built with "go build" into a temporary directory; elsewhere the kiln beside this executable, or on PATH)`
	kilnHelp      = `The kiln binary it starts is --kiln; without it, inside Kiln's source tree
./cmd/kiln is built with "go build" into a temporary directory, and
elsewhere the kiln beside this executable, or else on PATH, is started.
`
)
