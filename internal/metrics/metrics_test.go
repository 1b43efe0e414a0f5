package metrics_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/metrics"
	"github.com/kiln-dev/kiln/internal/version"
)

// Observing a request allocates nothing once its route has answered its
// code before: the label values were looked up when the route was made.
func TestRouteObserveAllocatesNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := metrics.NewRequests(reg, "http", "HTTP", []string{"route"}, metrics.HTTPCode)
	rt := req.Route("/v1/features")
	rt.Observe(200, 0.001)
	if n := testing.AllocsPerRun(1000, func() { rt.Observe(200, 0.0002) }); n != 0 {
		t.Errorf("Observe allocates %v times per request", n)
	}
	rt.Observe(503, 0.5)
	if got := testutil.ToFloat64(rt.Counter(200)); got != 1002 {
		t.Errorf("200s counted %v, want 1002", got)
	}
	if got := testutil.ToFloat64(rt.Counter(503)); got != 1 {
		t.Errorf("503s counted %v, want 1", got)
	}
	if n := testutil.CollectAndCount(reg, "kiln_http_request_duration_seconds"); n != 1 {
		t.Errorf("%d latency series, want 1 (by route, not code)", n)
	}
}

// A gRPC server's calls are counted by service, method and code, and
// timed by service and method; an unknown method counts as other.
func TestGRPCInterceptors(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := metrics.NewGRPC(reg)
	gs := grpc.NewServer(g.ServerOptions()...)
	hs := health.NewServer()
	hs.SetServingStatus("ok", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	g.Init(gs)
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
	hc := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: %v", err)
	}
	const want = `
# HELP kiln_grpc_requests_total gRPC requests answered, by service and method and status code.
# TYPE kiln_grpc_requests_total counter
kiln_grpc_requests_total{code="NotFound",method="Check",service="grpc.health.v1.Health"} 1
kiln_grpc_requests_total{code="OK",method="Check",service="grpc.health.v1.Health"} 3
kiln_grpc_requests_total{code="OK",method="List",service="grpc.health.v1.Health"} 0
kiln_grpc_requests_total{code="OK",method="Watch",service="grpc.health.v1.Health"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kiln_grpc_requests_total"); err != nil {
		t.Error(err)
	}
}

// The registry holds the runtime's pause and scheduling histograms and
// the build's identity, and the handler serves them.
func TestRegistry(t *testing.T) {
	b := version.Info{Version: "v9.9.9", Revision: "abc", GoVersion: "go1.99"}
	reg := metrics.NewRegistry(b)
	w := httptest.NewRecorder()
	metrics.Handler(reg, slog.New(slog.DiscardHandler)).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	for _, s := range []string{
		`kiln_build_info{goversion="go1.99",revision="abc",version="v9.9.9"} 1`,
		"# TYPE go_gc_pauses_seconds histogram",
		"# TYPE go_sched_latencies_seconds histogram",
		"# TYPE process_cpu_seconds_total counter",
	} {
		if !bytes.Contains(body, []byte(s)) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
}
