package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/version"
)

func TestValidateExample(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"validate", "-c", "../../examples/feed/kiln.yaml"}, &out, &errb); err != nil {
		t.Fatalf("validate: %v\n%s", err, errb.String())
	}
	for _, want := range []string{
		"project feed is valid", "view user_engagement", "view post_engagement",
		"1h        5m               13", "bytes per row (one entity)", "late-event horizon: 182h",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out.String())
		}
	}
}

// The project file is -c, --config or the one argument of validate.
func TestValidateTakesTheFileAnyWay(t *testing.T) {
	const file = "../../examples/feed/kiln.yaml"
	for _, args := range [][]string{{file}, {"-c", file}, {"--config", file}, {"--config=" + file}, {"-config", file}} {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"validate"}, args...), &out, io.Discard); err != nil {
			t.Errorf("validate %v: %v", args, err)
			continue
		}
		if !strings.Contains(out.String(), "project feed is valid") {
			t.Errorf("validate %v: %s", args, out.String())
		}
	}
	for _, args := range [][]string{{"-c", file, file}, {file, file}, {file, "-c", file}} {
		err := run(context.Background(), append([]string{"validate"}, args...), io.Discard, io.Discard)
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("validate %v: %v, want a usage error", args, err)
		}
	}
}

// Help asked for, of the command or any subcommand, goes to stdout, starts
// with a line saying what it does, and exits 0.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args  []string
		first string
	}{
		{[]string{"-h"}, "kiln: a real-time feature store"},
		{[]string{"--help"}, "kiln: a real-time feature store"},
		{[]string{"help"}, "kiln: a real-time feature store"},
		{[]string{"help", "help"}, "kiln: a real-time feature store"},
		{[]string{"help", "bench"}, "kiln bench: the benchmarks are a command of their own"},
		{[]string{"help", "demo"}, "kiln demo: run the example project"},
		{[]string{"help", "serve"}, "kiln serve: serve a project"},
		{[]string{"help", "validate"}, "kiln validate: check a project file"},
		{[]string{"demo", "-h"}, "kiln demo: run the example project"},
		{[]string{"demo", "--help"}, "kiln demo: run the example project"},
		{[]string{"serve", "-h"}, "kiln serve: serve a project"},
		{[]string{"serve", "--help"}, "kiln serve: serve a project"},
		{[]string{"serve", "--data", "x", "-h"}, "kiln serve: serve a project"},
		{[]string{"validate", "-h"}, "kiln validate: check a project file"},
		{[]string{"validate", "--help"}, "kiln validate: check a project file"},
		{[]string{"help", "rebuild"}, "kiln rebuild: rebuild views from the event archive"},
		{[]string{"rebuild", "-h"}, "kiln rebuild: rebuild views from the event archive"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), c.args, &stdout, &stderr)
		if code := cli.ExitCode(err); code != 0 {
			t.Errorf("kiln %v: %v (exit %d), want exit 0", c.args, err, code)
		}
		first, _, _ := strings.Cut(stdout.String(), "\n")
		if !strings.HasPrefix(first, c.first) {
			t.Errorf("kiln %v: help starts %q, want %q", c.args, first, c.first)
		}
		if stderr.Len() > 0 {
			t.Errorf("kiln %v: stderr %q", c.args, stderr.String())
		}
		if len(c.args) == 2 && c.args[0] == "help" && c.args[1] != "help" && c.args[1] != "bench" {
			var direct bytes.Buffer
			run(context.Background(), []string{c.args[1], "-h"}, &direct, io.Discard)
			if direct.String() != stdout.String() {
				t.Errorf("kiln help %s is not kiln %s -h:\n%s\n%s", c.args[1], c.args[1], stdout.String(), direct.String())
			}
		}
		if slices.Contains(c.args, "serve") || slices.Contains(c.args, "validate") || slices.Contains(c.args, "rebuild") {
			if !strings.Contains(stdout.String(), "-config") {
				t.Errorf("kiln %v: the help does not name --config:\n%s", c.args, stdout.String())
			}
		}
	}
	if err := run(context.Background(), []string{"help", "nope"}, io.Discard, io.Discard); cli.ExitCode(err) != 2 {
		t.Errorf("kiln help nope: %v, want a usage error", err)
	}
}

// kiln version and kiln --version print the build: version, revision and
// the Go toolchain, on stdout, exit 0.
func TestVersion(t *testing.T) {
	want := version.Get()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("kiln %v: %v", args, err)
		}
		line := stdout.String()
		for _, s := range []string{"kiln ", want.Version, "revision " + want.Revision, runtime.Version()} {
			if !strings.Contains(line, s) {
				t.Errorf("kiln %v printed %q, want %q in it", args, line, s)
			}
		}
	}
	if err := run(context.Background(), []string{"version", "x"}, io.Discard, io.Discard); cli.ExitCode(err) != 2 {
		t.Errorf("kiln version x: %v, want a usage error", err)
	}
}

// --log-format json writes one JSON object a line, text key=value pairs;
// anything else is a usage error naming both.
func TestLogFormat(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(&b, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("kiln serving", "version", "v1")
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || line["msg"] != "kiln serving" || line["version"] != "v1" {
		t.Errorf("json log line %q (%v)", b.String(), err)
	}
	b.Reset()
	if log, err = newLogger(&b, "info", "text"); err != nil {
		t.Fatal(err)
	}
	log.Info("kiln serving", "version", "v1")
	if !strings.Contains(b.String(), `msg="kiln serving" version=v1`) {
		t.Errorf("text log line %q", b.String())
	}
	if _, err := newLogger(&b, "info", "xml"); cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("--log-format xml: %v", err)
	}
	if err := run(context.Background(), []string{"serve", "--log-format", "xml"}, io.Discard, io.Discard); cli.ExitCode(err) != 2 {
		t.Errorf("kiln serve --log-format xml: %v, want a usage error", err)
	}
}

