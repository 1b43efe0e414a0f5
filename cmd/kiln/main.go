// Command kiln runs the Kiln feature store.
//
//	kiln demo                          the example project with a synthetic event stream
//	kiln serve -c kiln.yaml --data DIR serve a project on the embedded store
//	kiln validate -c kiln.yaml         check a project file and print its tile plan
//
// Run "kiln <command> -h" for a command's flags.
//
// The benchmarks are a command of their own, cmd/kiln-bench, so that this
// binary links neither them nor the in-process Kafka broker they use; "kiln
// bench" says so. The RW1 workload generator (internal/workload) is linked
// only because "kiln demo" draws its synthetic event stream from it.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/kiln-dev/kiln/internal/cli"
)

const usage = `kiln: a real-time feature store

usage:
  kiln demo [flags]                    run the example project with a synthetic event stream
  kiln serve -c kiln.yaml [flags]      serve a project (embedded store in --data)
  kiln validate -c kiln.yaml           check a project file and print its tile plan

Run "kiln <command> -h" for a command's flags. Docs: docs/ in the repository.
`

func main() { cli.Main("kiln", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: name a command", cli.ErrUsage)
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "bench":
		return fmt.Errorf("%w: the benchmarks are a command of their own: run them with go run ./cmd/kiln-bench (-h for the flags) in Kiln's source tree", cli.ErrUsage)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", cli.ErrUsage, args[0])
}
