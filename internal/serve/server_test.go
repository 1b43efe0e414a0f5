package serve

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The router answers what it does not route with Kiln's JSON errors: a
// method a path does not take (HEAD included) with 405 and Allow, a path
// with no route, or one that is not clean, with 404 rather than a redirect.
// The operators' routes are not on the API's listener.
func TestRouterRefusals(t *testing.T) {
	s := feedServer(t)
	check(t, s, []routeCase{
		{"GET /healthz", "", 200, ""},
		{"HEAD /healthz", "GET", 405, "/healthz takes GET, not HEAD"},
		{"OPTIONS /readyz", "GET", 405, "/readyz takes GET, not OPTIONS"},
		{"GET /v1/features", "POST", 405, "/v1/features takes POST, not GET"},
		{"HEAD /v1/push", "POST", 405, "/v1/push takes POST, not HEAD"},
		{"POST /v1/push", "", 403, "only serves"},
		{"GET /nope", "", 404, "no route /nope; routes are: GET /healthz, GET /readyz, GET /v1/metadata, POST /get-online-features, POST /push, POST /v1/features, POST /v1/push, POST /v1/training-set"},
		{"GET /healthz/", "", 404, "no route /healthz/"},
		{"POST /v1//features", "", 404, "no route /v1//features"},
		{"GET /v1/../healthz", "", 404, "no route /v1/../healthz"},
		{"POST /v1%2Ffeatures", "", 400, "not a features request"},
		{"GET /%68ealthz", "", 200, ""},
		{"GET /metrics", "", 404, "no route /metrics"},
		{"GET /debug/stats", "", 404, "no route /debug/stats"},
		{"POST /debug/rows", "", 404, "no route /debug/rows"},
		{"GET /debug/pprof/", "", 404, "no route /debug/pprof/"},
		{"POST /debug/pprof/cmdline", "", 404, "no route /debug/pprof/cmdline"},
	})
}

// The admin listener routes as the API's does, and serves what operators
// read: the metrics, the profiler (any method), the raw rows, the stats,
// the probes and the dashboard with the two reads it makes; none of the
// API's other routes.
func TestAdminRouterRefusals(t *testing.T) {
	s := feedServer(t)
	check(t, s.Admin(), []routeCase{
		{"GET /healthz", "", 200, ""},
		{"GET /readyz", "", 200, ""},
		{"GET /metrics", "", 200, "kiln_http_requests_total"},
		{"POST /metrics", "GET", 405, "/metrics takes GET, not POST"},
		{"GET /debug/stats", "", 200, "gomaxprocs"},
		{"GET /debug/rows", "POST", 405, "/debug/rows takes POST, not GET"},
		{"GET /debug/pprof", "", 404, "no route /debug/pprof;"},
		{"POST /debug/pprof/cmdline", "", 200, ""},
		{"GET /nope", "", 404, "no route /nope; routes are: * /debug/pprof/, GET /debug/stats, GET /healthz, GET /metrics, GET /readyz, GET /ui, GET /ui/{file}, GET /v1/metadata, POST /debug/rows, POST /v1/features"},
		{"GET /v1/metadata", "", 200, `"project":"feed"`},
		{"GET /v1/features", "POST", 405, "/v1/features takes POST, not GET"},
		{"POST /v1/push", "", 404, "no route /v1/push"},
		{"POST /v1/training-set", "", 404, "no route /v1/training-set"},
		{"GET /ui", "", 200, "<title>"},
		{"POST /ui", "GET", 405, "/ui takes GET, not POST"},
		{"GET /ui/ui.js", "", 200, "/metrics"},
		{"GET /ui/nope.js", "", 404, "no file /ui/nope.js: the dashboard is at /ui"},
		{"GET /ui/index.html", "", 404, "no file /ui/index.html"},
		{"GET /ui/", "", 404, "no route /ui/"},
	})
}

type routeCase struct {
	req, allow string
	code       int
	msg        string
}

func check(t *testing.T, h http.Handler, cases []routeCase) {
	t.Helper()
	for _, c := range cases {
		method, path, _ := strings.Cut(c.req, " ")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		if w.Code != c.code || w.Header().Get("Allow") != c.allow || w.Header().Get("Location") != "" {
			t.Errorf("%s: %d, Allow %q, Location %q; want %d, Allow %q", c.req, w.Code, w.Header().Get("Allow"), w.Header().Get("Location"), c.code, c.allow)
		}
		if w.Code >= 400 && !strings.HasPrefix(w.Body.String(), `{"error":`) || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%s: body %.300q, want a JSON error with %q", c.req, w.Body, c.msg)
		}
	}
}

// A process whose archive journal failed takes no event until it restarts:
// /readyz says so, with the reason.
func TestReadyzSaysWhenBroken(t *testing.T) {
	s := feedServer(t)
	var broken error
	s.cfg.Broken = func() error { return broken }
	get := func() (int, string) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	broken = errors.New("archive journal: write seg-1.log: no space left on device (restart to recover what is on disk)")
	if code, body := get(); code != 503 || !strings.Contains(body, "no space left on device") {
		t.Errorf("/readyz with a broken journal: %d %s", code, body)
	}
}
