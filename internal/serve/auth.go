package serve

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/internal/auth"
)

// RequireTokens wraps the API's handler h so that every request but the
// probes (/healthz, /readyz) carries a bearer token of tokens with the
// scope its route needs (ScopeOf), within the token's rate limit. A
// request refused gets 401 (no token, or an unknown one; with
// WWW-Authenticate: Bearer), 403 (the scope is missing) or 429 (over the
// limit; with Retry-After), with a JSON error, before its body is read:
// nothing of it is applied.
func RequireTokens(h http.Handler, tokens *auth.Tokens) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, public := ScopeOf(r.URL.Path)
		if public {
			h.ServeHTTP(w, r)
			return
		}
		d := tokens.Check(r.Header.Get("Authorization"), scope)
		if d.Outcome == auth.Allowed {
			h.ServeHTTP(w, r)
			return
		}
		// The body is not read: close the connection rather than read
		// what may be a large body to reuse it.
		if r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
		}
		switch d.Outcome {
		case auth.Missing:
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln"`)
			writeError(w, http.StatusUnauthorized, d.Message(), nil)
		case auth.Unknown:
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, d.Message(), nil)
		case auth.Forbidden:
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln", error="insufficient_scope", scope="`+scope.String()+`"`)
			writeError(w, http.StatusForbidden, d.Message(), nil)
		case auth.Limited:
			w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfter()))
			writeError(w, http.StatusTooManyRequests, d.Message(), nil)
		}
	})
}

// ScopeOf is the scope a path's requests need, or public for the probes,
// which need none. Pushes (Kiln's and Feast's) need push; the raw rows and
// the stats (/debug/) admin; everything else, reads and unknown paths
// alike, read.
func ScopeOf(path string) (scope auth.Scope, public bool) {
	switch {
	case path == "/healthz", path == "/readyz":
		return 0, true
	case path == "/ui" || strings.HasPrefix(path, "/ui/"):
		// The dashboard's page and files: a browser opening it cannot send
		// a token; the page asks for one and sends it with its calls.
		return 0, true
	case path == "/v1/push", path == "/push":
		return auth.Push, false
	case path == "/debug" || strings.HasPrefix(path, "/debug/"), path == "/metrics":
		return auth.Admin, false
	}
	return auth.Read, false
}
