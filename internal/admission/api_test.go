package admission

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// recordingBody is a request body that counts the reads of it.
type recordingBody struct {
	r     io.Reader
	reads atomic.Int64
}

func (b *recordingBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return b.r.Read(p)
}

func (b *recordingBody) Close() error { return nil }

// blockingReads is a handler whose reads hold their slot until released,
// reading their body first as the API does.
type blockingReads struct {
	entered chan struct{}
	release chan struct{}
	served  atomic.Int64
}

func (h *blockingReads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isFeatures(r) {
		io.WriteString(w, "ok\n")
		return
	}
	io.Copy(io.Discard, r.Body)
	h.entered <- struct{}{}
	<-h.release
	h.served.Add(1)
	io.WriteString(w, "{}\n")
}

func isFeatures(r *http.Request) bool { return r.URL.Path == "/v1/features" }

// A server whose reads are all blocked refuses the next one with 429 and
// Retry-After without reading its body; the admitted ones complete; other
// paths are not limited.
func TestHTTPRefusesWithoutReadingTheBody(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 2, MaxQueue: 1})
	h := &blockingReads{entered: make(chan struct{}, 8), release: make(chan struct{})}
	handler := HTTPHandler(l, h, isFeatures, 1<<20)
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 3 { // 2 run, 1 waits
		wg.Go(func() {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/features", strings.NewReader(`{"service":"s"}`)))
			codes <- rec.Code
		})
	}
	<-h.entered
	<-h.entered
	waitFor(t, "a read to queue", func() bool { return l.Stats().Queued == 1 })

	body := &recordingBody{r: strings.NewReader(`{"service":"ranking","entities":{}}`)}
	req := httptest.NewRequest(http.MethodPost, "/v1/features", nil)
	req.Body = body
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("refusal: %d, Retry-After %q, want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if !strings.Contains(rec.Body.String(), `"error":"server at capacity`) {
		t.Fatalf("refusal body %q", rec.Body.String())
	}
	if n := body.reads.Load(); n != 0 {
		t.Fatalf("the refused request's body was read %d times", n)
	}
	// Another path is not a read: it goes through.
	other := httptest.NewRecorder()
	handler.ServeHTTP(other, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	close(h.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("an admitted read answered %d", c)
		}
	}
	if other.Code != http.StatusOK {
		t.Fatalf("/healthz answered %d", other.Code)
	}
	if st := l.Stats(); st.Refused != 1 || st.Admitted != 3 || st.Running != 0 {
		t.Fatalf("stats %+v, want 3 admitted and 1 refused", st)
	}
}

// Over a real connection: a refusal is a complete HTTP answer, and the
// connection carries the next request.
func TestHTTPRefusalKeepsTheConnection(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1, MaxQueue: 1})
	h := &blockingReads{entered: make(chan struct{}, 8), release: make(chan struct{})}
	srv := httptest.NewServer(HTTPHandler(l, h, isFeatures, 1<<20))
	defer srv.Close()
	post := func(c *http.Client) (*http.Response, error) {
		return c.Post(srv.URL+"/v1/features", "application/json", bytes.NewReader(bytes.Repeat([]byte(" "), 10_000)))
	}
	done := make(chan error, 2)
	for range 2 { // 1 runs, 1 waits
		go func() {
			resp, err := post(srv.Client())
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
	}
	<-h.entered
	waitFor(t, "a read to queue", func() bool { return l.Stats().Queued == 1 })

	var conns atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for range 3 {
		resp, err := post(c)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("answer %d, Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 refusals took %d connections, want 1", n)
	}
	close(h.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if h.served.Load() != 2 {
		t.Fatalf("%d reads served, want 2", h.served.Load())
	}
}

// gRPC: a call the Limiter would refuse is refused by the tap handle,
// before any interceptor or handler sees it; the admitted ones complete.
func TestGRPCRefusesInTheTap(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1, MaxQueue: 1})
	const method = "/grpc.health.v1.Health/Check"
	var seen atomic.Int64
	entered, release := make(chan struct{}, 4), make(chan struct{})
	count := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		seen.Add(1)
		return handler(ctx, req)
	})
	block := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == method {
			entered <- struct{}{}
			<-release
		}
		return handler(ctx, req)
	})
	opts := append([]grpc.ServerOption{count}, GRPCServerOptions(l, method)...)
	gs := grpc.NewServer(append(opts, block)...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx := context.Background()

	done := make(chan error, 2)
	for range 2 { // 1 runs, 1 waits
		go func() {
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			done <- err
		}()
	}
	<-entered
	waitFor(t, "a call to queue", func() bool { return l.Stats().Queued == 1 })
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "server at capacity") {
		t.Fatalf("refusal: %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := seen.Load(); n != 2 { // before the call to List below
		t.Fatalf("interceptors saw %d calls, want 2: the refused one got past the tap", n)
	}
	// A method not named is not limited.
	if _, err := client.List(ctx, &healthpb.HealthListRequest{}); err != nil && status.Code(err) != codes.Unimplemented {
		t.Fatalf("unlimited method: %v", err)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Stats(); st.Refused != 1 || st.Admitted != 2 || st.Running != 0 {
		t.Fatalf("stats %+v, want 2 admitted and 1 refused", st)
	}
}
