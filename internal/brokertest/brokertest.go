// Package brokertest starts real message brokers inside a test process:
// franz-go's in-process Kafka cluster (kfake, which speaks the Kafka wire
// protocol) and an embedded NATS server with JetStream. Both listen on free
// loopback ports and are shut down when the test ends, so a test can point a
// kiln subprocess at them like at any broker.
package brokertest

import (
	"context"
	"os"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka starts a one-broker Kafka cluster holding topics, each with the
// given number of partitions, and returns its address (host:port). Groups
// may use session timeouts down to one second, so tests that kill a member
// do not wait long for the group to notice.
func Kafka(t testing.TB, partitions int32, topics ...string) (*kfake.Cluster, string) {
	t.Helper()
	return KafkaWith(t, partitions, topics)
}

// KafkaWith is Kafka with more kfake options, such as kfake.EnableSASL,
// kfake.Superuser and kfake.TLS.
func KafkaWith(t testing.TB, partitions int32, topics []string, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topics...),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
		kfake.GroupMinSessionTimeout(time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatalf("starting in-process Kafka (kfake): %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// NATS starts a NATS server with JetStream enabled, storing streams in a
// temporary directory, and returns its client URL (nats://127.0.0.1:port).
func NATS(t testing.TB) (*natsserver.Server, string) {
	t.Helper()
	return NATSWith(t, nil)
}

// NATSWith is NATS with its options changed by configure first: users,
// a token, TLS.
func NATSWith(t testing.TB, configure func(*natsserver.Options)) (*natsserver.Server, string) {
	t.Helper()
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      -1, // a free port
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if configure != nil {
		configure(opts)
	}
	if os.Getenv("KILN_NATS_TEST_LOG") != "" {
		opts.NoLog, opts.Debug = false, true
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("starting embedded NATS: %v", err)
	}
	if !opts.NoLog {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("embedded NATS did not accept connections within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, s.ClientURL()
}

// JetStream connects to the NATS server at url and creates the stream name
// over subjects. The connection is closed when t ends.
func JetStream(t testing.TB, url, name string, subjects ...string) jetstream.JetStream {
	t.Helper()
	return JetStreamWith(t, url, name, subjects)
}

// JetStreamWith is JetStream connecting with opts: credentials, TLS.
func JetStreamWith(t testing.TB, url, name string, subjects []string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
		t.Fatal(err)
	}
	return js
}
