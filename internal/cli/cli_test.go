package cli

import (
	"errors"
	"flag"
	"io"
	"testing"
)

func TestParseFlagsAndExitCodes(t *testing.T) {
	parse := func(args ...string) error {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 0, "")
		return ParseFlags(fs, args)
	}
	for _, c := range []struct {
		args []string
		code int // 0: no error
	}{
		{[]string{"-n", "3"}, 0},
		{[]string{"-nope"}, 2},
		{[]string{"-n", "x"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-h"}, 2},
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
		if c.args[0] != "-h" && !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v is not a usage error", c.args, err)
		}
	}
	if ExitCode(errors.New("failed")) != 1 {
		t.Error("a failure does not exit with 1")
	}
}
