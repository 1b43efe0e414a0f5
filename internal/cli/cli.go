// Package cli owns what Kiln's commands (cmd/kiln, cmd/kiln-bench) share
// around their subcommands: running one with the process's arguments and
// streams until SIGINT or SIGTERM, usage errors and their exit code, and
// parsing a subcommand's flags.
package cli

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

// ErrUsage marks errors in how a command was called: they exit with 2.
var ErrUsage = errors.New("usage")

// Run is a command: it reads args (without the program name), writes to
// stdout and stderr, and returns when done or when ctx is cancelled.
type Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs run with the process's arguments and standard streams,
// cancelling its context on SIGINT or SIGTERM. An error is printed after
// "name: " (not for -h) and the process exits with ExitCode.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		os.Exit(ExitCode(err))
	}
}

// ExitCode is 2 for a usage error or a request for help, 1 otherwise.
func ExitCode(err error) int {
	if errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// ParseFlags parses a subcommand's flags; extra arguments are a usage
// error, and so is a bad flag. -h returns flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	return nil
}
