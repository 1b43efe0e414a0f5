// Command kiln runs the Kiln feature store.
//
//	kiln demo                          the example project with a synthetic event stream
//	kiln serve -c kiln.yaml --data DIR serve a project on the embedded store
//	kiln rebuild -c kiln.yaml --view V rebuild a view from the event archive, offline
//	kiln validate kiln.yaml            check a project file and print its tile plan
//	kiln import -c kiln.yaml FILE...   load a source's history into the archive
//	kiln training-set -c kiln.yaml ... point-in-time values for a spine, from the archive
//	kiln token --name N --scopes S     make a bearer token for kiln serve --token-file
//	kiln version                       the build: version, revision, Go version
//	kiln help [command]                the usage, or a command's help
//
// Run "kiln help <command>" or "kiln <command> -h" for a command's flags.
//
// The benchmarks are a command of their own, cmd/kiln-bench, so that this
// binary links neither them nor the in-process Kafka broker they use; "kiln
// bench" says so. The RW1 workload generator (internal/workload) is linked
// only because "kiln demo" draws its synthetic event stream from it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/version"
)

const usage = `kiln: a real-time feature store

usage:
  kiln demo [flags]                    run the example project with a synthetic event stream
  kiln serve -c kiln.yaml [flags]      serve a project (embedded store in --data)
  kiln rebuild -c kiln.yaml --view V   rebuild a changed view from the event archive, offline
  kiln validate kiln.yaml              check a project file and print its tile plan
  kiln import -c kiln.yaml FILE...     load a source's history from Parquet, CSV or JSON lines files
  kiln training-set -c kiln.yaml ...   point-in-time feature values for a spine of keys and times, from the archive
  kiln token --name N --scopes S       make a bearer token for kiln serve --token-file
  kiln version                         the version, VCS revision and Go version of this binary
  kiln help [command]                  this help, or a command's

Run "kiln help <command>" or "kiln <command> -h" for a command's flags.
Docs: docs/ in the repository.
`

// benchMoved says where the benchmarks went.
const benchMoved = "the benchmarks are a command of their own: run them with go run ./cmd/kiln-bench (-h for the flags) in Kiln's source tree"

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
	case "rebuild":
		return runRebuild(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "training-set":
		return runTrainingSet(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(args[1:], stdout, stderr)
	case "bench":
		return fmt.Errorf("%w: %s", cli.ErrUsage, benchMoved)
	case "version", "-version", "--version":
		if len(args) > 1 {
			return fmt.Errorf("%w: kiln version takes no arguments", cli.ErrUsage)
		}
		fmt.Fprintln(stdout, version.Get())
		return nil
	case "help", "-h", "-help", "--help":
		return runHelp(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", cli.ErrUsage, args[0])
}

// runHelp is "kiln help [command]": the command's help, as its -h writes
// it, on stdout; exit 0.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: kiln help takes one command, not %q", cli.ErrUsage, strings.Join(args, " "))
	}
	if len(args) == 0 || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "kiln version (or kiln --version): print the version, VCS revision and Go version of this binary")
		return nil
	case "demo", "serve", "rebuild", "validate", "import", "training-set", "token":
		err := run(ctx, []string{args[0], "-h"}, stdout, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	case "bench":
		fmt.Fprintf(stdout, "kiln bench: %s\n", benchMoved)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", cli.ErrUsage, args[0])
}
