package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/metrics/metricstest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/version"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

const clicksProject = `
project: m
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, ms: float64}
views:
  user_clicks:
    entity: user
    source: clicks
    features:
      clicks: {agg: count, windows: [1h]}
      ms_max: {agg: max, field: ms, windows: [1h]}
services:
  all: {views: [user_clicks]}
`

var now = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// logLines returns the JSON log lines written to s so far.
func logLines(t *testing.T, s *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// startLogged starts a node of clicksProject with its admin listener and a
// JSON log at level into the returned buffer.
func startLogged(t *testing.T, level slog.Level) (*node.Node, *syncBuffer) {
	t.Helper()
	p, err := projectfile.Parse("m.yaml", []byte(clicksProject))
	if err != nil {
		t.Fatal(err)
	}
	log := new(syncBuffer)
	dir := t.TempDir()
	arch, err := archive.NewDir(filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{
		Project: p, DataDir: dir, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Archive: archive.New(arch),
		Logger: slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: level})),
		Ingest: ingest.Options{Now: func() time.Time { return now }},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, log
}

func do(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func clicks(ts ...time.Time) string {
	evs := make([]string, len(ts))
	for i, at := range ts {
		evs[i] = fmt.Sprintf(`{"user_id": %d, "ms": %d, "ts": %q}`, i%2+1, 10*i, at.Format(time.RFC3339Nano))
	}
	return `{"source": "clicks", "events": [` + strings.Join(evs, ",") + `]}`
}

// The counters on /metrics move by what happened: 7 events pushed, 2 of
// them too old for any window; 3 reads of 2 users' 2 features; one read
// refused as bad.
func TestMetricsCountWhatHappened(t *testing.T) {
	n, _ := startLogged(t, slog.LevelInfo)
	before := metricstest.Get(t, n.AdminURL()+"/metrics")
	if code, body := do(t, "GET", n.URL()+"/metrics", ""); code != http.StatusNotFound {
		t.Fatalf("/metrics on the API's port: %d %s", code, body)
	}

	fresh, old := now.Add(-time.Minute), now.Add(-48*time.Hour)
	code, body := do(t, "POST", n.URL()+"/v1/push", clicks(fresh, fresh, old, fresh, fresh, old, fresh))
	if code != http.StatusOK || !strings.Contains(body, `"accepted":5,"dropped_late":2`) {
		t.Fatalf("push: %d %s", code, body)
	}
	read := `{"service": "all", "entities": {"user": [{"user_id": 1}, {"user_id": 2}]}}`
	for range 3 {
		if code, body := do(t, "POST", n.URL()+"/v1/features", read); code != http.StatusOK {
			t.Fatalf("read: %d %s", code, body)
		}
	}
	if code, _ := do(t, "POST", n.URL()+"/v1/features", `{"features": ["nope"]}`); code != http.StatusBadRequest {
		t.Fatalf("a bad read answered %d", code)
	}

	s := metricstest.Get(t, n.AdminURL()+"/metrics")
	delta := func(name string, labels ...string) float64 {
		b, _ := before.Value(name, labels...)
		return s.Must(t, name, labels...) - b
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kiln_ingest_events_total", []string{"source", "clicks", "outcome", "accepted"}, 5},
		{"kiln_ingest_events_total", []string{"source", "clicks", "outcome", "late"}, 2},
		{"kiln_http_requests_total", []string{"route", "/v1/push", "code", "200"}, 1},
		{"kiln_http_requests_total", []string{"route", "/v1/features", "code", "200"}, 3},
		{"kiln_http_requests_total", []string{"route", "/v1/features", "code", "400"}, 1},
		{"kiln_http_request_duration_seconds", []string{"route", "/v1/features"}, 4},
		{"kiln_http_requests_total", []string{"route", "unmatched", "code", "404"}, 1},
		// 3 reads × 2 users × 2 features.
		{"kiln_read_values_served_total", nil, 12},
		{"kiln_read_service_values_total", []string{"service", "all"}, 12},
		{"kiln_read_duration_seconds", []string{"service", "all"}, 3},
		{"kiln_read_duration_seconds", []string{"service", "(features)"}, 0},
		{"kiln_read_refused_total", nil, 0},
		// The archive keeps every event pushed, late ones too.
		{"kiln_archive_journal_events_total", nil, 7},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s{%s} moved by %g, want %g", c.name, strings.Join(c.labels, ","), got, c.want)
		}
	}
	// Each read looks up 2 rows in the row cache: a hit or a miss.
	if got := delta("kiln_rowcache_hits_total") + delta("kiln_rowcache_misses_total"); got != 6 {
		t.Errorf("row cache hits + misses moved by %g, want 6", got)
	}
	if got := delta("kiln_store_write_duration_seconds"); got < 1 {
		t.Errorf("no store write timed after a push")
	}
	b := version.Get()
	if v := s.Must(t, "kiln_build_info", "version", b.Version, "revision", b.Revision, "goversion", b.GoVersion); v != 1 {
		t.Errorf("kiln_build_info = %g", v)
	}
	for _, name := range []string{"go_gc_pauses_seconds", "go_sched_latencies_seconds", "process_cpu_seconds_total", "go_goroutines"} {
		if s[name] == nil {
			t.Errorf("no %s on /metrics", name)
		}
	}
}

