package serve

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// FuzzFeaturesRequest feeds arbitrary bodies to POST /v1/features over a
// store holding a few rows: the server answers every one with a JSON
// status it documents and never panics.
func FuzzFeaturesRequest(f *testing.F) {
	s := feedServer(f)
	f.Add([]byte(`{"service": "ranking", "entities": {"user": [{"user_id": 1}], "post": [{"post_id": 1}, {"post_id": 2}]}}`))
	f.Add([]byte(`{"features": ["user_engagement:views_1h", "user_engagement:last_post"], "entities": {"user": [{"user_id": 1}]}}`))
	f.Add([]byte(`{"service": "user_profile", "entities": {"user": [{"user_id": "1"}, {}, null, 5]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/features", bytes.NewReader(body)))
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest:
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		if !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"`)) {
			t.Fatalf("answer is not a JSON object: %s", w.Body)
		}
	})
}

// feedServer is a read-only server of the feed example over an in-memory
// store holding a row of user 1 and one of post 1.
func feedServer(tb testing.TB) *Server {
	tb.Helper()
	p, plans := kilntest.Compile(tb, examples.FeedProjectName, examples.FeedProject)
	st := kilntest.MemStore(tb)
	const now = int64(1_790_000_000_000)
	for _, view := range []string{"user_engagement", "post_engagement"} {
		plan := plans[p.View(view)]
		row := plan.NewRow()
		plan.Fold(row, &event.Event{TS: now - 1000, Fields: []event.Value{event.IntValue(1), event.IntValue(1), event.StringValue("view"), event.FloatValue(3)}}, now)
		st.Write(context.Background(), []store.KV{{Key: tile.AppendKey(nil, view, []event.Value{event.IntValue(1)}), Value: plan.AppendRow(nil, row)}})
	}
	engine, err := query.New(query.Config{Project: p, Plans: plans, Rows: st, Now: func() int64 { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Config{Project: p, Engine: engine})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
