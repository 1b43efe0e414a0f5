package serve

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/auth/authtest"
)

const q1Body = `{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`

// Every route of the API needs the scope its kind of request does; the
// probes need none. A refused request gets 401, 403 or 429 with a JSON
// error and never reaches the handler.
func TestRequireTokens(t *testing.T) {
	reader := &authtest.Token{Name: "reader", Scopes: auth.Read}
	pusher := &authtest.Token{Name: "pusher", Scopes: auth.Push}
	ops := &authtest.Token{Name: "ops", Scopes: auth.Admin}
	tokens, err := auth.Load(authtest.WriteTokens(t, reader, pusher, ops))
	if err != nil {
		t.Fatal(err)
	}
	s := feedServer(t)
	// The operators' routes and the dashboard are on the admin listener.
	h, admin := RequireTokens(s, tokens), RequireTokens(s.Admin(), tokens)
	for _, c := range []struct {
		req   string
		token *authtest.Token
		code  int
		msg   string
	}{
		{"GET /healthz", nil, 200, ""},
		{"GET /readyz", nil, 200, ""},
		{"GET /v1/metadata", nil, 401, "this server needs a bearer token"},
		{"GET /v1/metadata", &authtest.Token{Token: "kiln_nope"}, 401, "not one this server knows"},
		{"GET /v1/metadata", reader, 200, ""},
		{"GET /v1/metadata", pusher, 403, `token \"pusher\" may not read`},
		{"POST /v1/features", reader, 200, ""},
		{"POST /v1/features", ops, 403, `token \"ops\" may not read`},
		{"POST /get-online-features", reader, 400, ""}, // past the token: the body is Kiln's, not Feast's
		{"POST /v1/training-set", pusher, 403, `may not read`},
		{"POST /v1/push", reader, 403, `token \"reader\" may not push events`},
		{"POST /push", reader, 403, `token \"reader\" may not push events`},
		{"POST /v1/push", pusher, 403, "only serves"}, // past the token: this server takes no pushes
		{"POST /debug/rows", reader, 403, "may not use the diagnostics routes"},
		{"GET /debug/stats", ops, 200, ""},
		{"GET /debug/pprof/cmdline", reader, 403, "diagnostics"},
		{"GET /nope", nil, 401, "bearer token"},
		{"GET /metrics", reader, 403, "diagnostics"},
		{"GET /metrics", ops, 200, ""},
		{"GET /ui", nil, 200, ""},
	} {
		method, path, _ := strings.Cut(c.req, " ")
		r := httptest.NewRequest(method, path, strings.NewReader(q1Body))
		if c.token != nil {
			r.Header.Set("Authorization", "Bearer "+c.token.Token)
		}
		w := httptest.NewRecorder()
		if strings.HasPrefix(path, "/debug/") || path == "/metrics" || path == "/ui" {
			admin.ServeHTTP(w, r)
		} else {
			h.ServeHTTP(w, r)
		}
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%s: %d %s; want %d with %q", c.req, w.Code, w.Body, c.code, c.msg)
		}
		if w.Code >= 400 && !strings.HasPrefix(w.Body.String(), `{"error":`) {
			t.Errorf("%s: %q is not a JSON error", c.req, w.Body)
		}
		for _, tok := range []*authtest.Token{reader, pusher, ops} {
			if strings.Contains(w.Body.String(), tok.Token) {
				t.Errorf("%s: the answer quotes a token: %s", c.req, w.Body)
			}
		}
		switch auth := w.Header().Get("WWW-Authenticate"); {
		case w.Code == 401 && !strings.HasPrefix(auth, "Bearer "):
			t.Errorf("%s: 401 with WWW-Authenticate %q", c.req, auth)
		case w.Code == 403 && strings.Contains(c.msg, "may not") && !strings.Contains(auth, `error="insufficient_scope"`):
			t.Errorf("%s: 403 with WWW-Authenticate %q", c.req, auth)
		}
	}
}

// A token over its read limit gets 429 with Retry-After and a message
// naming the limit; another token's reads go on.
func TestRequireTokensRateLimit(t *testing.T) {
	slow := &authtest.Token{Name: "slow", Scopes: auth.Read, Limits: auth.Limits{ReadRPS: 0.5}}
	other := &authtest.Token{Name: "other", Scopes: auth.Read, Limits: auth.Limits{ReadRPS: 0.5}}
	tokens, err := auth.Load(authtest.WriteTokens(t, slow, other))
	if err != nil {
		t.Fatal(err)
	}
	h := RequireTokens(feedServer(t), tokens)
	read := func(tok *authtest.Token) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/features", strings.NewReader(q1Body))
		r.Header.Set("Authorization", "Bearer "+tok.Token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := read(slow); w.Code != 200 {
		t.Fatalf("first read: %d %s", w.Code, w.Body)
	}
	w := read(slow)
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || !strings.Contains(w.Body.String(), `token \"slow\" is over its read limit of 0.5 requests/s`) {
		t.Fatalf("second read: %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if w := read(other); w.Code != 200 {
		t.Fatalf("another token's read while the first is limited: %d %s", w.Code, w.Body)
	}
}

// BenchmarkQ1Auth is the cost of a token and its rate limit on a read:
// RW1's Q1 in-process through POST /v1/features, without tokens and with
// a token file of 100 tokens (the read's token last, every hash compared).
func BenchmarkQ1Auth(b *testing.B) {
	s := rankedServer(b, 1)
	var ts []*authtest.Token
	for i := range 100 {
		ts = append(ts, &authtest.Token{Name: fmt.Sprintf("t%d", i), Scopes: auth.Read, Limits: auth.Limits{ReadRPS: 1e9}})
	}
	tokens, err := auth.Load(authtest.WriteTokens(b, ts...))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(q1Body)
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"off", s}, {"token", RequireTokens(s, tokens)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "/v1/features", bytes.NewReader(body))
				r.Header.Set("Authorization", "Bearer "+ts[99].Token)
				c.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
