package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tlstest"
)

const aclSecret = "acl-s3cret-Pass"

// TestACLUser reaches a server whose default user is off through an ACL
// user: the right password works, a wrong one or another user is refused
// with an error that says what to check and does not show the password.
func TestACLUser(t *testing.T) {
	t.Parallel()
	srv := redistest.StandaloneWith(t, redistest.ServerOptions{Config: "user default off\nuser kiln on >" + aclSecret + " ~* &* +@all\n"})
	ctx := context.Background()
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	for _, tc := range []struct{ user, password string }{{"kiln", "wrong-password"}, {"", aclSecret}, {"other", aclSecret}, {"kiln", ""}} {
		s, err := Open(ctx, Options{Addrs: []string{srv.Addr}, Username: tc.user, Password: tc.password, Logger: logger})
		if err == nil {
			s.Close()
			t.Errorf("Open as %q with password %q succeeded", tc.user, tc.password)
			continue
		}
		if !strings.Contains(err.Error(), "check username and password of online_store") || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Open as %q: %v, want an authentication error saying what to check", tc.user, err)
		}
		if strings.Contains(err.Error(), aclSecret) || strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("Open's error shows the password: %v", err)
		}
	}
	s := openT(t, Options{Addrs: []string{srv.Addr}, Username: "kiln", Password: aclSecret, Logger: logger})
	write(t, s, store.KV{Key: []byte("k"), Value: []byte("v")})
	expect(t, s, "as user kiln", map[string]string{"k": "v"})
	if strings.Contains(logged.String(), aclSecret) {
		t.Errorf("the log shows the password:\n%s", logged.String())
	}
	if !strings.Contains(logged.String(), "user=kiln") {
		t.Errorf("the log does not say which user connected:\n%s", logged.String())
	}
}

// TestTLS reaches a server that takes TLS connections with client
// certificates only, through the configuration a project file's tls block
// makes, and checks the errors of each mistake.
func TestTLS(t *testing.T) {
	t.Parallel()
	certs := tlstest.New(t)
	srv := redistest.StandaloneWith(t, redistest.ServerOptions{
		Config:  "requirepass " + aclSecret,
		TLSCert: certs.ServerCert, TLSKey: certs.ServerKey, TLSCA: certs.CAFile, ClientCerts: true,
	})
	config := func(tl definition.TLS) Options {
		t.Helper()
		cfg, err := tl.Config()
		if err != nil {
			t.Fatal(err)
		}
		return Options{Addrs: []string{srv.TLSAddr}, Password: aclSecret, TLS: cfg, Timeout: time.Second}
	}
	s := openT(t, config(definition.TLS{CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}))
	write(t, s, store.KV{Key: []byte("k"), Value: []byte("over TLS")})
	expect(t, s, "over TLS", map[string]string{"k": "over TLS"})
	if err := s.WriteIf(context.Background(), []store.CondKV{{Key: []byte("k"), Old: []byte("over TLS"), Value: []byte("v2")}}, nil); err != nil {
		t.Fatalf("WriteIf over TLS: %v", err)
	}

	plainPort := Options{Addrs: []string{srv.Addr}, Password: aclSecret, TLS: config(definition.TLS{CAFile: certs.CAFile}).TLS, Timeout: time.Second}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"UntrustedServer", config(definition.TLS{CertFile: certs.ClientCert, KeyFile: certs.ClientKey}), "set ca_file in tls of online_store"},
		{"WrongName", config(definition.TLS{CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey, ServerName: "redis.example.com"}), "set server_name in tls of online_store"},
		{"PlainPort", plainPort, "check that the addresses are the servers' tls-port"},
		{"NoTLS", Options{Addrs: []string{srv.TLSAddr}, Password: aclSecret, Timeout: time.Second}, "if the servers expect TLS, add tls to online_store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want it to say %q", err, tc.want)
			}
		})
	}
	t.Run("NoClientCertificate", func(t *testing.T) {
		// The server refuses the handshake after it: the error depends on
		// when the client notices, so only its failing is checked.
		s, err := Open(context.Background(), config(definition.TLS{CAFile: certs.CAFile}))
		if err == nil {
			s.Close()
			t.Fatal("Open without a client certificate succeeded")
		}
	})
}

