// Package cli owns what Kiln's commands (cmd/kiln, cmd/kiln-bench) share
// around their subcommands: running one with the process's arguments and
// streams until SIGINT or SIGTERM, usage errors and their exit code, and
// parsing a subcommand's flags and writing its help.
package cli

import (
	"bytes"
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
// "name: " (not flag.ErrHelp, the help having been written) and the process
// exits with ExitCode.
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

// ExitCode is 0 for a request for help (flag.ErrHelp: the help was asked
// for and written), 2 for a usage error, 1 otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

// SetUsage sets a subcommand's help: summary, one line saying what it
// does, then text (the usage line and more, ending with a newline), then
// the flags. It goes to the flag set's output, so that ParseFlags sends it
// where it belongs.
func SetUsage(fs *flag.FlagSet, summary, text string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\n%s", summary, text)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
}

// ParseFlags parses a subcommand's flags; any argument after them is a
// usage error, and so is a bad flag (its message and the help go to the
// flag set's output, stderr). -h or --help writes the help to stdout and
// returns flag.ErrHelp, which exits 0.
func ParseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	return ParseFlagsArgs(fs, args, 0, stdout)
}

// ParseFlagsArgs is ParseFlags for a subcommand that takes up to maxArgs
// arguments after its flags (fs.Args).
func ParseFlagsArgs(fs *flag.FlagSet, args []string, maxArgs int, stdout io.Writer) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(buf.Bytes())
			return err
		}
		out.Write(buf.Bytes())
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > maxArgs {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(maxArgs))
	}
	return nil
}
