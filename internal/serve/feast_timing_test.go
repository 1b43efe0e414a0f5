package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tracing"
)

// BenchmarkFeastVsFeatures serves RW1's query shapes in-process, over the
// embedded store holding a row for every key asked for, through Kiln's
// POST /v1/features and Feast's POST /get-online-features: Q1 (one user,
// service user_profile) and Q2 (one user and 500 posts, service ranking;
// in Feast's shape 500 rows each carrying the user, whose row is read once).
func BenchmarkFeastVsFeatures(b *testing.B) {
	s := rankedServer(b, 500)
	var posts, users, postKeys []string
	for i := 1; i <= 500; i++ {
		posts = append(posts, fmt.Sprint(i))
		users = append(users, "1")
		postKeys = append(postKeys, fmt.Sprintf(`{"post_id": %d}`, i))
	}
	cases := []struct{ name, path, body string }{
		{"Q1/v1-features", "/v1/features", `{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}}`},
		{"Q1/feast", "/get-online-features", `{"feature_service": "user_profile", "entities": {"user_id": [1]}}`},
		{"Q2/v1-features", "/v1/features", `{"service": "ranking", "entities": {"user": [{"user_id": 1}], "post": [` + strings.Join(postKeys, ",") + `]}}`},
		{"Q2/feast", "/get-online-features", `{"feature_service": "ranking", "full_feature_names": true, "entities": {"user_id": [` +
			strings.Join(users, ",") + `], "post_id": [` + strings.Join(posts, ",") + `]}}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, c.path, bytes.NewReader(body)))
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// rankedServer is a read-only server of the feed example over an in-memory
// store holding a row of user 1 and of posts 1 to posts.
func rankedServer(tb testing.TB, posts int) *Server {
	tb.Helper()
	return tracedRankedServer(tb, posts, nil)
}

// tracedRankedServer is rankedServer tracing into tp (nil: off), its
// store reads too.
func tracedRankedServer(tb testing.TB, posts int, tp trace.TracerProvider) *Server {
	tb.Helper()
	p, plans := kilntest.Compile(tb, examples.FeedProjectName, examples.FeedProject)
	st := kilntest.MemStore(tb)
	const now = int64(1_790_000_000_000)
	var kvs []store.KV
	add := func(view string, key int64) {
		plan := plans[p.View(view)]
		row := plan.NewRow()
		for _, kind := range []string{"view", "like", "share", "comment"} {
			plan.Fold(row, &event.Event{TS: now - 60_000, Fields: []event.Value{event.IntValue(1), event.IntValue(key), event.StringValue(kind), event.FloatValue(3)}}, now)
		}
		kvs = append(kvs, store.KV{Key: tile.AppendKey(nil, view, []event.Value{event.IntValue(key)}), Value: plan.AppendRow(nil, row)})
	}
	add("user_engagement", 1)
	for i := 1; i <= posts; i++ {
		add("post_engagement", int64(i))
	}
	if err := st.Write(context.Background(), kvs); err != nil {
		tb.Fatal(err)
	}
	var rows query.RowSource = st
	if tp != nil {
		rows = tracing.StoreRows(tp, st)
	}
	engine, err := query.New(query.Config{Project: p, Plans: plans, Rows: rows, Now: func() int64 { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Config{Project: p, Engine: engine, Tracing: tp})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