// TestReplicated checks that with Replicas set, writes are acknowledged
// once a replica has them, and fail with ErrUnavailable, saying what to
// check, when too few replicas confirm them in time.
func TestReplicated(t *testing.T) {
	t.Parallel()
	master, replica := redistest.Standalone(t), redistest.Standalone(t)
	host, port, _ := net.SplitHostPort(master)
	mustCommand(t, replica, "REPLICAOF", host, port)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(mustCommand(t, replica, "INFO", "replication"), "master_link_status:up") {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not sync with its master within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	ctx := context.Background()

	s := openT(t, Options{Addrs: []string{master}, Replicas: 1})
	batch := []store.KV{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}}
	write(t, s, batch...)
	// Acknowledged means on the replica: read it there, at once.
	if v := mustCommand(t, replica, "GET", "b"); v != "2" {
		t.Errorf("GET b on the replica right after the write = %q, want 2", v)
	}
	if err := s.WriteIf(ctx, []store.CondKV{{Key: []byte("a"), Old: []byte("1"), Value: []byte("3")}}, func(int) { t.Error("conflict") }); err != nil {
		t.Fatalf("WriteIf: %v", err)
	}
	if v := mustCommand(t, replica, "GET", "a"); v != "3" {
		t.Errorf("GET a on the replica right after WriteIf = %q, want 3", v)
	}

	const wait = 200 * time.Millisecond
	two := openT(t, Options{Addrs: []string{master}, Replicas: 2, ReplicationTimeout: wait})
	start := time.Now()
	err := two.Write(ctx, batch)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, errNotReplicated) || !strings.Contains(err.Error(), "1 of the 2 replicas asked for confirmed it within 200ms") {
		t.Errorf("Write waiting for 2 replicas of a master that has 1: %v, want ErrUnavailable saying 1 of 2 confirmed", err)
	}
	if took := time.Since(start); took < wait {
		t.Errorf("Write failed after %v, before the replication timeout of %v", took, wait)
	}
	err = two.WriteIf(ctx, []store.CondKV{{Key: []byte("c"), Value: []byte("1")}}, nil)
	if !errors.Is(err, errNotReplicated) {
		t.Errorf("WriteIf waiting for 2 replicas of a master that has 1: %v, want not replicated", err)
	}
}

// BenchmarkWriteReplicated writes batches of 1,000 rows of 200 bytes, as
// the write path's group commits do, to a standalone master with one
// replica: acknowledged by the master (primary), and confirmed by WAIT on
// the replica (replicated), with WriteIf as the write path uses it.
func BenchmarkWriteReplicated(b *testing.B) {
	master, replica := redistest.Standalone(b), redistest.Standalone(b)
	host, port, _ := net.SplitHostPort(master)
	if _, err := redistest.Command(replica, "REPLICAOF", host, port); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := redistest.Command(replica, "INFO", "replication")
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the replica did not sync with its master within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	for _, mode := range []struct {
		name     string
		replicas int
	}{{"primary", 0}, {"replicated", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			s := openT(b, Options{Addrs: []string{master}, Replicas: mode.replicas})
			batch := make([]store.CondKV, 1000)
			for i := range batch {
				batch[i] = store.CondKV{Key: fmt.Appendf(nil, "bench/%s/%04d", mode.name, i), Value: bytes.Repeat([]byte{'x'}, 200)}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.WriteIf(ctx, batch, nil); err != nil {
					b.Fatal(err)
				}
				for i := range batch {
					batch[i].Old, batch[i].Value = batch[i].Value, batch[i].Old
					if batch[i].Value == nil {
						batch[i].Value = bytes.Repeat([]byte{'y'}, 200)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/batch")
		})
	}
}