// The process itself exits 0 on -h.
func TestHelpExitStatus(t *testing.T) {
	bin := buildKiln(t)
	for _, args := range [][]string{{"serve", "-h"}, {"help", "validate"}, {"--help"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || len(out) == 0 {
			t.Errorf("kiln %v: %v, %d bytes of help", args, err, len(out))
		}
	}
	if err := exec.Command(bin, "serve", "--nope").Run(); err == nil || err.(*exec.ExitError).ExitCode() != 2 {
		t.Errorf("kiln serve --nope: %v, want exit 2", err)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("project: x\nentities:\n  user: {keys: [uid]}\nsources:\n  s: {type: push, event_time: ts, fields: {uid: int64}}\nviews:\n  v:\n    entity: usr\n    source: s\n    features:\n      c: {agg: count, windws: [1h]}\n"), 0o644)
	err := run(context.Background(), []string{"validate", "-c", path}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("a bad project validated")
	}
	for _, want := range []string{"bad.yaml:8:", `entity "usr" is not defined`, "bad.yaml:11:", `did you mean "windows"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if cli.ExitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", cli.ExitCode(err))
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"serve", "--nope"}, {"validate", "one", "extra"}, {"help", "serve", "extra"}, {"rebuild"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 {
			t.Errorf("kiln %v: %v (exit %d), want a usage error (exit 2)", args, err, cli.ExitCode(err))
		}
	}
}

// A flag that is gone names its replacement, and bad admission settings
// are usage errors.
func TestGoneAndBadAdmissionFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--max-inflight-rows", "4096"}, "use --max-concurrent-reads"},
		{[]string{"serve", "--admission-target", "0s"}, "give positive durations"},
		{[]string{"serve", "--admission-interval", "-1s"}, "give positive durations"},
	} {
		err := run(context.Background(), c.args, io.Discard, io.Discard)
		if !errors.Is(err, cli.ErrUsage) || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("kiln %v: %v, want a usage error saying %q", c.args, err, c.want)
		}
	}
}

// buildKiln builds the command once for the subprocess tests.
func buildKiln(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "kiln")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process runs kiln as a subprocess and reads its output line by line.
type process struct {
	cmd   *exec.Cmd
	lines chan string
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// urls waits for the lines of kiln serve that say where it serves and
// returns the API's base URL and the admin listener's.
func (p *process) urls(t *testing.T) (api, admin string) {
	t.Helper()
	api = p.expect(t, `serving project \S+ from .* on (http://\S+)`)[1]
	admin = p.expect(t, `^kiln: admin .* on (http://\S+)`)[1]
	return api, admin
}

// expect waits (boundedly) for a line matching re and returns its submatches.
func (p *process) expect(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("kiln exited before printing %q", re)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %q within 60s", re)
		}
	}
}

// stop interrupts the process (Ctrl-C) and checks that it exits cleanly.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kiln did not exit cleanly on interrupt: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kiln did not stop within 30s of an interrupt")
	}
}

// The README's first command: the demo starts, prints a curl that works,
// shows values changing, and stops cleanly on Ctrl-C.
func TestDemo(t *testing.T) {
	bin := buildKiln(t)
	p := start(t, bin, "demo", "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--history", "5000", "--rate", "500", "--every", "300ms")
	url := p.expect(t, `Kiln is serving on (http://127\.0\.0\.1:\d+)`)[1]
	curl := p.expect(t, `curl -s (\S+) -d '(.*)'$`)
	resp, err := http.Post(curl[1], "application/json", strings.NewReader(curl[2]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"present"`) {
		t.Fatalf("the printed curl (%s) answers %d %s", url, resp.StatusCode, body)
	}
	first := p.expect(t, `user 1: (.*)`)[1]
	changed := false
	for range 20 {
		if p.expect(t, `user 1: (.*)`)[1] != first {
			changed = true
			break
		}
	}
	if !changed {
		t.Fatalf("user 1's features did not change as events arrived: %s", first)
	}
	p.stop(t)
}

// kiln serve keeps what it acknowledged across an interrupt and a restart.
func TestServeRestart(t *testing.T) {
	bin := buildKiln(t)
	data := t.TempDir()
	serve := func() (*process, string) {
		p := start(t, bin, "serve", "-c", "../../examples/feed/kiln.yaml", "--data", data, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn")
		return p, p.expect(t, `serving project feed from .* on (http://\S+)`)[1]
	}
	p, url := serve()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	resp, err := http.Post(url+"/v1/push", "application/json", strings.NewReader(
		`{"source": "engagements", "events": [{"user_id": 9, "post_id": 3, "kind": "view", "dwell_ms": 10, "ts": "`+now+`"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("push: %v %v", resp, err)
	}
	resp.Body.Close()
	p.stop(t)
	p, url = serve()
	resp, err = http.Post(url+"/v1/features", "application/json", strings.NewReader(
		`{"features": ["user_engagement:views_1h", "user_engagement:last_post"], "entities": {"user": [{"user_id": 9}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"user_engagement:views_1h":1,"user_engagement:last_post":3`) {
		t.Fatalf("after a restart: %s", body)
	}
	p.stop(t)
}
