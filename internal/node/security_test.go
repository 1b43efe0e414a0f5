package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/auth/authtest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

func startNode(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Project, cfg.DataDir, cfg.Addr = p, t.TempDir(), "127.0.0.1:0"
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Both APIs over TLS with tokens: a client trusting the CA reads with a
// token, is refused without one, and plaintext is refused.
func TestTLSAndTokens(t *testing.T) {
	pki := authtest.NewPKI(t, "kiln")
	reader := &authtest.Token{Name: "reader", Scopes: auth.Read}
	tokens, err := auth.Load(authtest.WriteTokens(t, reader))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := auth.LoadCerts(pki.CertFile, pki.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, node.Config{TLS: certs.Config(), Tokens: tokens, GRPCAddr: "127.0.0.1:0"})
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("URL %s", n.URL())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(false)}}
	if code, body := get(t, c, n.URL()+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, c, n.URL()+"/v1/metadata", ""); code != 401 {
		t.Errorf("/v1/metadata without a token: %d %s", code, body)
	}
	if code, body := get(t, c, n.URL()+"/v1/metadata", reader.Token); code != 200 || !strings.Contains(body, `"entities"`) {
		t.Errorf("/v1/metadata with a token: %d %s", code, body)
	}
	if code, _ := get(t, http.DefaultClient, "http://"+n.Addr+"/healthz", ""); code != http.StatusBadRequest {
		t.Errorf("plaintext to the TLS port: %d, want 400", code)
	}
	// An HTTPS client that does not trust the CA is refused.
	if _, err := (&http.Client{}).Get(n.URL() + "/healthz"); err == nil {
		t.Error("a client without the CA connected")
	}
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(false))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health over TLS: %v %v", h, err)
	}
}

// With a client CA, a client needs a certificate it signed; certificates
// replaced on disk are served after Reload, for new connections.
func TestMutualTLSAndReload(t *testing.T) {
	pki := authtest.NewPKI(t, "kiln")
	certs, err := auth.LoadCerts(pki.CertFile, pki.KeyFile, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, node.Config{TLS: certs.Config(), GRPCAddr: "127.0.0.1:0"})
	client := func(cfg *tls.Config) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	}
	if _, err := client(pki.ClientTLS(false)).Get(n.URL() + "/healthz"); err == nil {
		t.Error("a client without a certificate connected")
	}
	other := authtest.NewPKI(t, "other")
	stranger := pki.ClientTLS(false)
	stranger.Certificates = []tls.Certificate{other.ClientCert}
	if _, err := client(stranger).Get(n.URL() + "/healthz"); err == nil {
		t.Error("a client with a certificate of another CA connected")
	}
	if code, body := get(t, client(pki.ClientTLS(true)), n.URL()+"/healthz", ""); code != 200 {
		t.Errorf("a client with its certificate: %d %s", code, body)
	}
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(true))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("gRPC with a client certificate: %v", err)
	}

	// Rotate to the other PKI's server certificate and CA.
	for _, f := range [][2]string{{other.CertFile, pki.CertFile}, {other.KeyFile, pki.KeyFile}, {other.CAFile, pki.CAFile}} {
		b, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], b, 0o600)
	}
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := client(pki.ClientTLS(true)).Get(n.URL() + "/healthz"); err == nil {
		t.Error("after the reload, a client trusting only the old CA connected")
	}
	if code, body := get(t, client(other.ClientTLS(true)), n.URL()+"/healthz", ""); code != 200 {
		t.Errorf("after the reload, the new CA's client: %d %s", code, body)
	}
	os.WriteFile(pki.KeyFile, []byte("not a key"), 0o600)
	if err := certs.Reload(); err == nil {
		t.Error("a reload of a broken key succeeded")
	}
	if code, _ := get(t, client(other.ClientTLS(true)), n.URL()+"/healthz", ""); code != 200 {
		t.Error("a failed reload changed the certificate in force")
	}
}

