package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/serve"
)

// The captured bodies of Feast's own feature server are in testdata/feast
// (its README says how they were made).
func feastFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "feast", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// feastNode is a node on the feed example holding rows for users 1 and 2
// and posts 7 and 9, the keys the captured requests ask for.
func feastNode(t *testing.T) *node.Node {
	t.Helper()
	var clock atomic.Int64
	clock.Store(t0.UnixMilli())
	n := testNode(t, t.TempDir(), &clock)
	t.Cleanup(func() { n.Close() })
	pushEvents(t, n,
		ev(1, 7, "view", 1000, t0.Add(-time.Minute)),
		ev(1, 9, "like", 0, t0.Add(-2*time.Minute)),
		ev(2, 7, "view", 3000, t0.Add(-3*time.Minute)),
		ev(2, 9, "view", 2000, t0.Add(-4*time.Minute)),
	)
	return n
}

func postRaw(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

var feastTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// jsonShape writes the shape of a JSON document: objects with their keys in
// order, arrays element by element, numbers as "number" (Feast's and Kiln's
// values differ; their types must not), times as "<time>" but for Feast's
// time of a missing row, and other strings (statuses, names) as they are.
func jsonShape(t *testing.T, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	var walk func() // writes the next value
	walk = func() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		switch tok := tok.(type) {
		case json.Delim:
			b.WriteString(tok.String())
			first := true
			for dec.More() {
				if !first {
					b.WriteByte(',')
				}
				first = false
				if tok == '{' {
					key, _ := dec.Token()
					fmt.Fprintf(&b, "%q:", key)
				}
				walk()
			}
			end, _ := dec.Token()
			b.WriteString(end.(json.Delim).String())
		case json.Number:
			b.WriteString("number")
		case string:
			if feastTime.MatchString(tok) && tok != "1970-01-01T00:00:00Z" {
				tok = "<time>"
			}
			fmt.Fprintf(&b, "%q", tok)
		case nil:
			b.WriteString("null")
		default:
			fmt.Fprintf(&b, "%v", tok)
		}
	}
	walk()
	return b.String()
}

// Kiln's answer to each captured request has the captured answer's shape:
// the same keys in the same order, the same feature names, a value of the
// same type (or null) where Feast has one, the same status names and
// times written the same way.
func TestFeastOnlineMatchesCapturedShape(t *testing.T) {
	n := feastNode(t)
	for _, c := range []string{"online_one_entity", "online_two_entities"} {
		req := feastFile(t, c+".request.json")
		for suffix, query := range map[string]string{".response.json": "", ".status.response.json": "?status=true"} {
			code, got := postRaw(t, n.URL()+"/get-online-features"+query, req)
			if code != http.StatusOK {
				t.Fatalf("%s%s: %d %s", c, query, code, got)
			}
			want := feastFile(t, c+suffix)
			if g, w := jsonShape(t, got), jsonShape(t, want); g != w {
				t.Errorf("%s%s: answer\n%s\nhas the shape\n%s\nwant Feast's\n%s\n(Feast answered %s)", c, query, got, g, w, want)
			}
		}
	}
}

