package serve

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// A read the store fails: the store read's span and the request's have the
// status Error, with what failed and what the client was told.
func TestTracedStoreFailure(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	st := kilntest.MemStore(t)
	engine, err := query.New(query.Config{Project: p, Plans: plans, Rows: tracing.StoreRows(tp, st)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Project: p, Engine: engine, Tracing: tp})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/features", bytes.NewReader([]byte(`{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`))))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("a read of a closed store: %d %s", w.Code, w.Body)
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	for name, want := range map[string]string{tracing.StoreReadSpan: "closed", "POST /v1/features": "the server is shutting down"} {
		s := spans[name]
		if s == nil {
			t.Fatalf("no span %s (spans %v)", name, rec.Ended())
		}
		if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, want) {
			t.Errorf("span %s: status %v, want Error saying %q", name, s.Status(), want)
		}
		if ev := s.Events(); len(ev) != 1 || ev[0].Name != "exception" {
			t.Errorf("span %s: events %v, want the exception", name, ev)
		}
	}
}
