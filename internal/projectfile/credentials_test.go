package projectfile_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tlstest"
)

// The secret values of these tests: none may show in an error, a printed
// project or a log line.
const (
	redisSecret = "r3dis-s3cret-value"
	kafkaSecret = "k4fka-s3cret-value"
	natsSecret  = "n4ts-s3cret-value"
)

func TestBackendCredentials(t *testing.T) {
	certs := tlstest.New(t)
	dir := t.TempDir()
	t.Setenv("KILN_TEST_REDIS_PASSWORD", redisSecret)
	if err := os.WriteFile(filepath.Join(dir, "kafka.pw"), []byte(kafkaSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TEST_NATS_TOKEN", natsSecret)
	creds := filepath.Join(dir, "kiln.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "kiln.yaml")
	yaml := fmt.Sprintf(`online_store:
  type: redis
  addrs: [127.0.0.1:6379]
  username: kiln
  password: {env: KILN_TEST_REDIS_PASSWORD}
  tls: {ca_file: %s, cert_file: %s, key_file: %s, server_name: localhost}
  durability: replicated
  replication_timeout: 250ms
project: p
entities:
  user: {keys: [user_id]}
sources:
  k:
    type: kafka
    event_time: ts
    fields: {user_id: int64}
    brokers: [kafka-1:9092]
    topic: engagements
    sasl: {mechanism: scram-sha-512, user: kiln, password: {file: kafka.pw}}
    tls: true
  n:
    type: nats
    event_time: ts
    fields: {user_id: int64}
    url: nats://127.0.0.1:4222
    stream: ENGAGEMENTS
    token: {env: KILN_TEST_NATS_TOKEN}
    tls: {ca_file: %s, insecure_skip_verify: true}
  c:
    type: nats
    event_time: ts
    fields: {user_id: int64}
    url: nats://127.0.0.1:4222
    stream: OTHER
    credentials: kiln.creds
views:
  v:
    entity: user
    source: k
    features:
      n: {agg: count}
`, certs.CAFile, certs.ClientCert, certs.ClientKey, certs.CAFile)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := projectfile.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	o := p.OnlineStore
	if o.Username != "kiln" || o.Password.Reveal() != redisSecret || o.Durability != definition.DurabilityReplicated ||
		o.Replicas != definition.DefaultReplicas || o.ReplicationTimeout != 250*time.Millisecond {
		t.Errorf("online store %v: username, password, durability or replication not as written", o)
	}
	if o.TLS == nil || o.TLS.CAFile != certs.CAFile || o.TLS.CertFile != certs.ClientCert || o.TLS.ServerName != "localhost" {
		t.Errorf("online store tls %+v", o.TLS)
	}
	k := p.Source("k").Stream
	if k.SASL == nil || k.SASL.Mechanism != "SCRAM-SHA-512" || k.SASL.User != "kiln" || k.SASL.Password.Reveal() != kafkaSecret {
		t.Errorf("kafka sasl %v: want SCRAM-SHA-512, kiln and the file's password without its newline", k.SASL)
	}
	if k.TLS == nil || *k.TLS != (definition.TLS{}) {
		t.Errorf("kafka tls %+v, want the system's CAs", k.TLS)
	}
	n := p.Source("n").Stream
	if n.NATSAuth.Token.Reveal() != natsSecret || n.TLS == nil || !n.TLS.InsecureSkipVerify {
		t.Errorf("nats auth %v tls %+v", n.NATSAuth, n.TLS)
	}
	if c := p.Source("c").Stream.NATSAuth.Credentials; c != creds {
		t.Errorf("credentials %q, want %q (relative to the project file)", c, creds)
	}

	// However the project is printed, no secret shows.
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("project", "online_store", o, "kafka", k.SASL, "nats", n.NATSAuth)
	js, _ := json.Marshal(p)
	for _, shown := range []string{fmt.Sprintf("%v %+v %#v %s %q", o, o, o, o.Password, o.Password),
		fmt.Sprintf("%+v %#v %+v", *k, *k.SASL, n.NATSAuth), logged.String(), string(js)} {
		assertNoSecret(t, shown)
	}
	if !strings.Contains(fmt.Sprint(o.Password), "env KILN_TEST_REDIS_PASSWORD") {
		t.Errorf("a printed secret %q does not say where it comes from", fmt.Sprint(o.Password))
	}
}

func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{redisSecret, kafkaSecret, natsSecret} {
		if strings.Contains(s, secret) {
			t.Errorf("a secret shows in %q", s)
		}
	}
}

func TestBackendCredentialErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KILN_TEST_EMPTY", "")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte(redisSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(yaml string, wants ...string) {
		t.Helper()
		_, err := projectfile.Parse(filepath.Join(dir, "t.yaml"), []byte(yaml))
		if err == nil {
			t.Errorf("no error for\n%s", yaml)
			return
		}
		assertNoSecret(t, err.Error())
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
	redis := func(keys string) string {
		return "online_store: {type: redis, addrs: [a:1], " + keys + "}\n" + validFile
	}

	// A secret written in the file is refused, and not repeated.
	f(redis("password: "+redisSecret), "t.yaml:1:", "password of online_store is written in the project file", "password: {env: REDIS_PASSWORD}")
	f(redis(`password: "`+redisSecret+`"`), "is written in the project file")
	f(kafkaProject("sasl: {mechanism: PLAIN, user: u, password: "+kafkaSecret+"}"), "t.yaml:11:", "password of sasl of source \"ev\" is written in the project file")
	f(natsProject("user: u", "password: "+natsSecret), "t.yaml:12:", "is written in the project file")
	f(sourceProject("type: nats", "event_time: ts", "fields: {user_id: int64}", "url: nats://kiln:"+natsSecret+"@nats-1:4222", "stream: S"), "url of source \"ev\" holds credentials", "write url: nats://nats-1:4222")
	// Where a secret comes from must be there.
	f(redis("password: {env: KILN_TEST_UNSET_VARIABLE}"), "t.yaml:1:", "the environment variable KILN_TEST_UNSET_VARIABLE is not set")
	f(redis("password: {env: KILN_TEST_EMPTY}"), "the environment variable KILN_TEST_EMPTY is empty")
	f(redis("password: {file: missing.pw}"), "cannot read the file", "missing.pw: no such file")
	f(redis("password: {file: "+empty+"}"), "is empty: write the password in it")
	f(redis("password: {vault: x}"), "write exactly one of env: or file:")
	f(redis("password:"), "password of online_store is empty")
	// TLS files are read at load.
	f(redis("tls: {ca_file: "+notPEM+"}"), "tls of online_store: ca_file", "holds no PEM certificate")
	f(redis("tls: {cert_file: "+notPEM+"}"), "needs both cert_file and key_file")
	f(redis("tls: {ca_file: nope.pem}"), "nope.pem: no such file")
	f(redis("tls: yes"), `tls "yes" of online_store: write true`)
	f(redis("tls: {insecure_skip_verify: maybe}"), `insecure_skip_verify "maybe"`)
	f(redis("tls: {ca: x}"), `unknown key "ca" in tls of online_store`)
	// Durability.
	f(redis("durability: synchronous"), `unknown durability "synchronous"`)
	f(redis("replicas: 2"), "replicas of online_store applies only with durability: replicated")
	f(redis("durability: replicated, replicas: 0"), `replicas "0" of online_store`)
	f("online_store: {type: pebble, durability: replicated}\n"+validFile, "type pebble is embedded and takes no durability")
	// Kafka SASL and NATS authentication.
	f(kafkaProject("sasl: {mechanism: GSSAPI, user: u, password: {env: X}}"), `unknown SASL mechanism "GSSAPI"`)
	f(kafkaProject("sasl: {mechanism: PLAIN}"), "sasl of source \"ev\" has no user", "has no password")
	f(kafkaProject("token: {env: X}"), `key "token" is for nats sources`, "use sasl instead")
	f(natsProject("sasl: {mechanism: PLAIN}"), `key "sasl" is for kafka sources`)
	f(natsProject("user: u"), "user of source \"ev\" has no password")
	f(natsProject("credentials: missing.creds"), "credentials of source \"ev\": cannot read the file")
	t.Setenv("KILN_TEST_NATS_TOKEN", natsSecret)
	f(natsProject("credentials: "+empty, "token: {env: KILN_TEST_NATS_TOKEN}"), "t.yaml:12:", "has both credentials and token")
}
