package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds on the child server's life, and on reading its state.
const (
	serverStartTimeout = 60 * time.Second
	serverStopTimeout  = 60 * time.Second
	stderrTailBytes    = 4 << 10
	readyTimeout       = 30 * time.Second
	readyPoll          = 50 * time.Millisecond
	statsTimeout       = 10 * time.Second
)

// server is the Kiln server under test: a child process this package
// started, or one running elsewhere (then stop does nothing).
type server struct {
	url      string // base URL of the HTTP API
	grpcAddr string // host:port of the gRPC API; "" if not served
	// adminURL is the base URL of the admin listener (/debug/stats,
	// /debug/rows, /metrics, the profiler); its host:port serves gRPC
	// Diagnostics too.
	adminURL string
	command  []string

	cmd    *exec.Cmd
	exited chan struct{} // closed once the child has exited
	err    error         // the child's exit status; read after exited is closed
	tail   *tailBuffer   // the end of the child's stderr, for errors
}

// startServer runs argv (a kiln binary and "serve") with the flags that
// serve the project file on the data directory, on loopback ports the
// kernel picks, and waits for the lines that say where it serves:
//
//	kiln: all: serving project feed from DIR on http://127.0.0.1:PORT
//	kiln: gRPC on 127.0.0.1:PORT
//	kiln: admin (metrics, profiler, diagnostics) on http://127.0.0.1:PORT
//
// grpc asks for the gRPC API too (without it, the server serves none). The
// child's log goes to logw.
func startServer(ctx context.Context, argv []string, projectFile, dataDir string, grpc bool, logw io.Writer) (*server, error) {
	grpcAddr := ""
	if grpc {
		grpcAddr = "127.0.0.1:0"
	}
	args := append(append([]string(nil), argv[1:]...),
		"-c", projectFile, "--data", dataDir, "--addr", "127.0.0.1:0", "--grpc-addr="+grpcAddr, "--admin-addr", "127.0.0.1:0", "--log-level", "warn")
	s := &server{exited: make(chan struct{}), tail: &tailBuffer{max: stderrTailBytes}}
	s.command = append([]string{argv[0]}, args...)
	cmd := exec.Command(argv[0], args...)
	setChildAttrs(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.MultiWriter(s.tail, &prefixWriter{w: logw, prefix: "server: "})
	s.cmd = cmd

	// The child is started on a goroutine locked to its thread, which
	// lives as long as the child: the parent-death signal (setChildAttrs)
	// fires when the thread that started the child ends, and the runtime
	// ends a thread whenever a goroutine locked to it exits.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.err = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting the server %s: %w", argv[0], err)
	}

	// Read stdout for the address lines, then keep draining it.
	type addrs struct{ url, grpc, admin string }
	found := make(chan addrs, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var a addrs
		sent := false
		for sc.Scan() {
			line := sc.Text()
			switch i := strings.Index(line, " on "); {
			case sent || i < 0:
			case strings.Contains(line, "serving project") && strings.HasPrefix(line[i+4:], "http://"):
				a.url = strings.TrimSpace(line[i+4:])
			case strings.HasPrefix(line, "kiln: gRPC on "):
				a.grpc = strings.TrimSpace(line[i+4:])
			case strings.HasPrefix(line, "kiln: admin ") && strings.HasPrefix(line[i+4:], "http://"):
				a.admin = strings.TrimSpace(line[i+4:])
			}
			if !sent && a.url != "" && a.admin != "" && (!grpc || a.grpc != "") {
				found <- a
				sent = true
			}
			fmt.Fprintf(logw, "server: %s\n", line)
		}
		io.Copy(io.Discard, stdout)
	}()
	timer := time.NewTimer(serverStartTimeout)
	defer timer.Stop()
	select {
	case a := <-found:
		s.url, s.grpcAddr, s.adminURL = a.url, a.grpc, a.admin
	case <-s.exited:
		return nil, fmt.Errorf("the server exited before serving (%v): %s", s.err, s.tail.String())
	case <-timer.C:
		s.stop()
		what := "its HTTP and admin addresses"
		if grpc {
			what = "its HTTP, gRPC and admin addresses"
		}
		return nil, fmt.Errorf("the server did not print %s within %v: %s", what, serverStartTimeout, s.tail.String())
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	return s, nil
}

// stop asks the child to shut down (SIGINT: it writes what it holds and
// closes the store) and kills it if it has not exited in time.
func (s *server) stop() error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.exited:
		return s.err
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	timer := time.NewTimer(serverStopTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
		return s.err
	case <-timer.C:
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("the server did not stop within %v and was killed", serverStopTimeout)
	}
}