// The request the captured files call a name collision names two features
// whose short names differ: it is answered. Feast put its join keys in
// another order than the request's (its order is not stable); Kiln keeps
// the request's.
func TestFeastOnlineNoCollision(t *testing.T) {
	n := feastNode(t)
	code, got := postRaw(t, n.URL()+"/get-online-features", feastFile(t, "error_name_collision.request.json"))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, got)
	}
	want := feastFile(t, "error_name_collision.response.txt")
	want = bytes.TrimSpace(want[:bytes.LastIndex(want, []byte("HTTP"))])
	// Feast: post_id, user_id, views_1h, likes_1h. Kiln: user_id first.
	swap := func(raw []byte) string {
		var v struct {
			Metadata struct {
				FeatureNames []string `json:"feature_names"`
			} `json:"metadata"`
			Results []json.RawMessage `json:"results"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if v.Metadata.FeatureNames[0] == "post_id" {
			v.Metadata.FeatureNames[0], v.Metadata.FeatureNames[1] = v.Metadata.FeatureNames[1], v.Metadata.FeatureNames[0]
			v.Results[0], v.Results[1] = v.Results[1], v.Results[0]
		}
		b, _ := json.Marshal(v)
		return jsonShape(t, b)
	}
	if g, w := swap(got), swap(want); g != w {
		t.Errorf("answer %s has the shape\n%s\nwant\n%s", got, g, w)
	}
	if !bytes.HasPrefix(got, []byte(`{"metadata":{"feature_names":["user_id","post_id","views_1h","likes_1h"]}`)) {
		t.Errorf("answer %s", got)
	}
}

// Where Feast answers a bad request 200 with nulls (an unknown feature, a
// key of the wrong type) or 500 (malformed JSON), Kiln answers 400 saying
// what is wrong, as its own API does.
func TestFeastOnlineRefusals(t *testing.T) {
	n := feastNode(t)
	url := n.URL() + "/get-online-features"
	cases := []struct {
		body, query string
		msg         string
		details     string
	}{
		{body: string(feastFile(t, "error_unknown_feature.request.json")), msg: `unknown feature(s) "user_engagement:nope"`},
		{body: string(feastFile(t, "error_bad_key_type.request.json")), msg: "1 invalid join key value(s)",
			details: `[{"index":0,"field":"user_id","message":"join key \"abc\" is not an int64: write an integer like 42"}]`},
		{body: `{"features": [bad}`, msg: "request body is not a Feast get-online-features request"},
		{body: `{"features": ["user_engagement:views_1h", "post_engagement:views_1h"], "entities": {"user_id": [1], "post_id": [7]}}`,
			msg: `are both named "views_1h" in the answer: set "full_feature_names": true`},
		{body: `{"features": ["user_engagement:views_1h"], "feature_service": "ranking", "entities": {"user_id": [1]}}`, msg: `give "features" or "feature_service", not both`},
		{body: `{"feature_service": "nope", "entities": {"user_id": [1]}}`, msg: `service "nope" is not defined (defined: ranking, user_profile)`},
		{body: `{"feature_service": "ranking", "entities": {"user_id": [1]}}`, msg: `the requested features need join key "post_id" of entity post`},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [1], "post_id": [7]}}`, msg: "entities.post_id is not a join key of the requested features (their join keys: user_id)"},
		{body: `{"feature_service": "ranking", "entities": {"user_id": [1, 2], "post_id": [7]}}`, msg: "entities.post_id has 1 values but entities.user_id has 2"},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": []}}`, msg: "entities.user_id is empty"},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [1], "user_id": [2]}}`, msg: `column "user_id" is given twice`},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [null]}}`, msg: "1 invalid join key value(s)"},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": 1}}`, msg: `entities.user_id: "entities" must be a JSON object`},
		{body: `{"features": ["user_engagement:views_1h"]}`, msg: `"entities" is missing`},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [1]}, "request_context": {"x": [1]}}`, msg: "request_context is not supported"},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [1]}, "project": "feed"}`, msg: `unknown field "project"`},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [1]}}`, query: "?status=yes", msg: "takes status=true or status=false"},
		{body: `{"features": ["user_engagement:views_1h"], "entities": {"user_id": [` + strings.Repeat("1,", query.MaxEntities) + `1]}}`, msg: "10001 rows in one request; the limit is 10000"},
	}
	for _, c := range cases {
		code, raw := postRaw(t, url+c.query, []byte(c.body))
		var out struct {
			Error   string          `json:"error"`
			Details json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %s is not JSON", c.body, raw)
		}
		if code != http.StatusBadRequest || !strings.Contains(out.Error, c.msg) || c.details != "" && string(out.Details) != c.details {
			t.Errorf("%.120s%s: %d %s, want 400 with %q %s", c.body, c.query, code, raw, c.msg, c.details)
		}
	}
}

