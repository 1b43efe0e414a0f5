package main

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/cli"
)

// The server binary links neither the benchmarks nor the in-process Kafka
// broker they use (those are cmd/kiln-bench's), nor the browser driver of
// the dashboard's test.
func TestServerLinksNoBenchmark(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, dep := range deps {
		if dep == "github.com/kiln-dev/kiln/internal/bench" || strings.HasPrefix(dep, "github.com/twmb/franz-go/pkg/kfake") ||
			strings.HasPrefix(dep, "github.com/chromedp/") {
			t.Errorf("the server binary links %s", dep)
		}
	}
}

// "kiln bench" is a usage error that says where the benchmarks are now.
func TestBenchNamesItsCommand(t *testing.T) {
	err := run(context.Background(), []string{"bench", "ingest"}, io.Discard, io.Discard)
	if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "go run ./cmd/kiln-bench") {
		t.Errorf("kiln bench ingest: %v (exit %d), want a usage error naming go run ./cmd/kiln-bench", err, cli.ExitCode(err))
	}
}
