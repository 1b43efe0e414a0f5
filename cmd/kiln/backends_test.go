package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/tlstest"
)

// The secrets of TestBackendCredentials: neither may show in any output.
const (
	redisTestSecret = "redis-Secret-4711"
	kafkaTestSecret = "kafka-Secret-0815"
)

// TestBackendCredentials runs kiln serve against a Redis server that takes
// only TLS connections from an ACL user, reading a Kafka topic from brokers
// that take only TLS connections authenticated with SCRAM: events in,
// features out, with the passwords read from an environment variable and
// a file. No password shows in kiln validate's output, /v1/metadata or
// the logs, and a wrong password stops kiln serve with an error that says
// what to check, without showing it either.
func TestBackendCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis server, a Kafka broker and kiln processes")
	}
	certs := tlstest.New(t)
	redis := redistest.StandaloneWith(t, redistest.ServerOptions{
		Config:  "user default off\nuser kiln on >" + redisTestSecret + " ~* &* +@all\n",
		TLSCert: certs.ServerCert, TLSKey: certs.ServerKey, TLSCA: certs.CAFile,
	})
	_, kafka := brokertest.KafkaWith(t, 2, []string{"events"},
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kiln", kafkaTestSecret), kfake.TLS(certs.ServerConfig(t, false)))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kafka.pw"), []byte(kafkaTestSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	project := filepath.Join(dir, "kiln.yaml")
	cfg := fmt.Sprintf(`project: creds
online_store:
  type: redis
  addrs: [%s]
  username: kiln
  password: {env: KILN_TEST_REDIS_PASSWORD}
  tls: {ca_file: %s}
entities: {user: {keys: [user_id]}}
sources:
  events:
    type: kafka
    brokers: [%s]
    topic: events
    sasl: {mechanism: SCRAM-SHA-512, user: kiln, password: {file: kafka.pw}}
    tls: {ca_file: %s}
    dead_letter: {file: %s}
    event_time: ts
    fields: {user_id: int64}
views:
  by_user:
    entity: user
    source: events
    features: {n: {agg: count, windows: [24h]}}
`, redis.TLSAddr, certs.CAFile, kafka, certs.CAFile, filepath.Join(dir, "dead.jsonl"))
	if err := os.WriteFile(project, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildKiln(t)
	t.Setenv("KILN_TEST_REDIS_PASSWORD", redisTestSecret)
	noSecret := func(what, s string) {
		t.Helper()
		for _, secret := range []string{redisTestSecret, kafkaTestSecret} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows a password:\n%s", what, s)
			}
		}
	}

	out, err := exec.Command(bin, "validate", "-c", project).CombinedOutput()
	if err != nil {
		t.Fatalf("kiln validate: %v\n%s", err, out)
	}
	noSecret("kiln validate", string(out))

	// Events in through Kafka, features out of Redis.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("events"), kgo.DialTLSConfig(certs.ClientConfig(t)),
		kgo.SASL(scram.Auth{User: "kiln", Pass: kafkaTestSecret}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"user_id": %d, "ts": %d}`, i%2, time.Now().UnixMilli())})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	serve := startLogged(t, bin, "serve", "-c", project, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	url := serve.wait(t, `serving project creds from redis \S+ on (http://\S+)`)[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpPost(t, url+"/v1/features", `{"features": ["by_user:n_24h"], "entities": {"user": [{"user_id": 0}, {"user_id": 1}]}}`)
		if code == http.StatusOK && strings.Count(body, `"by_user:n_24h":20`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 40 events were not served within 30s: %d %s\nkiln logged:\n%s", code, body, serve.output())
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	resp, err := http.Get(url + "/v1/metadata")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/metadata: %d %v", resp.StatusCode, err)
	}
	noSecret("/v1/metadata", string(meta))
	serve.stop(t)
	noSecret("kiln serve's output", serve.output())

	// A wrong password stops kiln serve, saying what to check.
	t.Setenv("KILN_TEST_REDIS_PASSWORD", "wrong-"+kafkaTestSecret)
	out, err = exec.Command(bin, "serve", "-c", project, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "check username and password of online_store") {
		t.Errorf("kiln serve with a wrong Redis password: %v, want it to stop saying what to check:\n%s", err, out)
	}
	noSecret("kiln serve with a wrong password", string(out))

	// A variable that is not set is named, with its line.
	os.Unsetenv("KILN_TEST_REDIS_PASSWORD")
	out, err = exec.Command(bin, "validate", "-c", project).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "kiln.yaml:6:") || !strings.Contains(string(out), "the environment variable KILN_TEST_REDIS_PASSWORD is not set") {
		t.Errorf("kiln validate without the password's variable: %v, want the line and the variable named:\n%s", err, out)
	}
}

// loggedProcess is a kiln process whose stdout and stderr are kept.
type loggedProcess struct {
	cmd  *exec.Cmd
	out  kilntest.SyncBuffer
	done chan struct{}
}

func (p *loggedProcess) output() string { return p.out.String() }

func startLogged(t *testing.T, bin string, args ...string) *loggedProcess {
	t.Helper()
	p := &loggedProcess{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	return p
}

// wait polls the output (boundedly) for a line matching re.
func (p *loggedProcess) wait(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("kiln exited before printing %q:\n%s", re, p.output())
		case <-time.After(20 * time.Millisecond): // polling
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %q within 60s:\n%s", re, p.output())
		}
	}
}

// stop ends the process with SIGTERM and waits for it.
func (p *loggedProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("kiln did not stop within 30s:\n%s", p.output())
	}
}
