package serve

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

// The router answers what it does not route with Kiln's JSON errors: a
// method a path does not take (HEAD included) with 405 and Allow, a path
// with no route, or one that is not clean, with 404 rather than a redirect.
// The profiler takes any method.
func TestRouterRefusals(t *testing.T) {
	s := feedServer(t)
	for _, c := range []struct {
		req, allow string
		code       int
		msg        string
	}{
		{"GET /healthz", "", 200, ""},
		{"HEAD /healthz", "GET", 405, "/healthz takes GET, not HEAD"},
		{"OPTIONS /readyz", "GET", 405, "/readyz takes GET, not OPTIONS"},
		{"GET /v1/features", "POST", 405, "/v1/features takes POST, not GET"},
		{"HEAD /v1/push", "POST", 405, "/v1/push takes POST, not HEAD"},
		{"POST /v1/push", "", 403, "only serves"},
		{"GET /nope", "", 404, "no route /nope; routes are: GET /debug/stats, GET /healthz, GET /readyz, GET /v1/metadata, POST /debug/rows, POST /get-online-features, POST /push, POST /v1/features, POST /v1/push"},
		{"GET /healthz/", "", 404, "no route /healthz/"},
		{"POST /v1//features", "", 404, "no route /v1//features"},
		{"GET /v1/../healthz", "", 404, "no route /v1/../healthz"},
		{"GET /debug/pprof", "", 404, "no route /debug/pprof;"},
		{"POST /v1%2Ffeatures", "", 400, "not a features request"},
		{"GET /%68ealthz", "", 200, ""},
		{"POST /debug/pprof/cmdline", "", 200, ""},
	} {
		method, path, _ := strings.Cut(c.req, " ")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		if w.Code != c.code || w.Header().Get("Allow") != c.allow || w.Header().Get("Location") != "" {
			t.Errorf("%s: %d, Allow %q, Location %q; want %d, Allow %q", c.req, w.Code, w.Header().Get("Allow"), w.Header().Get("Location"), c.code, c.allow)
		}
		if w.Code >= 400 && !strings.HasPrefix(w.Body.String(), `{"error":`) || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%s: body %q, want a JSON error with %q", c.req, w.Body, c.msg)
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