// A request is logged once: at debug level when it succeeds, at info
// with the message the client got when refused. Nothing a client sends
// in a header or a query string reaches the log.
func TestRequestLog(t *testing.T) {
	n, log := startLogged(t, slog.LevelDebug)
	const secret = "s3cr3t-token"
	do(t, "POST", n.URL()+"/v1/features", `{"service": "all", "entities": {"user": [{"user_id": 1}]}}`, "Authorization", "Bearer "+secret)
	do(t, "POST", n.URL()+"/v1/features?token="+secret, `{"features": ["nope"]}`, "Authorization", "Bearer "+secret)

	var start map[string]any
	var reqs []map[string]any
	for _, l := range logLines(t, log) {
		switch l["msg"] {
		case "kiln serving":
			start = l
		case "request":
			reqs = append(reqs, l)
		}
		if b, _ := json.Marshal(l); bytes.Contains(b, []byte(secret)) {
			t.Errorf("the log holds what the client sent in a header or query: %s", b)
		}
	}
	if start == nil || start["version"] != version.Get().Version || start["revision"] != version.Get().Revision {
		t.Errorf("start line %v: want the version and revision", start)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d request lines, want 2: %v", len(reqs), reqs)
	}
	ok, bad := reqs[0], reqs[1]
	if ok["level"] != "DEBUG" || ok["method"] != "POST" || ok["route"] != "/v1/features" || ok["status"] != 200.0 ||
		ok["bytes"].(float64) <= 0 || ok["duration"].(float64) <= 0 || !strings.HasPrefix(ok["remote"].(string), "127.0.0.1:") || ok["error"] != nil {
		t.Errorf("access line %v", ok)
	}
	if bad["level"] != "INFO" || bad["status"] != 400.0 || !strings.Contains(bad["error"].(string), `unknown feature(s) "nope"`) {
		t.Errorf("refusal line %v: want INFO, 400 and the message the client got", bad)
	}

	// At info level the successes are not logged, the refusals are.
	n2, log2 := startLogged(t, slog.LevelInfo)
	do(t, "POST", n2.URL()+"/v1/features", `{"service": "all", "entities": {"user": [{"user_id": 1}]}}`)
	do(t, "GET", n2.URL()+"/nope", "")
	var got []string
	for _, l := range logLines(t, log2) {
		if l["msg"] == "request" {
			got = append(got, fmt.Sprint(l["status"], " ", l["route"]))
		}
	}
	if strings.Join(got, "; ") != "404 unmatched" {
		t.Errorf("request lines at info: %q, want only the 404", got)
	}
}

// The operators' routes are on the admin listener only: HTTP and gRPC on
// one port there, 404 and UNIMPLEMENTED on the public ports.
func TestAdminListenerOnly(t *testing.T) {
	p, err := projectfile.Parse("m.yaml", []byte(clicksProject))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, DataDir: t.TempDir(), Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	read := `{"service": "all", "entities": {"user": [{"user_id": 1}]}}`
	for _, c := range []struct {
		method, url, body string
		code              int
	}{
		{"POST", n.URL() + "/debug/rows", read, 404},
		{"GET", n.URL() + "/debug/stats", "", 404},
		{"GET", n.URL() + "/debug/pprof/cmdline", "", 404},
		{"GET", n.URL() + "/metrics", "", 404},
		{"POST", n.AdminURL() + "/debug/rows", read, 200},
		{"GET", n.AdminURL() + "/debug/stats", "", 200},
		{"GET", n.AdminURL() + "/debug/pprof/cmdline", "", 200},
		{"GET", n.AdminURL() + "/metrics", "", 200},
		{"GET", n.AdminURL() + "/readyz", "", 200},
		// The dashboard's two reads are there too (same-origin for the
		// page), but no write.
		{"GET", n.AdminURL() + "/ui", "", 200},
		{"POST", n.AdminURL() + "/v1/features", read, 200},
		{"POST", n.AdminURL() + "/v1/push", `{"source": "clicks", "events": []}`, 404},
	} {
		if code, body := do(t, c.method, c.url, c.body); code != c.code {
			t.Errorf("%s %s: %d %.200s, want %d", c.method, c.url, code, body, c.code)
		}
	}
	req := &kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Service{Service: "all"},
		Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}}},
	}
	call := func(addr string) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = kilnv1.NewDiagnosticsClient(cc).GetRows(context.Background(), req)
		return err
	}
	if err := call(n.GRPCAddr); status.Code(err) != codes.Unimplemented {
		t.Errorf("GetRows on the public gRPC port: %v, want UNIMPLEMENTED", err)
	}
	if err := call(n.AdminAddr); err != nil {
		t.Errorf("GetRows on the admin listener: %v", err)
	}
}

// A process that only ingests has no read engine, so no Diagnostics: its
// admin listener serves /metrics, and a gRPC call there fails at once
// rather than waiting on a server that is not there.
func TestAdminListenerOfIngestOnly(t *testing.T) {
	addr := redistest.Standalone(t)
	p, err := projectfile.Parse("m.yaml", []byte("online_store: {type: redis, addrs: ["+addr+"]}\n"+clicksProject))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, Role: node.RoleIngest, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s := metricstest.Get(t, n.AdminURL()+"/metrics")
	if _, ok := s.Value("kiln_ingest_events_total", "source", "clicks", "outcome", "accepted"); !ok {
		t.Error("no kiln_ingest_events_total for source clicks")
	}
	if s["kiln_read_values_served_total"] != nil {
		t.Error("an ingest-only process reports reads")
	}
	cc, err := grpc.NewClient(n.AdminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kilnv1.NewDiagnosticsClient(cc).GetRows(ctx, &kilnv1.GetFeaturesRequest{})
	if err == nil || status.Code(err) == codes.DeadlineExceeded {
		t.Fatalf("GetRows on an ingest-only admin listener: %v, want a prompt failure", err)
	}
}
