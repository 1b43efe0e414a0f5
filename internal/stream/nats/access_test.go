package nats

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tlstest"
)

const natsSecret = "nats-s3cret-pw"

// TestAccess reads a stream from servers that demand TLS and a user and
// password, a token, or a credentials file (operator mode, with JWTs):
// the right credentials count every event, and wrong ones make the
// consumer say what to check without showing the secret.
func TestAccess(t *testing.T) {
	certs := tlstest.New(t)
	dir := t.TempDir()
	t.Setenv("KILN_TEST_NATS_PASSWORD", natsSecret)
	t.Setenv("KILN_TEST_WRONG_PASSWORD", "not-the-password")
	secure := func(o *natsserver.Options) {
		o.TLSConfig = certs.ServerConfig(t, false)
		o.TLS, o.TLSTimeout = true, 5
	}
	ca := "{ca_file: " + certs.CAFile + "}"

	// The server says tls://, which Kiln reads as nats:// (TLS follows
	// from the source's tls).
	natsURL := func(url string) string { return strings.Replace(url, "tls://", "nats://", 1) }
	t.Run("UserPassword", func(t *testing.T) {
		_, url := brokertest.NATSWith(t, func(o *natsserver.Options) {
			secure(o)
			o.Users = []*natsserver.User{{Username: "kiln", Password: natsSecret}}
		})
		url = natsURL(url)
		ok := "user: kiln\n    password: {env: KILN_TEST_NATS_PASSWORD}\n    tls: " + ca
		checkAccess(t, url, ok)
		checkRefused(t, url, "user: kiln\n    password: {env: KILN_TEST_WRONG_PASSWORD}\n    tls: "+ca, "check credentials, user and password, or token of the source")
		checkRefused(t, url, "user: kiln\n    password: {env: KILN_TEST_NATS_PASSWORD}", "the server requires TLS: add tls to the source, with ca_file")
		checkRefused(t, url, "user: kiln\n    password: {env: KILN_TEST_NATS_PASSWORD}\n    tls: true", "set ca_file in the source's tls")
	})
	t.Run("Token", func(t *testing.T) {
		_, url := brokertest.NATSWith(t, func(o *natsserver.Options) {
			secure(o)
			o.Authorization = natsSecret
		})
		url = natsURL(url)
		checkAccess(t, url, "token: {env: KILN_TEST_NATS_PASSWORD}\n    tls: "+ca)
		checkRefused(t, url, "token: {env: KILN_TEST_WRONG_PASSWORD}\n    tls: "+ca, "the server refused the credentials")
	})
	t.Run("Credentials", func(t *testing.T) {
		creds, wrong := operatorMode(t, dir)
		_, url := brokertest.NATSWith(t, func(o *natsserver.Options) {
			secure(o)
			creds.configure(o)
		})
		url = natsURL(url)
		checkAccess(t, url, "credentials: "+creds.file+"\n    tls: "+ca)
		checkRefused(t, url, "credentials: "+wrong+"\n    tls: "+ca, "the server refused the credentials")
	})
}

