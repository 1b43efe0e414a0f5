package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
)

// Each kind of read failure gets its status: the caller's mistakes 400,
// overload 429 with Retry-After, the store's trouble a retryable 503.
func TestReadErrorStatus(t *testing.T) {
	s := &Server{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
	for _, c := range []struct {
		err  error
		code int
	}{
		{&query.Error{Msg: "bad"}, http.StatusBadRequest},
		{admission.ErrOverloaded, http.StatusTooManyRequests},
		{fmt.Errorf("wrapped: %w", admission.ErrOverloaded), http.StatusTooManyRequests},
		{fmt.Errorf("get: %w", store.ErrUnavailable), http.StatusServiceUnavailable},
		{store.ErrClosed, http.StatusServiceUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable},
		{errors.New("disk on fire"), http.StatusServiceUnavailable},
	} {
		w := httptest.NewRecorder()
		s.readError(w, c.err)
		if w.Code != c.code {
			t.Errorf("%v: status %d, want %d", c.err, w.Code, c.code)
		}
		if c.code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Errorf("%v: 429 without Retry-After", c.err)
		}
	}
}
