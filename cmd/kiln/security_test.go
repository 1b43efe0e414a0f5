package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logged runs kiln with its stdout and stderr (the log) both read as
// lines.
func logged(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 1000)}
	done := make(chan struct{}, 2)
	for _, r := range []interface{ Read([]byte) (int, error) }{stdout, stderr} {
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
			done <- struct{}{}
		}()
	}
	go func() { <-done; <-done; close(p.lines) }()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// newToken runs kiln token and returns the token and its line.
func newToken(t *testing.T, bin, name, scopes string) (token, line string) {
	t.Helper()
	out, err := exec.Command(bin, "token", "--name", name, "--scopes", scopes).Output()
	if err != nil {
		t.Fatalf("kiln token: %v", err)
	}
	m := regexp.MustCompile(`(?s)keep it secret\):\n(kiln_\S+)\n\nline for the token file:\n(.*)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("kiln token printed %q", out)
	}
	return m[1], m[2]
}

func status(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// kiln token makes a token whose line kiln serve --token-file takes; a bad
// file refuses the start naming its line; SIGHUP takes a new file, and a
// bad one on SIGHUP leaves the tokens in force.
func TestServeTokenFile(t *testing.T) {
	bin := buildKiln(t)
	dir := t.TempDir()
	file := dir + "/tokens"
	tok1, line1 := newToken(t, bin, "first", "read")
	if strings.Contains(line1, tok1) {
		t.Fatalf("the line %q holds the token", line1)
	}
	os.WriteFile(file, []byte("# tokens\n"+line1+"\nsecond kiln_abc read\n"), 0o600)
	out, err := exec.Command(bin, "serve", "-c", "../../examples/feed/kiln.yaml", "--data", dir+"/data", "--addr", "127.0.0.1:0", "--grpc-addr", "", "--token-file", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line 3: token second is written as it is") {
		t.Fatalf("kiln serve with a bad token file: %v\n%s", err, out)
	}

	os.WriteFile(file, []byte(line1+"\n"), 0o600)
	p := logged(t, bin, "serve", "-c", "../../examples/feed/kiln.yaml", "--data", dir+"/data", "--addr", "127.0.0.1:0", "--grpc-addr", "", "--token-file", file)
	url := p.expect(t, `serving project feed from .* on (http://\S+)`)[1] + "/v1/metadata"
	if c := status(t, url, ""); c != 401 {
		t.Errorf("without a token: %d", c)
	}
	if c := status(t, url, tok1); c != 200 {
		t.Errorf("with the token: %d", c)
	}
	tok2, line2 := newToken(t, bin, "second", "read")
	os.WriteFile(file, []byte(line2+"\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.expect(t, `token file reloaded.*tokens=1`)
	if c1, c2 := status(t, url, tok1), status(t, url, tok2); c1 != 401 || c2 != 200 {
		t.Errorf("after the reload: the old token %d, the new %d", c1, c2)
	}
	os.WriteFile(file, []byte(line2+"\n"+"third sha256:12 read\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.expect(t, `token file not reloaded: the tokens in force stay.*line 2`)
	if c := status(t, url, tok2); c != 200 {
		t.Errorf("after a bad reload, the token in force: %d", c)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	for _, line := range p.drain(t) {
		if strings.Contains(line, "kiln_") {
			t.Errorf("the log holds a token: %s", line)
		}
	}
}

// drain returns the lines kiln writes until it exits (within 30s) and
// closes its streams.
func (p *process) drain(t *testing.T) []string {
	t.Helper()
	var lines []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return lines
			}
			lines = append(lines, line)
		case <-deadline:
			t.Fatal("kiln did not stop within 30s")
		}
	}
}

// kiln serve beyond loopback without a token file says so at start.
func TestServeWarnsWithoutTokens(t *testing.T) {
	bin := buildKiln(t)
	p := logged(t, bin, "serve", "-c", "../../examples/feed/kiln.yaml", "--data", t.TempDir(), "--addr", "0.0.0.0:0", "--grpc-addr", "")
	p.expect(t, `WARN.*listening beyond loopback without --token-file.*addr=0\.0\.0\.0:0`)
	p.expect(t, `serving project feed`)
	p.cmd.Process.Signal(syscall.SIGINT)
	p.drain(t)
}