// alive reports an error if the child has exited.
func (s *server) alive() error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.exited:
		return fmt.Errorf("the server exited (%v): %s", s.err, s.tail.String())
	default:
		return nil
	}
}

// adminAddr is the host:port of the admin listener.
func (s *server) adminAddr() string { return strings.TrimPrefix(s.adminURL, "http://") }

// serverStats is the part of GET /debug/stats the benchmarks read.
type serverStats struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	HeapBytes  int64   `json:"heap_bytes"`
	GCCycles   int64   `json:"gc_cycles"`
	// GCPauseTotalNs is every collector pause since start; GCPausesNs the
	// pauses of the last cycles (up to 256), oldest first.
	GCPauseTotalNs int64   `json:"gc_pause_total_ns"`
	GCPausesNs     []int64 `json:"gc_pauses_ns"`
	Ingest         struct {
		Accepted, DroppedLate, RowsWritten, Writes, WriteErrors, Replayed int64
	} `json:"ingest"`
	Sources []struct {
		Source      string          `json:"source"`
		Lag         int64           `json:"lag"`
		Messages    int64           `json:"messages"`
		DeadLetters int64           `json:"dead_letters"`
		Freshness   SourceFreshness `json:"freshness_ms"`
		Partitions  []struct {
			Partition string `json:"partition"`
		} `json:"partitions"`
	} `json:"sources"`
}

// stats reads the server's GET /debug/stats; an error says whether the
// server has exited.
func (s *server) stats(ctx context.Context, c *http.Client) (serverStats, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	var st serverStats
	if err := getJSON(ctx, c, s.adminURL+"/debug/stats", &st); err != nil {
		return st, errors.Join(fmt.Errorf("reading the server's stats: %w", err), s.alive())
	}
	return st, nil
}

// waitReady polls GET /readyz until it answers 200.
func (s *server) waitReady(ctx context.Context, c *http.Client) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		var v map[string]any
		if last = getJSON(ctx, c, s.url+"/readyz", &v); last == nil {
			return nil
		}
		if err := s.alive(); err != nil {
			return err
		}
		if !sleepCtx(ctx, readyPoll) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s is not ready after %v: %w", s.url, readyTimeout, last)
}

// getJSON GETs url into v.
func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// postJSON POSTs body to url and decodes a 200 answer into v (nil: discard).
func postJSON(ctx context.Context, c *http.Client, url string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return &httpError{status: resp.StatusCode, msg: string(bytes.TrimSpace(msg))}
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// httpError is a non-200 answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

// isRefusal reports whether err is a refusal by the server's admission
// control: HTTP 429 or gRPC RESOURCE_EXHAUSTED.
func isRefusal(err error) bool {
	if err == nil {
		return false
	}
	var he *httpError
	if errors.As(err, &he) {
		return he.status == http.StatusTooManyRequests
	}
	return status.Code(err) == codes.ResourceExhausted
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return "(no output on stderr)"
	}
	return s
}

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	mu      sync.Mutex // guards partial
	w       io.Writer
	prefix  string
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i])
		p.partial = p.partial[i+1:]
	}
	if len(p.partial) > 64<<10 { // a very long line: flush it as is
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial)
		p.partial = p.partial[:0]
	}
	return len(b), nil
}

// sleepCtx sleeps for d, or until ctx ends (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