// Values, statuses and times are Kiln's: a missing key is NOT_FOUND with
// nulls, a present key with no value in a window NULL_VALUE; full feature
// names are view__feature; a service answers in its order.
func TestFeastOnlineValues(t *testing.T) {
	n := feastNode(t)
	code, raw := postRaw(t, n.URL()+"/get-online-features?status=true", []byte(`{
		"features": ["post_engagement:views_1h", "user_engagement:dwell_mean_24h", "user_engagement:views_1h"],
		"entities": {"post_id": [9, 7, 9, 404], "user_id": [1, 1, 2, 1]}, "full_feature_names": true}`))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	var out struct {
		Metadata struct {
			FeatureNames []string `json:"feature_names"`
		} `json:"metadata"`
		Results []struct {
			Values     []any    `json:"values"`
			Statuses   []string `json:"statuses"`
			Timestamps []string `json:"event_timestamps"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if want := []string{"post_id", "user_id", "post_engagement__views_1h", "user_engagement__dwell_mean_24h", "user_engagement__views_1h"}; !slices.Equal(out.Metadata.FeatureNames, want) {
		t.Fatalf("names %v, want %v", out.Metadata.FeatureNames, want)
	}
	r := out.Results
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("post_id", r[0].Values, []any{9, 7, 9, 404})
	check("user_id", r[1].Values, []any{1, 1, 2, 1})
	check("join key statuses", r[0].Statuses, []string{"PRESENT", "PRESENT", "PRESENT", "PRESENT"})
	check("join key times", r[0].Timestamps[0], "2026-11-26T10:00:00Z")
	check("post views_1h", r[2].Values, []any{1, 2, 1, nil})
	check("post views_1h statuses", r[2].Statuses, []string{"PRESENT", "PRESENT", "PRESENT", "NOT_FOUND"})
	check("post views_1h times", r[2].Timestamps, []string{"2026-11-26T09:58:00Z", "2026-11-26T09:59:00Z", "2026-11-26T09:58:00Z", "1970-01-01T00:00:00Z"})
	check("user dwell_mean_24h", r[3].Values, []any{1000, 1000, 2500, 1000})
	check("user views_1h", r[4].Values, []any{1, 1, 2, 1})
	check("user times", r[4].Timestamps, []string{"2026-11-26T09:59:00Z", "2026-11-26T09:59:00Z", "2026-11-26T09:57:00Z", "2026-11-26T09:59:00Z"})

	// A present user whose only event is a like has no dwell mean.
	pushEvents(t, n, ev(3, 7, "like", 0, t0.Add(-time.Minute)))
	code, raw = postRaw(t, n.URL()+"/get-online-features?status=true", []byte(`{"features": ["user_engagement:dwell_mean_24h"], "entities": {"user_id": [3]}}`))
	if code != http.StatusOK || !bytes.Contains(raw, []byte(`{"event_timestamps":["2026-11-26T09:59:00Z"],"statuses":["NULL_VALUE"],"values":[null]}`)) {
		t.Errorf("user 3: %d %s", code, raw)
	}

	// A service answers its features in its order, join keys first.
	code, raw = postRaw(t, n.URL()+"/get-online-features", []byte(`{"feature_service": "ranking", "entities": {"user_id": [1], "post_id": [7]}, "full_feature_names": true}`))
	if code != http.StatusOK || !bytes.HasPrefix(raw, []byte(`{"metadata":{"feature_names":["user_id","post_id","user_engagement__views_1h","user_engagement__views_24h",`)) ||
		!bytes.Contains(raw, []byte(`"user_engagement__last_post","post_engagement__views_5m",`)) {
		t.Errorf("service: %d %s", code, raw)
	}
}

// countingRows counts the row keys the engine asks its store for.
type countingRows struct {
	query.RowSource
	keys atomic.Int64
}

func (c *countingRows) Get(ctx context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
	c.keys.Add(int64(len(keys)))
	return c.RowSource.Get(ctx, keys, fn)
}

// A Feast row carries a key of every entity; rows that share a key read
// its row once.
func TestFeastOnlineReadsEachRowOnce(t *testing.T) {
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	rows := &countingRows{RowSource: kilntest.MemStore(t)}
	engine, err := query.New(query.Config{Project: p, Plans: plans, Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	s, err := serve.New(serve.Config{Project: p, Engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	// One user ranking 100 candidate posts, two of them twice: one user
	// row and 98 post rows.
	var posts []string
	for i := range 100 {
		posts = append(posts, fmt.Sprint(i%98))
	}
	body := `{"feature_service": "ranking", "entities": {"user_id": [` + strings.TrimSuffix(strings.Repeat("1,", 100), ",") +
		`], "post_id": [` + strings.Join(posts, ",") + `]}, "full_feature_names": true}`
	code, raw := postRaw(t, ts.URL+"/get-online-features", []byte(body))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	if got := rows.keys.Load(); got != 99 {
		t.Errorf("read %d rows, want 99", got)
	}
	var out struct {
		Results []struct {
			Values []any `json:"values"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Results) != 2+31 || len(out.Results[5].Values) != 100 {
		t.Errorf("answer %.300s: %v", raw, err)
	}
}

// POST /push takes Feast's push into the push source of that name; a bad
// one is refused whole.
func TestFeastPush(t *testing.T) {
	n := feastNode(t)
	views := func() string {
		_, raw := postRaw(t, n.URL()+"/get-online-features", []byte(`{"features": ["post_engagement:views_1h"], "entities": {"post_id": [7, 50]}}`))
		return string(raw)
	}
	before := views()
	if !strings.Contains(before, `{"values":[2,null]}`) {
		t.Fatalf("before: %s", before)
	}

	// pandas' own way of writing times, with a space and no zone, is UTC.
	code, raw := postRaw(t, n.URL()+"/push", []byte(`{"push_source_name": "engagements", "to": "online_and_offline", "allow_registry_cache": true,
		"df": {"user_id": [1, 2, 3], "post_id": [50, 50, 7], "kind": ["view", "view", "like"], "dwell_ms": [10.5, null, 1],
		       "ts": ["2026-11-26 09:59:00", "2026-11-26T09:58:00Z", 1795600740000]}}`))
	if code != http.StatusOK || string(raw) != `{"accepted":3,"dropped_late":0,"late_by_view":{}}`+"\n" {
		t.Fatalf("push: %d %s", code, raw)
	}
	if got := views(); !strings.Contains(got, `{"values":[2,2]}`) {
		t.Errorf("after push: %s", got)
	}

	before = views()
	for _, c := range []struct{ body, msg string }{
		{`{"push_source_name": "engagements", "to": "offline", "df": {"user_id": [1]}}`, `"to": "offline" is not supported`},
		{`{"push_source_name": "engagements", "to": "somewhere", "df": {"user_id": [1]}}`, `"to": "somewhere": write "online" or "online_and_offline"`},
		{`{"push_source_name": "nope", "df": {"user_id": [1]}}`, `push source "nope" is not defined (sources: engagements)`},
		{`{"df": {"user_id": [1]}}`, `"push_source_name" is missing`},
		{`{"push_source_name": "engagements", "df": {"user_id": [1, 2], "post_id": [7]}}`, "df.post_id has 1 values but df.user_id has 2"},
		{`{"push_source_name": "engagements", "df": []}`, `"df" must be a JSON object`},
		{`{"push_source_name": "engagements", "df": {"user_id": [1, 2], "post_id": [50, 50], "kind": ["view", "view"], "ts": ["2026-11-26 09:59:00", "yesterday"]}}`,
			"1 invalid event(s); nothing was applied"},
		{`{"push_source_name": "engagements", "df": {"user_id": [1], "post_id": [50], "kind": ["view"], "ts": ["2026-11-26 09:59:00"], "created": ["2026-11-26 09:59:00"]}}`,
			"1 invalid event(s); nothing was applied"},
		{`{"push_source_name": "engagements", "df": {"user_id": [1]}, "extra": 1}`, `unknown field "extra"`},
	} {
		code, raw := postRaw(t, n.URL()+"/push", []byte(c.body))
		var out struct{ Error string }
		json.Unmarshal(raw, &out)
		if code != http.StatusBadRequest || !strings.Contains(out.Error, c.msg) {
			t.Errorf("%s: %d %s, want 400 with %q", c.body, code, raw, c.msg)
		}
	}
	if after := views(); after != before {
		t.Errorf("refused pushes changed the views: %s, then %s", before, after)
	}
	resp, err := http.Post(n.URL()+"/push?x=1", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/push?x=1: %d", resp.StatusCode)
	}
}
