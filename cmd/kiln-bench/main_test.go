package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/cli"
)

// buildBinaries builds kiln-bench and kiln once for the subprocess tests.
func buildBinaries(t *testing.T) (benchBin, kilnBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := t.TempDir()
	benchBin, kilnBin = filepath.Join(dir, "kiln-bench"), filepath.Join(dir, "kiln")
	for _, b := range []struct{ out, pkg string }{{benchBin, "."}, {kilnBin, "../kiln"}} {
		if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return benchBin, kilnBin
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--nope"}, {"extra"}, {"--scale", "0"}, {"--q1-rates", "fast"},
		{"ingest", "--nope"}, {"ingest", "--phases", "freshness"}, {"ingest", "--scale", "-1"},
		{"targets", "extra"}, {"targets", "--target", "127.0.0.1:7070"}, {"targets", "--q2-rates", "0"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 {
			t.Errorf("kiln-bench %v: %v (exit %d), want a usage error (exit 2)", args, err, cli.ExitCode(err))
		}
	}
}

// Both commands' help names --kiln and where the kiln binary comes from.
func TestHelpNamesTheKilnBinary(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"ingest", "-h"}} {
		var stdout bytes.Buffer
		run(context.Background(), args, &stdout, io.Discard)
		for _, want := range []string{"-kiln", "./cmd/kiln", "PATH"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("kiln-bench %v: the help lacks %q:\n%s", args, want, stdout.String())
			}
		}
	}
}

// Help asked for goes to stdout, starts with a line saying what the
// command does, and exits 0.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args  []string
		first string
	}{
		{[]string{"-h"}, "kiln-bench: run the RW1 read benchmark"},
		{[]string{"--help"}, "kiln-bench: run the RW1 read benchmark"},
		{[]string{"help"}, "kiln-bench: run the RW1 read benchmark"},
		{[]string{"ingest", "-h"}, "kiln-bench ingest: measure ingestion"},
		{[]string{"ingest", "--help"}, "kiln-bench ingest: measure ingestion"},
		{[]string{"help", "ingest"}, "kiln-bench ingest: measure ingestion"},
		{[]string{"targets", "-h"}, "kiln-bench targets: write the RW1 reads"},
		{[]string{"help", "targets"}, "kiln-bench targets: write the RW1 reads"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), c.args, &stdout, &stderr)
		if code := cli.ExitCode(err); code != 0 {
			t.Errorf("kiln-bench %v: %v (exit %d), want exit 0", c.args, err, code)
		}
		if first, _, _ := strings.Cut(stdout.String(), "\n"); !strings.HasPrefix(first, c.first) {
			t.Errorf("kiln-bench %v: help starts %q, want %q", c.args, first, c.first)
		}
		if stderr.Len() > 0 {
			t.Errorf("kiln-bench %v: stderr %q", c.args, stderr.String())
		}
	}
	if err := run(context.Background(), []string{"help", "nope"}, io.Discard, io.Discard); cli.ExitCode(err) != 2 {
		t.Errorf("kiln-bench help nope: %v, want a usage error", err)
	}
}

// kiln-bench targets writes the three files it names, for the server at
// --target.
func TestTargets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"targets", "--out", dir, "--target", "http://127.0.0.1:7171",
		"--scale", "0.001", "--q1-rates", "50", "--q2-rates", "10", "--duration", "3s", "--warmup", "1s"}, &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := "200 Q1 requests in " + filepath.Join(dir, "q1.json") + ", 40 Q2 requests in "; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("stdout %q, want it to start %q", stdout.String(), want)
	}
	for _, name := range []string{"q1.json", "q2.json", "kiln.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name != "kiln.yaml" && !bytes.Contains(b, []byte(`"url":"http://127.0.0.1:7171/v1/features"`)) {
			t.Errorf("%s names no request to --target's /v1/features: %.200s", name, b)
		}
	}
}

func TestKilnBinary(t *testing.T) {
	if _, _, err := kilnBinary(filepath.Join(t.TempDir(), "no-such-kiln"), io.Discard); err == nil {
		t.Error("a --kiln that does not exist was taken")
	}
	given := filepath.Join(t.TempDir(), "kiln")
	if err := os.WriteFile(given, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, _, err := kilnBinary(given, io.Discard); err != nil || got != given {
		t.Errorf("--kiln %s: %q, %v", given, got, err)
	}
}

// The source tree is found from any directory in it, and only Kiln's.
func TestSourceRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := sourceRoot(wd)
	if root == "" || filepath.Join(root, "cmd", "kiln-bench") != wd {
		t.Errorf("source root of %s: %q", wd, root)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644)
	os.MkdirAll(filepath.Join(other, "sub"), 0o755)
	if got := sourceRoot(filepath.Join(other, "sub")); got != "" {
		t.Errorf("another module's tree taken for Kiln's: %q", got)
	}
}
