package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tlstest"
)

const kafkaSecret = "kafka-s3cret-pw"

// TestSASLAndTLS reads a topic from brokers that take only TLS connections
// authenticated with SASL, for each mechanism: the right credentials count
// every event; a wrong password, a mechanism the brokers do not offer or
// an untrusted certificate make the consumer say what to check, without
// showing the password.
func TestSASLAndTLS(t *testing.T) {
	certs := tlstest.New(t)
	_, addr := brokertest.KafkaWith(t, 2, []string{"clicks"},
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "kiln", kafkaSecret),
		kfake.Superuser("SCRAM-SHA-512", "kiln512", kafkaSecret),
		kfake.Superuser("PLAIN", "plain", kafkaSecret),
		kfake.TLS(certs.ServerConfig(t, false)),
	)
	t.Setenv("KILN_TEST_KAFKA_PASSWORD", kafkaSecret)
	t.Setenv("KILN_TEST_WRONG_PASSWORD", "not-the-password")
	compile := func(sasl, tls string) (*definition.Project, map[*definition.View]*tile.Plan) {
		return kilntest.Compile(t, "t.yaml", fmt.Appendf(nil, `
project: t
entities: {user: {keys: [user_id]}}
sources:
  clicks:
    type: kafka
    brokers: [%s]
    topic: clicks
    group: g-%d
    event_time: ts
    fields: {user_id: int64}
    sasl: %s
    tls: %s
views:
  by_user:
    entity: user
    source: clicks
    features: {n: {agg: count}}
`, addr, time.Now().UnixNano(), sasl, tls))
	}
	withCA := "{ca_file: " + certs.CAFile + "}"

	// Produce with the same access a source has.
	p, _ := compile("{mechanism: SCRAM-SHA-256, user: kiln, password: {env: KILN_TEST_KAFKA_PASSWORD}}", withCA)
	opts, err := accessOpts(p.Source("clicks").Stream, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("clicks"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Key: []byte{byte(i)}, Value: fmt.Appendf(nil, `{"user_id": %d, "ts": %d}`, i%4, time.Now().UnixMilli())})
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing over TLS with SASL: %v", err)
	}

	for _, mech := range []string{"{mechanism: SCRAM-SHA-256, user: kiln", "{mechanism: SCRAM-SHA-512, user: kiln512", "{mechanism: PLAIN, user: plain"} {
		t.Run(strings.TrimSuffix(strings.Fields(mech)[1], ","), func(t *testing.T) {
			p, plans := compile(mech+", password: {env: KILN_TEST_KAFKA_PASSWORD}}", withCA)
			if n := consume(t, ctx, p, plans, 100, nil); n != 100 {
				t.Fatalf("counted %d events, want 100", n)
			}
		})
	}

	for _, tc := range []struct{ name, sasl, tls, want string }{
		{"WrongPassword", "{mechanism: SCRAM-SHA-256, user: kiln, password: {env: KILN_TEST_WRONG_PASSWORD}}", withCA,
			"check mechanism, user and password of the source's sasl"},
		{"WrongMechanism", "{mechanism: SCRAM-SHA-512, user: kiln, password: {env: KILN_TEST_KAFKA_PASSWORD}}", withCA,
			"check mechanism, user and password of the source's sasl"},
		{"WrongUser", "{mechanism: PLAIN, user: nobody, password: {env: KILN_TEST_KAFKA_PASSWORD}}", withCA,
			"check mechanism, user and password of the source's sasl"},
		{"UntrustedCertificate", "{mechanism: PLAIN, user: plain, password: {env: KILN_TEST_KAFKA_PASSWORD}}", "true",
			"set ca_file in the source's tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, plans := compile(tc.sasl, tc.tls)
			var logs kilntest.SyncBuffer
			consume(t, ctx, p, plans, 0, func() bool { return strings.Contains(logs.String(), tc.want) }, &logs)
			if strings.Contains(logs.String(), kafkaSecret) || strings.Contains(logs.String(), "not-the-password") {
				t.Errorf("the log shows a password:\n%s", logs.String())
			}
		})
	}
}

// consume runs a consumer of p's source until it counted want events (or,
// with until, until until holds), logging into logs if given, and returns
// the count.
func consume(t *testing.T, ctx context.Context, p *definition.Project, plans map[*definition.View]*tile.Plan, want int64, until func() bool, logs ...*kilntest.SyncBuffer) int64 {
	t.Helper()
	pl, err := ingest.New(p, plans, kilntest.MemStore(t), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	src := p.Source("clicks")
	dead, err := stream.OpenFile(t.TempDir() + "/dead.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	a := stream.NewApplier(src, eventjson.NewDecoder(p), pl, dead, nil)
	logger := slog.New(slog.DiscardHandler)
	if len(logs) > 0 {
		logger = slog.New(slog.NewTextHandler(logs[0], nil))
	}
	c, err := New(Options{Source: src, Applier: a, Logger: logger, Retry: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	plan := plans[p.View("by_user")]
	total := func() int64 { return kilntest.Total(t, ctx, pl, plan, "by_user", pl.Now(), kilntest.Users(4)...) }
	for ctx.Err() == nil && (until == nil && total() < want || until != nil && !until()) {
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		if len(logs) > 0 {
			t.Fatalf("gave up waiting; the consumer logged:\n%s", logs[0].String())
		}
		t.Fatal("gave up waiting")
	}
	return total()
}
