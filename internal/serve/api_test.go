package serve_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/serve"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// testNode starts a node on the feed example over a real loopback listener,
// with a clock the test moves.
func testNode(t *testing.T, dir string, clock *atomic.Int64) *node.Node {
	t.Helper()
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{
		Project: p, DataDir: dir, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Ingest: ingest.Options{Now: func() time.Time { return time.UnixMilli(clock.Load()) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response %q is not JSON: %v", raw, err)
	}
	return resp.StatusCode, out
}

func mustPost(t *testing.T, url, body string) map[string]any {
	t.Helper()
	code, out := post(t, url, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s: %d %v", url, code, out)
	}
	return out
}

// entity returns the i-th entity of a type from a features response.
func entity(t *testing.T, out map[string]any, typ string, i int) map[string]any {
	t.Helper()
	list, ok := out["entities"].(map[string]any)[typ].([]any)
	if !ok || len(list) <= i {
		t.Fatalf("response has no %s #%d: %v", typ, i, out)
	}
	return list[i].(map[string]any)
}

func pushEvents(t *testing.T, n *node.Node, events ...string) map[string]any {
	t.Helper()
	return mustPost(t, n.URL()+"/v1/push", `{"source": "engagements", "events": [`+strings.Join(events, ",")+`]}`)
}

func ev(user, post int, kind string, dwell float64, at time.Time) string {
	return fmt.Sprintf(`{"user_id": %d, "post_id": %d, "kind": %q, "dwell_ms": %g, "ts": %q}`, user, post, kind, dwell, at.Format(time.RFC3339Nano))
}

func TestPushAndServe(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()

	res := pushEvents(t, n,
		ev(1, 100, "view", 1000, t0.Add(-time.Minute)),
		ev(1, 101, "view", 3000, t0.Add(-2*time.Hour)),
		ev(1, 102, "like", 0, t0.Add(-30*time.Minute)),
		fmt.Sprintf(`{"user_id": 2, "post_id": 100, "kind": "view", "dwell_ms": 10, "ts": %d}`, t0.Add(-10*time.Second).UnixMilli()),
		ev(1, 103, "view", 500, t0.Add(-40*24*time.Hour)), // older than 30d: only last_post could see it
	)
	if res["accepted"].(float64) != 5 || res["dropped_late"].(float64) != 0 {
		t.Fatalf("push result %v", res)
	}
	if late := fmt.Sprint(res["late_by_view"]); late != "map[post_engagement:1]" { // the 40-day-old event
		t.Fatalf("push result %v: late_by_view %s", res, late)
	}

	out := mustPost(t, n.URL()+"/v1/features", `{"service": "user_profile", "entities": {"user": [{"user_id": 1}, {"user_id": 3}, {"user_id": 2}]}}`)
	u1 := entity(t, out, "user", 0)
	if u1["status"] != "present" || u1["event_time"] != "2026-11-26T09:59:00.000Z" {
		t.Fatalf("user 1: %v", u1)
	}
	f := u1["features"].(map[string]any)
	want := map[string]any{
		"user_engagement:views_1h": 1.0, "user_engagement:views_24h": 2.0, "user_engagement:views_30d": 2.0,
		"user_engagement:likes_1h": 1.0, "user_engagement:dwell_mean_24h": 2000.0, "user_engagement:dwell_max_24h": 3000.0,
		"user_engagement:last_post": 100.0,
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("user 1 %s = %v, want %v", k, f[k], v)
		}
	}
	if len(f) != 12 {
		t.Errorf("user 1 has %d features, want 12", len(f))
	}
	if u3 := entity(t, out, "user", 1); u3["status"] != "not_found" || u3["event_time"] != nil || u3["features"].(map[string]any)["user_engagement:views_1h"] != nil {
		t.Errorf("user 3: %v", u3)
	}
	if u2 := entity(t, out, "user", 2); u2["key"].(map[string]any)["user_id"] != 2.0 || u2["features"].(map[string]any)["user_engagement:views_1h"] != 1.0 {
		t.Errorf("user 2 (third in the request, third in the answer): %v", u2)
	}

	// One request: one user and several posts, named features.
	out = mustPost(t, n.URL()+"/v1/features", `{"features": ["post_engagement:views_5m", "user_engagement:likes_24h", "post_engagement:dwell_mean_1h"],
		"entities": {"user": [{"user_id": 1}], "post": [{"post_id": 100}, {"post_id": 7}]}}`)
	p100 := entity(t, out, "post", 0)["features"].(map[string]any)
	if p100["post_engagement:views_5m"] != 2.0 || p100["post_engagement:dwell_mean_1h"] != 505.0 || len(p100) != 2 {
		t.Errorf("post 100: %v", p100)
	}
	if entity(t, out, "post", 1)["status"] != "not_found" {
		t.Errorf("post 7: %v", entity(t, out, "post", 1))
	}
	if u := entity(t, out, "user", 0)["features"].(map[string]any); u["user_engagement:likes_24h"] != 1.0 || len(u) != 1 {
		t.Errorf("user 1: %v", u)
	}

	// Time passes: the 5m window empties, the 24h one keeps its events.
	clock.Store(t0.Add(10 * time.Minute).UnixMilli())
	out = mustPost(t, n.URL()+"/v1/features", `{"features": ["post_engagement:views_5m", "post_engagement:views_24h"], "entities": {"post": [{"post_id": 100}]}}`)
	if p := entity(t, out, "post", 0)["features"].(map[string]any); p["post_engagement:views_5m"] != 0.0 || p["post_engagement:views_24h"] != 2.0 {
		t.Errorf("post 100 ten minutes later: %v", p)
	}
}

func TestRestartKeepsData(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	dir := t.TempDir()
	n := testNode(t, dir, &clock)
	pushEvents(t, n, ev(5, 50, "view", 100, t0.Add(-time.Minute)), ev(5, 51, "like", 0, t0.Add(-time.Minute)))
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = testNode(t, dir, &clock)
	defer n.Close()
	out := mustPost(t, n.URL()+"/v1/features", `{"service": "ranking", "entities": {"user": [{"user_id": 5}], "post": [{"post_id": 50}, {"post_id": 51}]}}`)
	if f := entity(t, out, "user", 0)["features"].(map[string]any); f["user_engagement:views_1h"] != 1.0 || f["user_engagement:likes_1h"] != 1.0 || f["user_engagement:last_post"] != 51.0 {
		t.Fatalf("user 5 after restart: %v", f)
	}
	if f := entity(t, out, "post", 1)["features"].(map[string]any); f["post_engagement:likes_5m"] != 1.0 || len(f) != 19 {
		t.Fatalf("post 51 after restart: %v", f)
	}
	// The restarted node keeps counting from the stored rows.
	pushEvents(t, n, ev(5, 52, "view", 100, t0))
	out = mustPost(t, n.URL()+"/v1/features", `{"features": ["user_engagement:views_1h"], "entities": {"user": [{"user_id": 5}]}}`)
	if f := entity(t, out, "user", 0)["features"].(map[string]any); f["user_engagement:views_1h"] != 2.0 {
		t.Fatalf("user 5 after another push: %v", f)
	}
}

// Every bad request gets a 4xx with a message, and changes nothing.
func TestBadRequests(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()
	f := func(method, path, body string, wantCode int, wantMsg ...string) {
		t.Helper()
		req, _ := http.NewRequest(method, n.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantCode {
			t.Errorf("%s %s %.60s: status %d, want %d (%s)", method, path, body, resp.StatusCode, wantCode, raw)
			return
		}
		var out struct {
			Error   string `json:"error"`
			Details []struct {
				Index int    `json:"index"`
				Field string `json:"field"`
			} `json:"details"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Error == "" {
			t.Errorf("%s %s: body %q is not a JSON error", method, path, raw)
			return
		}
		for _, w := range wantMsg {
			if !strings.Contains(string(raw), w) {
				t.Errorf("%s %s %.60s: %s lacks %q", method, path, body, raw, w)
			}
		}
	}
	good := ev(1, 1, "view", 1, t0)
	f("GET", "/nope", "", 404, "no route /nope", "POST /v1/features")
	f("GET", "/v1/features", "", 405, "takes POST")
	f("DELETE", "/v1/push", "", 405)
	f("POST", "/v1/push", "{", 400, "cut short")
	f("POST", "/v1/push", `{"source": "engagements", "events": [`+good+`, {"user_id": "x", "post_id": 1, "ts": `+fmt.Sprint(t0.UnixMilli())+`}, {"post_id": 2, "ts": "soon"}]}`, 400,
		`"index":1`, `"field":"user_id"`, `"index":2`, "not an RFC 3339 time", "nothing was applied")
	f("POST", "/v1/push", `{"source": "engagements", "events": [`+ev(1, 1, "view", 1, t0.Add(time.Hour))+`]}`, 400, "ahead of the server clock")
	f("POST", "/v1/push", `{"source": "clicks", "events": []}`, 400, `source \"clicks\" is not defined`)
	f("POST", "/v1/push", `{"source": "engagements", "events": [{"user_id": 1, "post_id": 1, "ts": `+fmt.Sprint(t0.Unix())+`}]}`, 400,
		fmt.Sprintf(`event time %d is before 2000-01-01 (min_event_time of source engagements); it looks like seconds since 1970: send milliseconds (%d)`, t0.Unix(), t0.UnixMilli()))
	f("POST", "/v1/push", `{"source": "engagements", "events": [{"user_id": 1, "post_id": 1, "ts": 0}]}`, 400, "event time 0 is before 2000-01-01")
	f("POST", "/v1/push", `{"source": "engagements", "events": [`+strings.Repeat(good+",", 200000)+good+`]}`, 413, "limit")
	f("POST", "/v1/features", `not json`, 400, "not a features request")
	f("POST", "/v1/features", `{"service": "nope", "entities": {"user": [{"user_id": 1}]}}`, 400, "service \\\"nope\\\" is not defined", "ranking")
	f("POST", "/v1/features", `{"features": ["user_engagement:views_2h"], "entities": {"user": [{"user_id": 1}]}}`, 400, "unknown feature", "views_2h")
	f("POST", "/v1/features", `{"features": [], "entities": {"user": [{"user_id": 1}]}}`, 400, "no features requested")
	f("POST", "/v1/features", `{"service": "user_profile", "features": ["user_engagement:views_1h"], "entities": {}}`, 400, "not both")
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"post": [{"post_id": 1}]}}`, 400, "entity \\\"post\\\" is given but none")
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"users": [{"user_id": 1}]}}`, 400, "entity \\\"users\\\" is not defined")
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {}}`, 400, "need entity \\\"user\\\"")
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"user": []}}`, 400, `entities.user is empty: give at least one key, like {\"user_id\": 1}`)
	f("POST", "/v1/features", `{"service": "ranking", "entities": {"user": [{"user_id": 1}], "post": null}}`, 400, `entities.post is empty: give at least one key, like {\"post_id\": 1}`)
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"user": [{"user_id": "1"}, {"uid": 2}, 5]}}`, 400,
		"not an int64", "not a key field", "must be an object")
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"user": [{"user_id": 1}]}, "now": 5}`, 400, "unknown field")
	many := strings.Repeat(`{"user_id": 1},`, serve.MaxEntities)
	f("POST", "/v1/features", `{"service": "user_profile", "entities": {"user": [`+many+`{"user_id": 2}]}}`, 400, "more than 10000 entities")

	// None of the refused pushes left a trace.
	out := mustPost(t, n.URL()+"/v1/features", `{"features": ["user_engagement:views_1h"], "entities": {"user": [{"user_id": 1}]}}`)
	if u := entity(t, out, "user", 0); u["status"] != "not_found" {
		t.Fatalf("user 1 after refused pushes: %v", u)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(n.URL() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
}

// Error answers speak of JSON and the API, never of Go's types, and quote
// what they quote as written: not HTML-escaped.
func TestErrorBodiesSpeakJSON(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()
	good := ev(1, 1, "view", 1, t0)
	for _, c := range []struct {
		path, body string
		want       []string
	}{
		{"/v1/push", `[]`, []string{"the body must be a JSON object, not a JSON array", `send {\"source\": \"<name>\"`}},
		{"/v1/push", `"x"`, []string{"the body must be a JSON object", "not a JSON string"}},
		{"/v1/push", `{"source": 5, "events": []}`, []string{"source must be a JSON string, the name of a source, not a JSON number"}},
		{"/v1/push", `{"source": "engagements", "events": "x"}`, []string{"events must be a JSON array of event objects, not a JSON string"}},
		{"/v1/push", `{"source": "engagements", "events": {"a": 1}}`, []string{"events must be a JSON array of event objects, not a JSON object"}},
		{"/v1/push", `{"events": 7, "source": "engagements"}`, []string{"events must be a JSON array of event objects, not a JSON number"}},
		{"/v1/push", `{"source": "engagements", "events": [5, []]}`, []string{"must be a JSON object"}},
		{"/v1/push", `{"source": "engagements", "events": [` + good + `], "extra": 1}`, []string{`unknown field \"extra\"`}},
		{"/v1/push", `{"source": "engagements", "events": [{"user_id": [1], "post_id": {}, "ts": "<script>&"}]}`, []string{`\"<script>&\"`}},
		{"/v1/push", `{"source": "<b>", "events": []}`, []string{`source \"<b>\" is not defined`}},
		{"/v1/push", `{`, []string{"cut short"}},
		{"/v1/features", `[]`, []string{"the body must be a JSON object, not a JSON array", `send {\"service\": \"<name>\"`}},
		{"/v1/features", `{"service": 5}`, []string{"service must be a JSON string, the name of a service, not a JSON number"}},
		{"/v1/features", `{"features": "user_engagement:views_1h", "entities": {"user": [{"user_id": 1}]}}`, []string{`features must be a JSON array of feature names, like [\"view:feature\"], not a JSON string`}},
		{"/v1/features", `{"features": [1], "entities": {"user": [{"user_id": 1}]}}`, []string{"features must be a JSON array of feature names"}},
		{"/v1/features", `{"service": "ranking", "entities": [{"user_id": 1}]}`, []string{"entities must be a JSON object of entity names to lists of keys", "not a JSON array"}},
		{"/v1/features", `{"service": "ranking", "entities": {"user": {"user_id": 1}}}`, []string{`entities.user must be a JSON array of key objects, like [{\"user_id\": 1}], not a JSON object`}},
		{"/v1/features", `{"service": "ranking", "entities": {"user": 5}}`, []string{`entities.user must be a JSON array of key objects`}},
		{"/v1/features", `{"service": "user_profile", "entities": {"user": [[], "x", 5]}}`, []string{"must be an object like"}},
		{"/v1/features", `{"service": "<b>&", "entities": {"user": [{"user_id": 1}]}}`, []string{`service \"<b>&\" is not defined`}},
		{"/v1/features", `{"service": "ranking", "entities": {"user": []}}`, []string{"entities.user is empty"}},
	} {
		resp, err := http.Post(n.URL()+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: status %d, want 400 (%s)", c.path, c.body, resp.StatusCode, raw)
		}
		for _, bad := range []string{"Go value", "Go struct", "[]", "json.RawMessage", "json:", `\u003c`, `\u003e`, `\u0026`} {
			if strings.Contains(string(raw), bad) {
				t.Errorf("%s %s: the answer %s has %q", c.path, c.body, raw, bad)
			}
		}
		for _, w := range c.want {
			if !strings.Contains(string(raw), w) {
				t.Errorf("%s %s: the answer %s lacks %q", c.path, c.body, raw, w)
			}
		}
	}
}

// A read right after a push, from any goroutine, sees it.
func TestReadYourWrites(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	defer n.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := 1000 + g
			for i := 1; i <= 15; i++ {
				body := `{"source": "engagements", "events": [` + ev(user, i, "view", 1, t0) + `]}`
				resp, err := http.Post(n.URL()+"/v1/push", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				q := fmt.Sprintf(`{"features": ["user_engagement:views_1h"], "entities": {"user": [{"user_id": %d}]}}`, user)
				resp, err = http.Post(n.URL()+"/v1/features", "application/json", strings.NewReader(q))
				if err != nil {
					errs <- err.Error()
					return
				}
				var out struct {
					Entities map[string][]struct {
						Features map[string]float64 `json:"features"`
					} `json:"entities"`
				}
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if got := out.Entities["user"][0].Features["user_engagement:views_1h"]; got != float64(i) {
					errs <- fmt.Sprintf("user %d after %d pushes reads %v", user, i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