// checkAccess publishes 50 events to a new stream through a connection made
// with the source's access keys (written as in a project file), and checks
// that a consumer of the source counts them all.
func checkAccess(t *testing.T, url, access string) {
	t.Helper()
	p, plans := accessProject(t, url, access)
	st := p.Source("clicks").Stream
	opts, err := accessOpts(st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	js := brokertest.JetStreamWith(t, url, "CLICKS", []string{"clicks.>"}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := js.Publish(ctx, "clicks.x", fmt.Appendf(nil, `{"user_id": %d, "ts": %d}`, i%4, time.Now().UnixMilli())); err != nil {
			t.Fatal(err)
		}
	}
	var logs kilntest.SyncBuffer
	pl, total := runConsumer(t, ctx, p, plans, &logs)
	defer pl()
	for total() < 50 {
		if ctx.Err() != nil {
			t.Fatalf("counted %d of 50 events; the consumer logged:\n%s", total(), logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if n := total(); n != 50 {
		t.Fatalf("counted %d events, want 50", n)
	}
}

// checkRefused runs a consumer with wrong access keys and waits for it to
// log want, checking the log never shows a secret.
func checkRefused(t *testing.T, url, access, want string) {
	t.Helper()
	p, plans := accessProject(t, url, access)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs kilntest.SyncBuffer
	stop, _ := runConsumer(t, ctx, p, plans, &logs)
	defer stop()
	for !strings.Contains(logs.String(), want) {
		if ctx.Err() != nil {
			t.Fatalf("the consumer did not log %q; it logged:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if s := logs.String(); strings.Contains(s, natsSecret) || strings.Contains(s, "not-the-password") {
		t.Errorf("the log shows a secret:\n%s", s)
	}
}

func accessProject(t *testing.T, url, access string) (*definition.Project, map[*definition.View]*tile.Plan) {
	t.Helper()
	return kilntest.Compile(t, filepath.Join(t.TempDir(), "t.yaml"), fmt.Appendf(nil, `
project: t
entities: {user: {keys: [user_id]}}
sources:
  clicks:
    type: nats
    event_time: ts
    fields: {user_id: int64}
    url: %s
    stream: CLICKS
    %s
views:
  by_user:
    entity: user
    source: clicks
    features: {n: {agg: count}}
`, url, access))
}

// runConsumer starts a consumer of p's source logging into logs; it
// returns a function that stops it and one that counts the events applied.
func runConsumer(t *testing.T, ctx context.Context, p *definition.Project, plans map[*definition.View]*tile.Plan, logs *kilntest.SyncBuffer) (stop func(), total func() int64) {
	t.Helper()
	pl, err := ingest.New(p, plans, kilntest.MemStore(t), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := p.Source("clicks")
	dead, err := stream.OpenFile(filepath.Join(t.TempDir(), "dead.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	a := stream.NewApplier(src, eventjson.NewDecoder(p), pl, dead, nil)
	c, err := New(Options{Source: src, Applier: a, Logger: slog.New(slog.NewTextHandler(logs, nil)), Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	plan := plans[p.View("by_user")]
	total = func() int64 { return kilntest.Total(t, ctx, pl, plan, "by_user", pl.Now(), kilntest.Users(4)...) }
	return sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		pl.Close()
		dead.Close()
	}), total
}

// operatorCreds is a NATS server's operator-mode trust: an operator, an
// account with JetStream, and a user's credentials file.
type operatorCreds struct {
	file     string
	operator *jwt.OperatorClaims
	// accounts are the JWTs of the accounts, by public key: the user's and
	// the system account, JetStream needs.
	accounts map[string]string
	system   string
}

func (c *operatorCreds) configure(o *natsserver.Options) {
	o.TrustedOperators = []*jwt.OperatorClaims{c.operator}
	r := &natsserver.MemAccResolver{}
	for pub, j := range c.accounts {
		if err := r.Store(pub, j); err != nil {
			panic(err)
		}
	}
	o.AccountResolver = r
	o.SystemAccount = c.system
}

// operatorMode makes an operator, an account and a user, and writes the
// user's .creds file into dir; wrong is the .creds file of a user of an
// account the server does not know.
func operatorMode(t *testing.T, dir string) (c *operatorCreds, wrong string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "kiln-test"
	ojwt, err := oc.Encode(okp)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(ojwt)
	must(err)
	userCreds := func(name string, jetStream bool) (accountPub, accountJWT, file string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if jetStream {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		must(err)
		ukp, err := nkeys.CreateUser()
		must(err)
		upub, err := ukp.PublicKey()
		must(err)
		useed, err := ukp.Seed()
		must(err)
		ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
		must(err)
		creds, err := jwt.FormatUserConfig(ujwt, useed)
		must(err)
		file = filepath.Join(dir, name+".creds")
		must(os.WriteFile(file, creds, 0o600))
		return apub, ajwt, file
	}
	apub, ajwt, file := userCreds("kiln", true)
	spub, sjwt, _ := userCreds("system", false)
	_, _, wrong = userCreds("stranger", true)
	return &operatorCreds{file: file, operator: oc, accounts: map[string]string{apub: ajwt, spub: sjwt}, system: spub}, wrong
}