// A client trickling a body is cut off after the read timeout, nothing of
// its push applied, while the server answers other requests meanwhile.
func TestSlowBodyCutOff(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	n := startNode(t, node.Config{HTTPTimeouts: node.HTTPTimeouts{Read: readTimeout}})
	// The server's read deadline runs from when it starts reading the
	// request, which may be as soon as the connection is made.
	start := time.Now()
	conn, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"source": "interactions", "events": [{"user_id": 1, "post_id": 1, "kind": "view", "dwell_s": 1, "ts": "2026-11-26T10:00:00Z"}]}`
	fmt.Fprintf(conn, "POST /v1/push HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "no answer: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		answered <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	// One byte every 50ms: the body would take a few seconds.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	sent, reads := 0, 0
	var cutOff string
	for cutOff == "" {
		select {
		case cutOff = <-answered:
		case <-tick.C:
			if sent < len(body)-1 { // never the whole body
				conn.Write([]byte{body[sent]})
				sent++
			}
			if code, b := get(t, http.DefaultClient, n.URL()+"/v1/metadata", ""); code != 200 {
				t.Fatalf("while a body trickles, /v1/metadata: %d %s", code, b)
			}
			reads++
		}
		if time.Since(start) > readTimeout+10*time.Second {
			t.Fatalf("the trickling client was not cut off %v after its headers", time.Since(start))
		}
	}
	if elapsed := time.Since(start); elapsed < readTimeout {
		t.Errorf("cut off after %v, before the read timeout %v", elapsed, readTimeout)
	}
	if !strings.HasPrefix(cutOff, "408 ") && !strings.HasPrefix(cutOff, "no answer") {
		t.Errorf("the trickling push got %s", cutOff)
	}
	if reads == 0 {
		t.Error("no other request was made while the body trickled")
	}
	if st := n.Writer.Stats(); st.Accepted != 0 {
		t.Errorf("%d events accepted from a push cut off", st.Accepted)
	}
}

// BenchmarkSlowClientMemory is what a client costs the server while it
// announces a 16 MiB push and has sent one byte of it: 200 such
// connections are opened to an in-process node, and the growth of the
// process's heap and goroutine stacks, after a collection, is reported
// per connection.
func BenchmarkSlowClientMemory(b *testing.B) {
	const conns = 200
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, DataDir: b.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	inUse := func() uint64 {
		// Twice: the first collection only moves what sync.Pools hold to
		// their victim caches.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc + m.StackInuse
	}
	for b.Loop() {
		base, goroutines := inUse(), runtime.NumGoroutine()
		var open []net.Conn
		for range conns {
			c, err := net.Dial("tcp", n.Addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "POST /v1/push HTTP/1.1\r\nHost: kiln\r\nContent-Length: %d\r\n\r\n{", 16<<20)
			open = append(open, c)
		}
		// Wait (boundedly) until every connection's handler reads its body:
		// each is a goroutine of the server.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() < goroutines+conns {
			if time.Now().After(deadline) {
				b.Fatalf("%d goroutines, want %d", runtime.NumGoroutine(), goroutines+conns)
			}
			time.Sleep(time.Millisecond)
		}
		grown := int64(inUse()) - int64(base)
		b.ReportMetric(float64(grown)/conns, "bytes/conn")
		for _, c := range open {
			c.Close()
		}
	}
}

// With tokens, the admin listener asks for them too: the admin scope for
// the operators' routes, the read scope for the reads the dashboard makes;
// the dashboard's page and the probes need none.
func TestAdminListenerAsksForTokens(t *testing.T) {
	reader := &authtest.Token{Name: "reader", Scopes: auth.Read}
	operator := &authtest.Token{Name: "operator", Scopes: auth.Admin}
	tokens, err := auth.Load(authtest.WriteTokens(t, reader, operator))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, node.Config{Tokens: tokens, AdminAddr: "127.0.0.1:0"})
	admin := n.AdminURL()
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/ui", "", 200},
		{"/metrics", "", 401},
		{"/metrics", reader.Token, 403},
		{"/metrics", operator.Token, 200},
		{"/debug/stats", reader.Token, 403},
		{"/debug/stats", operator.Token, 200},
		{"/v1/metadata", "", 401},
		{"/v1/metadata", reader.Token, 200},
	} {
		if code, body := get(t, http.DefaultClient, admin+c.path, c.token); code != c.want {
			t.Errorf("GET %s (token %v): %d, want %d: %s", c.path, c.token != "", code, c.want, body)
		}
	}
}
