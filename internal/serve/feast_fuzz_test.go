package serve

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzFeastRequest feeds arbitrary bodies to POST /get-online-features
// (with and without statuses) and to POST /push of a read-only server: every
// one gets a JSON answer with a status the API documents, never a panic.
func FuzzFeastRequest(f *testing.F) {
	s := feedServer(f)
	f.Add([]byte(`{"feature_service": "ranking", "entities": {"user_id": [1, 1], "post_id": [1, 2]}, "full_feature_names": true}`))
	f.Add([]byte(`{"features": ["user_engagement:views_1h", "user_engagement:last_post"], "entities": {"user_id": [1, 2, 99]}}`))
	f.Add([]byte(`{"features": ["post_engagement:views_1h"], "entities": {"post_id": ["1", null, {}, 1.5]}}`))
	f.Add([]byte(`{"push_source_name": "engagements", "df": {"user_id": [1], "ts": ["2026-11-26 10:00:00"]}, "to": "online"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		for _, path := range []string{"/get-online-features", "/get-online-features?status=true", "/push"} {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
			switch w.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusForbidden:
			default:
				t.Fatalf("%s: status %d for %q: %s", path, w.Code, body, w.Body)
			}
			if !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"`)) {
				t.Fatalf("%s: answer is not a JSON object: %s", path, w.Body)
			}
		}
	})
}
