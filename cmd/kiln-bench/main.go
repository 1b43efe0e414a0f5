// Command kiln-bench runs Kiln's benchmarks against a kiln server it starts
// as a child process (docs/benchmarks.md has the measured figures,
// docs/workload.md the workload they run):
//
//	kiln-bench [flags]          the RW1 read benchmark: latency and throughput
//	                            of Q1 and Q2 beside the floor (the store's raw
//	                            multi-get of the same rows)
//	kiln-bench ingest [flags]   ingestion: push API, Kafka, freshness
//
// The benchmarks live in their own command so that the server binary links
// neither them nor the in-process Kafka broker they use. The kiln binary the
// benchmarks start comes from --kiln; without it, inside Kiln's source tree
// kiln-bench builds ./cmd/kiln with "go build" into a temporary directory
// (so it measures the code at hand), and elsewhere it takes the kiln beside
// its own executable, or else the one on PATH.
//
// Run "kiln-bench -h" or "kiln-bench ingest -h" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kiln-bench:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks errors in how kiln-bench was called.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ingest" {
		return runIngest(ctx, args[1:], stdout, stderr)
	}
	return runRW1(ctx, args, stdout, stderr)
}

// parseFlags parses a command's flags; extra arguments are an error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// kilnFlagUsage is the help of --kiln, the same in both commands.
const kilnFlagUsage = `the kiln binary to start the servers with (default: inside Kiln's source tree, ./cmd/kiln built with "go build" into a temporary directory; elsewhere the kiln beside this executable, or on PATH)`
