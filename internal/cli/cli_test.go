package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseFlagsAndExitCodes(t *testing.T) {
	parse := func(args ...string) error {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 0, "")
		return ParseFlags(fs, args, io.Discard)
	}
	for _, c := range []struct {
		args []string
		code int // 0: no error
	}{
		{[]string{"-n", "3"}, 0},
		{[]string{"-nope"}, 2},
		{[]string{"-n", "x"}, 2},
		{[]string{"extra"}, 2},
	} {
		err := parse(c.args...)
		if c.code == 0 {
			if err != nil {
				t.Errorf("%v: %v", c.args, err)
			}
			continue
		}
		if err == nil || ExitCode(err) != c.code {
			t.Errorf("%v: %v (exit %d), want exit %d", c.args, err, ExitCode(err), c.code)
		}
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v is not a usage error", c.args, err)
		}
	}
	if ExitCode(errors.New("failed")) != 1 {
		t.Error("a failure does not exit with 1")
	}
	if ExitCode(nil) != 0 {
		t.Error("success does not exit with 0")
	}
}

// Help that is asked for is no error: it goes to stdout, starts with the
// line saying what the subcommand does, and exits 0. A bad flag's message
// and the help go to stderr.
func TestHelpExitsZeroOnStdout(t *testing.T) {
	newFlags := func(stderr io.Writer) *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Int("n", 0, "how many")
		SetUsage(fs, "x: do the thing", "usage: x [flags]\n")
		return fs
	}
	for _, arg := range []string{"-h", "--help", "-help"} {
		var stdout, stderr bytes.Buffer
		err := ParseFlags(newFlags(&stderr), []string{arg}, &stdout)
		if !errors.Is(err, flag.ErrHelp) || ExitCode(err) != 0 {
			t.Errorf("%s: %v (exit %d), want flag.ErrHelp (exit 0)", arg, err, ExitCode(err))
		}
		if !strings.HasPrefix(stdout.String(), "x: do the thing\n\nusage: x [flags]\n") || !strings.Contains(stdout.String(), "how many") {
			t.Errorf("%s: stdout %q is not the help", arg, stdout.String())
		}
		if stderr.Len() > 0 {
			t.Errorf("%s: stderr %q", arg, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if err := ParseFlags(newFlags(&stderr), []string{"-nope"}, &stdout); ExitCode(err) != 2 {
		t.Errorf("-nope: %v", err)
	}
	if stdout.Len() > 0 || !strings.Contains(stderr.String(), "not defined: -nope") || !strings.Contains(stderr.String(), "x: do the thing") {
		t.Errorf("-nope: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	fs := newFlags(io.Discard)
	if err := ParseFlagsArgs(fs, []string{"-n", "2", "a"}, 1, io.Discard); err != nil || fs.Arg(0) != "a" {
		t.Errorf("one argument allowed: %v %v", err, fs.Args())
	}
	if err := ParseFlagsArgs(newFlags(io.Discard), []string{"a", "b"}, 1, io.Discard); ExitCode(err) != 2 {
		t.Errorf("two arguments where one is allowed: %v", err)
	}
}
