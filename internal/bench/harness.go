package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// harness is what both benchmarks hold: the RW1 project and the encoding of
// its events as pushes, the progress log, the client of the server's
// control endpoints, and the server under test.
type harness struct {
	name    string // prefixes the progress lines
	log     io.Writer
	project *definition.Project
	enc     *pushEncoder
	ctl     *http.Client
	srv     *server // nil while no server runs
}

// newHarness parses the RW1 project and creates outDir (if not empty). A
// nil log discards the progress lines.
func newHarness(name string, log io.Writer, outDir string, ctl *http.Client) (harness, error) {
	h := harness{name: name, log: log, ctl: ctl}
	if h.log == nil {
		h.log = io.Discard
	}
	var err error
	if h.project, err = projectfile.Parse(examples.FeedProjectName, examples.FeedProject); err != nil {
		return h, err
	}
	src := h.project.Source(workload.SourceName)
	if src == nil {
		return h, fmt.Errorf("%s: the RW1 project has no source %s", name, workload.SourceName)
	}
	h.enc = newPushEncoder(src.Name, src.EventTime)
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return h, err
		}
	}
	return h, nil
}

// logf writes a progress line.
func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, h.name+": "+format+"\n", args...)
}

// launch starts argv (a kiln binary and "serve") on projectFile and
// dataDir (grpc: with the gRPC API too) and waits until it is ready.
func (h *harness) launch(ctx context.Context, argv []string, projectFile, dataDir string, grpc bool) error {
	srv, err := startServer(ctx, argv, projectFile, dataDir, grpc, h.log)
	if err != nil {
		return err
	}
	h.srv = srv
	h.logf("started %s", strings.Join(srv.command, " "))
	return srv.waitReady(ctx, h.ctl)
}

// stopServer stops the server the harness started, if one runs.
func (h *harness) stopServer() {
	if h.srv == nil || h.srv.cmd == nil {
		return
	}
	h.logf("stopping the server")
	if err := h.srv.stop(); err != nil {
		h.logf("stopping the server: %v", err)
	}
	h.srv = nil
}
