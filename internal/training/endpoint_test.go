package training_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
)

func postTraining(t *testing.T, n *node.Node, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(n.URL()+"/v1/training-set", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// POST /v1/training-set answers every row as sent, members in order, with
// the served values added: as served, what /v1/features answered at each
// row's time.
func TestTrainingSetEndpoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n, _ := nodetest.StartClock(t, "kiln.yaml", []byte(project), func() time.Time { return time.UnixMilli(clock.Load()) })
	var reads []served
	for range 60 {
		clock.Add(rng.Int64N(20_000))
		now := clock.Load()
		if rng.IntN(4) == 0 {
			reads = append(reads, read(t, n, now))
			clock.Add(1)
			continue
		}
		push(t, n, []pushed{randomEvent(rng, now), randomEvent(rng, now)}, http.StatusOK)
	}
	if err := n.Journal.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for i, r := range reads {
		rows = append(rows, fmt.Sprintf(`{"label": %d, "ts": %d, "post_id": "p%d", "user_id": %d, "note": "row %d"}`, i%2, r.at, 1+i%posts, 1+i%users, i))
	}
	status, body := postTraining(t, n, `{"service": "all", "as_served": true, "spine": [`+strings.Join(rows, ",")+`]}`)
	if status != http.StatusOK {
		t.Fatalf("%d: %s", status, body)
	}
	var ans struct {
		Rows    []map[string]any
		Summary struct{ Rows int }
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Rows) != len(reads) || ans.Summary.Rows != len(reads) {
		t.Fatalf("%d rows, summary %+v, want %d", len(ans.Rows), ans.Summary, len(reads))
	}
	// Each row begins as it was sent.
	if want := `{"rows":[` + strings.TrimSuffix(rows[0], "}") + `,"user_w:views_1m":`; !strings.HasPrefix(string(body), want) {
		t.Errorf("answer begins %.200s, want %s", body, want)
	}
	for i, r := range reads {
		row := ans.Rows[i]
		user, post := int64(1+i%users), fmt.Sprintf("p%d", 1+i%posts)
		for name, got := range row {
			var want any
			switch {
			case strings.HasPrefix(name, "user_w:"), strings.HasPrefix(name, "user_all:"):
				want = r.users[user][name]
			case strings.HasPrefix(name, "post_w:"):
				want = r.posts[post][name]
			default:
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("row %d: %s = %v, served %v", i, name, got, want)
			}
		}
	}
}

// A bad request is refused whole with a 400 naming what is wrong.
func TestTrainingSetEndpointRefuses(t *testing.T) {
	n, _ := nodetest.Start(t, "kiln.yaml", []byte(project), t0)
	many := strings.Repeat(`{"ts": 1, "user_id": 1, "post_id": "a"},`, 100_001)
	for _, tc := range []struct{ body, want string }{
		{`{"service": "all", "spine": [{"ts": "2026-03-10T12:00:00Z", "user_id": 1, "post_id": "p1"}, {"ts": "2026-03-10T12:00:00Z", "user_id": "x", "post_id": "p1"}]}`,
			`"index":1,"field":"user_id"`},
		{`{"service": "all", "spine": [{"ts": "2026-03-10T12:00:00Z", "user_id": 1}]}`, `"index":0,"field":"post_id","message":"missing: it is the key of entity post"`},
		{`{"service": "all", "spine": [{"ts": "noon", "user_id": 1, "post_id": "p1"}]}`, `"field":"ts","message":"\"noon\" is not a time`},
		{`{"service": "all", "spine": [{"user_id": 1, "post_id": "p1"}]}`, `"field":"ts","message":"missing`},
		{`{"service": "all", "time_column": "at", "spine": [{"ts": 1, "user_id": 1, "post_id": "p1"}]}`, `"field":"at"`},
		{`{"service": "all", "spine": [{"ts": 1, "user_id": null, "post_id": "p1"}]}`, `"field":"user_id","message":"cannot be null`},
		{`{"service": "all", "spine": [[1, 2]]}`, `"index":0,"message":"a spine row must be an object`},
		{`{"service": "all", "spine": [{"ts": 1, "user_id": 1, "post_id": "p1", "user_w:views_1m": 3}]}`, `"field":"user_w:views_1m"`},
		{`{"service": "nope", "spine": [{"ts": 1}]}`, `service \"nope\" is not defined`},
		{`{"features": ["user_w:nope"], "spine": [{"ts": 1}]}`, `unknown feature(s) \"user_w:nope\"`},
		{`{"service": "all", "spine": []}`, `"spine\" is empty`},
		{`{"service": "all", "spine": {}}`, `spine`},
		{`{"service": "all", "rows": []}`, `unknown field`},
		{`{"service": "all", "spine": [` + strings.TrimSuffix(many, ",") + `]}`, `100001 spine rows in one request; the limit is 100000`},
	} {
		status, body := postTraining(t, n, tc.body)
		if status != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
			t.Errorf("%.80s: %d %s, want 400 saying %s", tc.body, status, body, tc.want)
		}
	}
}
