package grpcapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/grpcapi"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
	"github.com/kiln-dev/kiln/internal/query"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// sessionProject has an entity with two key fields, one of them a string,
// and string and bool features: what the feed example lacks.
const sessionProject = `
project: sessions
entities:
  session: {keys: [user_id, device]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, device: string, page: string, ok: bool, ms: float64}
views:
  session_activity:
    entity: session
    source: clicks
    features:
      clicks:    {agg: count, windows: [1h, 24h]}
      last_page: {agg: last, field: page}
      last_ok:   {agg: last, field: ok}
      ms_mean:   {agg: mean, field: ms, windows: [1h]}
services:
  all: {views: [session_activity]}
`

type testEnv struct {
	project *definition.Project
	node    *node.Node
	api     *grpcapi.Server
	client  kilnv1.FeatureServiceClient
	conn    *grpc.ClientConn
}

// start runs a node on a real loopback listener with a fixed clock, and a
// gRPC server with grpcapi beside it, reading through engine (the node's
// when nil).
func start(tb testing.TB, name string, src []byte, engine func(*node.Node, *definition.Project) *query.Engine, opts grpcapi.Options, sopts ...grpc.ServerOption) *testEnv {
	tb.Helper()
	n, p := nodetest.Start(tb, name, src, t0)
	eng := n.Engine
	if engine != nil {
		eng = engine(n, p)
	}
	env := &testEnv{project: p, node: n, api: grpcapi.New(eng, opts)}
	env.conn = serveGRPC(tb, env.api, sopts...)
	env.client = kilnv1.NewFeatureServiceClient(env.conn)
	return env
}

func serveGRPC(tb testing.TB, api *grpcapi.Server, sopts ...grpc.ServerOption) *grpc.ClientConn {
	return serveWith(tb, api.Register, sopts...)
}

// serveWith serves what register registers on a gRPC server of its own,
// on loopback, and returns a connection to it.
func serveWith(tb testing.TB, register func(*grpc.Server), sopts ...grpc.ServerOption) *grpc.ClientConn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(sopts...)
	register(gs)
	done := make(chan struct{})
	go func() { gs.Serve(ln); close(done) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-done
	})
	return conn
}

func startFeed(tb testing.TB, opts grpcapi.Options, sopts ...grpc.ServerOption) *testEnv {
	return start(tb, examples.FeedProjectName, examples.FeedProject, nil, opts, sopts...)
}

func (env *testEnv) post(tb testing.TB, path string, body any) (int, []byte) {
	tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	base := env.node.URL()
	if strings.HasPrefix(path, "/debug/") {
		base = env.node.AdminURL()
	}
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, raw
}

func (env *testEnv) push(tb testing.TB, source string, events []map[string]any) {
	tb.Helper()
	for len(events) > 0 {
		batch := events[:min(len(events), 5000)]
		events = events[len(batch):]
		code, raw := env.post(tb, "/v1/push", map[string]any{"source": source, "events": batch})
		if code != http.StatusOK {
			tb.Fatalf("push: %d %s", code, raw)
		}
	}
}

// feedEvents are engagements of users 1..5 with posts 100..179, spread
// over every window of the feed views, deterministic.
func feedEvents() []map[string]any {
	r := rand.New(rand.NewPCG(3, 7))
	ages := []time.Duration{5 * time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 35 * 24 * time.Hour}
	kinds := []string{"view", "view", "view", "like", "share", "comment"}
	var evs []map[string]any
	for range 3000 {
		age := time.Duration(r.Int64N(int64(ages[r.IntN(len(ages))])))
		ev := map[string]any{
			"user_id": 1 + r.IntN(5), "post_id": 100 + r.IntN(80), "kind": kinds[r.IntN(len(kinds))],
			"ts": t0.Add(-age).Format(time.RFC3339Nano),
		}
		if r.IntN(4) > 0 {
			ev["dwell_ms"] = float64(r.IntN(100000)) / 8
		}
		evs = append(evs, ev)
	}
	return evs
}

// keys are the keys of one entity type in a request, each a list of
// values in the order of fields.
type keys struct {
	entity string
	fields []string
	values [][]any // int64 or string
}

// request is one features request, sent over both APIs.
type request struct {
	service  string
	features []string
	entities []keys
}

func (r request) json() map[string]any {
	body := map[string]any{}
	if r.service != "" {
		body["service"] = r.service
	} else {
		body["features"] = r.features
	}
	ents := map[string]any{}
	for _, k := range r.entities {
		var list []map[string]any
		for _, v := range k.values {
			obj := map[string]any{}
			for i, f := range k.fields {
				obj[f] = v[i]
			}
			list = append(list, obj)
		}
		ents[k.entity] = list
	}
	body["entities"] = ents
	return body
}

func (r request) proto() *kilnv1.GetFeaturesRequest {
	req := &kilnv1.GetFeaturesRequest{}
	if r.service != "" {
		req.Selection = &kilnv1.GetFeaturesRequest_Service{Service: r.service}
	} else {
		req.Selection = &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: r.features}}
	}
	req.Entities = protoKeys(r.entities)
	return req
}

func protoKeys(ks []keys) []*kilnv1.EntityKeys {
	var out []*kilnv1.EntityKeys
	for _, k := range ks {
		ek := &kilnv1.EntityKeys{Entity: k.entity}
		for i, f := range k.fields {
			col := &kilnv1.KeyColumn{Field: f}
			for _, v := range k.values {
				switch v := v[i].(type) {
				case int64:
					col.IntValues = append(col.IntValues, v)
				case string:
					col.StringValues = append(col.StringValues, v)
				}
			}
			ek.Keys = append(ek.Keys, col)
		}
		out = append(out, ek)
	}
	return out
}

func ints(entity, field string, vs ...int64) keys {
	k := keys{entity: entity, fields: []string{field}}
	for _, v := range vs {
		k.values = append(k.values, []any{v})
	}
	return k
}

func intRange(from, to int64) []int64 {
	var vs []int64
	for v := from; v < to; v++ {
		vs = append(vs, v)
	}
	return vs
}

// httpEntry is one key of a /v1/features answer.
type httpEntry struct {
	Key       map[string]any `json:"key"`
	Status    string         `json:"status"`
	EventTime *string        `json:"event_time"`
	Features  map[string]any `json:"features"`
}

// sameAnswer checks that the gRPC answer says what the HTTP one says,
// value by value, and returns how many keys were present.
func sameAnswer(t *testing.T, what string, req request, raw []byte, resp *kilnv1.GetFeaturesResponse) (present int) {
	t.Helper()
	var out struct {
		Entities map[string][]httpEntry `json:"entities"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%s: HTTP answer %q: %v", what, raw, err)
	}
	if resp.EvaluatedAtMs != t0.UnixMilli() {
		t.Errorf("%s: evaluated_at_ms %d, want the clock %d", what, resp.EvaluatedAtMs, t0.UnixMilli())
	}
	if len(resp.Entities) != len(out.Entities) {
		t.Fatalf("%s: gRPC has %d entity types, HTTP %d", what, len(resp.Entities), len(out.Entities))
	}
	for _, ef := range resp.Entities {
		list, ok := out.Entities[ef.Entity]
		if !ok {
			t.Fatalf("%s: HTTP has no %s", what, ef.Entity)
		}
		var asked keys
		for _, k := range req.entities {
			if k.entity == ef.Entity {
				asked = k
			}
		}
		n := len(list)
		if len(ef.Statuses) != n || len(ef.EventTimeMs) != n || len(asked.values) != n {
			t.Fatalf("%s %s: %d statuses, %d event times, %d keys asked; HTTP has %d", what, ef.Entity, len(ef.Statuses), len(ef.EventTimeMs), len(asked.values), n)
		}
		for j, h := range list {
			at := fmt.Sprintf("%s %s #%d %v", what, ef.Entity, j, asked.values[j])
			for i, f := range asked.fields {
				if fmt.Sprint(h.Key[f]) != fmt.Sprint(asked.values[j][i]) {
					t.Fatalf("%s: HTTP key %v", at, h.Key)
				}
			}
			switch {
			case h.Status == "present" && ef.Statuses[j] == kilnv1.Status_STATUS_PRESENT:
				present++
				ht, err := time.Parse(time.RFC3339Nano, *h.EventTime)
				if err != nil || ht.UnixMilli() != ef.EventTimeMs[j] {
					t.Errorf("%s: event time %d, HTTP %s", at, ef.EventTimeMs[j], *h.EventTime)
				}
			case h.Status == "not_found" && ef.Statuses[j] == kilnv1.Status_STATUS_NOT_FOUND:
				if h.EventTime != nil || ef.EventTimeMs[j] != 0 {
					t.Errorf("%s: not found with event time %d, HTTP %v", at, ef.EventTimeMs[j], h.EventTime)
				}
			default:
				t.Errorf("%s: status %v, HTTP %s", at, ef.Statuses[j], h.Status)
			}
			if len(h.Features) != len(ef.Features) {
				t.Errorf("%s: %d features, HTTP %d", at, len(ef.Features), len(h.Features))
			}
			for _, col := range ef.Features {
				hv, ok := h.Features[col.Name]
				if !ok {
					t.Errorf("%s: HTTP lacks %s", at, col.Name)
					continue
				}
				if got := grpcValue(t, col, j, n); got != jsonValue(hv) {
					t.Errorf("%s %s: gRPC %s, HTTP %s", at, col.Name, got, jsonValue(hv))
				}
			}
		}
	}
	return present
}

// grpcValue renders value j of a column as the HTTP API writes it, after
// checking the column's shape: exactly one value list, of length n.
func grpcValue(t *testing.T, col *kilnv1.FeatureColumn, j, n int) string {
	t.Helper()
	lens := map[kilnv1.ValueType]int{
		kilnv1.ValueType_VALUE_TYPE_INT64: len(col.IntValues), kilnv1.ValueType_VALUE_TYPE_DOUBLE: len(col.DoubleValues),
		kilnv1.ValueType_VALUE_TYPE_STRING: len(col.StringValues), kilnv1.ValueType_VALUE_TYPE_BOOL: len(col.BoolValues),
	}
	for typ, l := range lens {
		if want := map[bool]int{true: n, false: 0}[typ == col.Type]; l != want || len(col.Valid) != n {
			t.Fatalf("column %s (%v): %d %v values and %d valid flags for %d keys", col.Name, col.Type, l, typ, len(col.Valid), n)
		}
	}
	if !col.Valid[j] {
		var zero bool
		switch col.Type {
		case kilnv1.ValueType_VALUE_TYPE_INT64:
			zero = col.IntValues[j] == 0
		case kilnv1.ValueType_VALUE_TYPE_DOUBLE:
			zero = col.DoubleValues[j] == 0
		case kilnv1.ValueType_VALUE_TYPE_STRING:
			zero = col.StringValues[j] == ""
		case kilnv1.ValueType_VALUE_TYPE_BOOL:
			zero = !col.BoolValues[j]
		}
		if !zero {
			t.Errorf("column %s: null slot %d holds a value", col.Name, j)
		}
		return "null"
	}
	switch col.Type {
	case kilnv1.ValueType_VALUE_TYPE_INT64:
		return strconv.FormatInt(col.IntValues[j], 10)
	case kilnv1.ValueType_VALUE_TYPE_DOUBLE:
		return strconv.FormatFloat(col.DoubleValues[j], 'g', -1, 64)
	case kilnv1.ValueType_VALUE_TYPE_STRING:
		return strconv.Quote(col.StringValues[j])
	case kilnv1.ValueType_VALUE_TYPE_BOOL:
		return strconv.FormatBool(col.BoolValues[j])
	}
	t.Fatalf("column %s has type %v", col.Name, col.Type)
	return ""
}

func jsonValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case json.Number:
		return v.String()
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprintf("unexpected %T %v", v, v)
}

// compare sends req over both APIs and checks the answers agree. It
// returns the gRPC answer and the number of present keys.
func (env *testEnv) compare(t *testing.T, what string, req request) (*kilnv1.GetFeaturesResponse, int) {
	t.Helper()
	code, raw := env.post(t, "/v1/features", req.json())
	if code != http.StatusOK {
		t.Fatalf("%s: HTTP %d %s", what, code, raw)
	}
	resp, err := env.client.GetFeatures(context.Background(), req.proto())
	if err != nil {
		t.Fatalf("%s: gRPC: %v", what, err)
	}
	return resp, sameAnswer(t, what, req, raw, resp)
}

func TestSameAnswerAsHTTP(t *testing.T) {
	env := startFeed(t, grpcapi.Options{})
	env.push(t, "engagements", feedEvents())

	posts50 := append(intRange(150, 190), 900, 901, 100, 101, 102, 103, 104, 105, 106, 107) // 10 never seen
	mixed := []int64{179, 7, 100, 150, 100, 3000, 120}                                      // unsorted, a duplicate, missing ones
	cases := []struct {
		name        string
		req         request
		wantPresent int
	}{
		{"service user_profile", request{service: "user_profile", entities: []keys{ints("user", "user_id", 1, 2, 3, 4, 5)}}, 5},
		{"service ranking", request{service: "ranking", entities: []keys{ints("user", "user_id", 2), ints("post", "post_id", posts50...)}}, 39},
		{"feature list", request{features: []string{"post_engagement:views_5m", "user_engagement:likes_24h", "post_engagement:dwell_mean_1h", "user_engagement:last_post"},
			entities: []keys{ints("user", "user_id", 1), ints("post", "post_id", 100, 101)}}, 3},
		{"not found", request{service: "user_profile", entities: []keys{ints("user", "user_id", 77, 1, 78)}}, 1},
		{"mixed order", request{service: "ranking", entities: []keys{ints("post", "post_id", mixed...), ints("user", "user_id", 99, 3, 1)}}, 7},
	}
	for _, c := range cases {
		resp, present := env.compare(t, c.name, c.req)
		if present != c.wantPresent {
			t.Errorf("%s: %d keys present, want %d", c.name, present, c.wantPresent)
		}
		// The answer's entity types come in the project's order (user,
		// then post), whatever the request's order.
		var order []string
		for _, ef := range resp.Entities {
			order = append(order, ef.Entity)
		}
		if c.req.service == "ranking" && !slices.Equal(order, []string{"user", "post"}) {
			t.Errorf("%s: entity order %v", c.name, order)
		}
	}
	// A value-level sanity check that the data reached the windows.
	resp, _ := env.compare(t, "ranking", cases[1].req)
	var nonzero int
	for _, col := range resp.Entities[1].Features {
		for j, v := range col.IntValues {
			if col.Valid[j] && v != 0 {
				nonzero++
			}
		}
	}
	if nonzero < 100 {
		t.Errorf("only %d non-zero counts among 50 posts", nonzero)
	}
}

// Two key fields, a string key, and string and bool features.
func TestSameAnswerCompositeKeys(t *testing.T) {
	env := start(t, "sessions.yaml", []byte(sessionProject), nil, grpcapi.Options{})
	var evs []map[string]any
	for i := range 40 {
		ev := map[string]any{
			"user_id": int64(i % 4), "device": []string{"ios", "android", "web"}[i%3],
			"page": fmt.Sprintf("page-%d \"q\" ü", i), "ok": i%5 != 0,
			"ts": t0.Add(-time.Duration(i) * 7 * time.Minute).Format(time.RFC3339Nano),
		}
		if i%2 == 0 {
			ev["ms"] = float64(i) * 1.1
		}
		evs = append(evs, ev)
	}
	env.push(t, "clicks", evs)
	sess := keys{entity: "session", fields: []string{"user_id", "device"}}
	for _, u := range []int64{0, 1, 2, 3, 9} {
		for _, d := range []string{"web", "ios", "android", ""} {
			sess.values = append(sess.values, []any{u, d})
		}
	}
	_, present := env.compare(t, "sessions", request{service: "all", entities: []keys{sess}})
	if present != 12 {
		t.Errorf("%d sessions present, want 12", present)
	}
	// Columns may come in any order.
	req := request{features: []string{"session_activity:last_page", "session_activity:last_ok"}, entities: []keys{sess}}
	pr := req.proto()
	cols := pr.Entities[0].Keys
	cols[0], cols[1] = cols[1], cols[0]
	resp, err := env.client.GetFeatures(context.Background(), pr)
	if err != nil {
		t.Fatal(err)
	}
	_, raw := env.post(t, "/v1/features", req.json())
	sameAnswer(t, "swapped columns", req, raw, resp)
}

func TestPrepare(t *testing.T) {
	env := startFeed(t, grpcapi.Options{MaxPrepared: 2})
	env.push(t, "engagements", feedEvents())
	ctx := context.Background()

	features := []string{"post_engagement:likes_1h", "user_engagement:dwell_mean_24h", "post_engagement:views_24h"}
	prep, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Features{Features: &kilnv1.FeatureList{Names: features}}})
	if err != nil {
		t.Fatal(err)
	}
	want := &kilnv1.PrepareResponse{PreparedId: prep.PreparedId, Entities: []*kilnv1.PreparedEntity{
		{Entity: "user", KeyFields: []*kilnv1.KeyField{{Name: "user_id", Type: kilnv1.ValueType_VALUE_TYPE_INT64}},
			Features: []*kilnv1.FeatureSpec{{Name: "user_engagement:dwell_mean_24h", Type: kilnv1.ValueType_VALUE_TYPE_DOUBLE}}},
		{Entity: "post", KeyFields: []*kilnv1.KeyField{{Name: "post_id", Type: kilnv1.ValueType_VALUE_TYPE_INT64}},
			Features: []*kilnv1.FeatureSpec{{Name: "post_engagement:likes_1h", Type: kilnv1.ValueType_VALUE_TYPE_INT64},
				{Name: "post_engagement:views_24h", Type: kilnv1.ValueType_VALUE_TYPE_INT64}}},
	}}
	if !proto.Equal(prep, want) || prep.PreparedId == 0 {
		t.Fatalf("Prepare:\n%v\nwant\n%v", prep, want)
	}
	ks := []keys{ints("post", "post_id", 120, 5, 121), ints("user", "user_id", 4)}
	byNames, err := env.client.GetFeatures(ctx, request{features: features, entities: ks}.proto())
	if err != nil {
		t.Fatal(err)
	}
	byID, err := env.client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: prep.PreparedId}, Entities: protoKeys(ks)})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(byNames, byID) {
		t.Fatalf("by id:\n%v\nby names:\n%v", byID, byNames)
	}
	// The same list gets the same id; a service gets its own.
	again, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Features{Features: &kilnv1.FeatureList{Names: features}}})
	if err != nil || again.PreparedId != prep.PreparedId {
		t.Fatalf("preparing again: %v %v, want id %d", again, err, prep.PreparedId)
	}
	svc, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: "ranking"}})
	if err != nil || svc.PreparedId == prep.PreparedId || len(svc.Entities) != 2 || len(svc.Entities[0].Features) != 12 || len(svc.Entities[1].Features) != 19 {
		t.Fatalf("Prepare ranking: %v %v", svc, err)
	}
	// MaxPrepared is 2: a third list evicts the least recently used
	// (ranking; the feature list was used since).
	if _, err := env.client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: prep.PreparedId}, Entities: protoKeys(ks)}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: "user_profile"}}); err != nil {
		t.Fatal(err)
	}
	_, err = env.client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: svc.PreparedId},
		Entities: protoKeys([]keys{ints("user", "user_id", 1), ints("post", "post_id", 100)})})
	wantCode(t, "evicted id", err, codes.NotFound, "call Prepare again")
	if _, err := env.client.GetFeatures(ctx, &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: prep.PreparedId}, Entities: protoKeys(ks)}); err != nil {
		t.Fatalf("recently used id: %v", err)
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msgs ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: %v, want %v", what, err, code)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("%s: message %q lacks %q", what, st.Message(), m)
		}
	}
}

func TestBadRequests(t *testing.T) {
	var released atomic.Int64
	env := startFeed(t, grpcapi.Options{Admit: func(ctx context.Context, keys int) (func(), error) {
		if keys == 666 {
			return nil, errors.New("overloaded: 3 reads in flight, the limit is 3")
		}
		return func() { released.Add(1) }, nil
	}})
	sessions := start(t, "sessions.yaml", []byte(sessionProject), nil, grpcapi.Options{})
	ctx := context.Background()
	user1 := ints("user", "user_id", 1)
	f := func(env *testEnv, what string, req *kilnv1.GetFeaturesRequest, code codes.Code, msgs ...string) {
		t.Helper()
		_, err := env.client.GetFeatures(ctx, req)
		wantCode(t, what, err, code, msgs...)
	}
	svc := func(name string, ks ...keys) *kilnv1.GetFeaturesRequest {
		return request{service: name, entities: ks}.proto()
	}
	f(env, "no selection", &kilnv1.GetFeaturesRequest{Entities: protoKeys([]keys{user1})}, codes.InvalidArgument, "no features requested")
	f(env, "unknown service", svc("nope", user1), codes.InvalidArgument, `service "nope" is not defined`, "ranking", "user_profile")
	f(env, "unknown feature", request{features: []string{"user_engagement:views_2h"}, entities: []keys{user1}}.proto(), codes.InvalidArgument, "unknown feature", "views_2h")
	f(env, "empty feature list", request{features: []string{}, entities: []keys{user1}}.proto(), codes.InvalidArgument, "no features requested")
	f(env, "feature twice", request{features: []string{"user_engagement:views_1h", "user_engagement:views_1h"}, entities: []keys{user1}}.proto(), codes.InvalidArgument, "twice")
	f(env, "unknown entity", svc("user_profile", user1, ints("users", "user_id", 1)), codes.InvalidArgument, `entity "users" is not defined`, "user")
	f(env, "entity not needed", svc("user_profile", user1, ints("post", "post_id", 1)), codes.InvalidArgument, `entity "post" is given but none`)
	f(env, "missing entity", svc("ranking", user1), codes.InvalidArgument, `need entity "post"`)
	f(env, "no entities", svc("user_profile"), codes.InvalidArgument, `need entity "user"`)
	f(env, "entity twice", svc("user_profile", user1, user1), codes.InvalidArgument, "given twice")
	f(env, "no keys", svc("user_profile", ints("user", "user_id")), codes.InvalidArgument, "no keys")
	f(env, "no columns", svc("user_profile", keys{entity: "user"}), codes.InvalidArgument, "no column for key field user_id")
	f(env, "unknown key field", svc("user_profile", ints("user", "uid", 1)), codes.InvalidArgument, `"uid" is not a key field of user`)
	wrongType := svc("user_profile", user1)
	wrongType.Entities[0].Keys[0].StringValues = []string{"1"}
	wrongType.Entities[0].Keys[0].IntValues = nil
	f(env, "string for an int64 key", wrongType, codes.InvalidArgument, "user_id is int64", "int_values")
	twoCols := svc("user_profile", user1)
	twoCols.Entities[0].Keys = append(twoCols.Entities[0].Keys, twoCols.Entities[0].Keys[0])
	f(env, "column twice", twoCols, codes.InvalidArgument, "two columns")
	f(env, "too many keys", svc("ranking", ints("user", "user_id", intRange(0, 5001)...), ints("post", "post_id", intRange(0, 5000)...)),
		codes.InvalidArgument, "more than 10000 entities")
	f(env, "unknown prepared id", &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: 42}, Entities: protoKeys([]keys{user1})},
		codes.NotFound, "prepared_id 42", "call Prepare again")
	_, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: "nope"}})
	wantCode(t, "Prepare unknown service", err, codes.InvalidArgument, "is not defined")
	_, err = env.client.Prepare(ctx, &kilnv1.PrepareRequest{})
	wantCode(t, "Prepare nothing", err, codes.InvalidArgument, "no features requested")

	// Two key fields: lengths must agree, types must match.
	sess := keys{entity: "session", fields: []string{"user_id", "device"}, values: [][]any{{int64(1), "ios"}, {int64(2), "web"}}}
	short := request{service: "all", entities: []keys{sess}}.proto()
	short.Entities[0].Keys[1].StringValues = short.Entities[0].Keys[1].StringValues[:1]
	f(sessions, "column length mismatch", short, codes.InvalidArgument, "device has 1 values but column user_id has 2")
	intDevice := request{service: "all", entities: []keys{sess}}.proto()
	intDevice.Entities[0].Keys[1] = &kilnv1.KeyColumn{Field: "device", IntValues: []int64{1, 2}}
	f(sessions, "int for a string key", intDevice, codes.InvalidArgument, "device is string", "string_values")
	oneField := request{service: "all", entities: []keys{sess}}.proto()
	oneField.Entities[0].Keys = oneField.Entities[0].Keys[:1]
	f(sessions, "missing key column", oneField, codes.InvalidArgument, "no column for key field device")

	// Admission: a refusal is RESOURCE_EXHAUSTED; admitted calls release.
	f(env, "refused by admission", svc("user_profile", ints("user", "user_id", intRange(0, 666)...)), codes.ResourceExhausted, "overloaded: 3 reads in flight")
	if released.Load() != 0 {
		t.Errorf("%d releases before any admitted call", released.Load())
	}
	if _, err := env.client.GetFeatures(ctx, svc("user_profile", user1)); err != nil {
		t.Fatal(err)
	}
	if released.Load() != 1 {
		t.Errorf("%d releases after one admitted call, want 1", released.Load())
	}
	// After all that, the server still answers.
	if _, err := env.client.GetFeatures(ctx, svc("ranking", user1, ints("post", "post_id", 1))); err != nil {
		t.Fatal(err)
	}
}

// gatedRows wraps the node's store: it counts multi-gets, and when block
// is set it holds each one until its context ends.
type gatedRows struct {
	inner   query.RowSource
	block   atomic.Bool
	gets    atomic.Int64
	entered chan struct{}
}

func (g *gatedRows) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	g.gets.Add(1)
	if g.block.Load() {
		g.entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	return g.inner.Get(ctx, keys, fn)
}

func TestDeadlines(t *testing.T) {
	rows := &gatedRows{entered: make(chan struct{}, 1)}
	engine := func(n *node.Node, p *definition.Project) *query.Engine {
		rows.inner = n.Store
		e, err := query.New(query.Config{Project: p, Plans: n.Plans, Rows: rows, Now: n.Writer.Now})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// The interceptor reports what the handler returned, and on demand
	// holds a call until its deadline has passed before the handler runs:
	// a call that waited in a queue too long.
	var holdUntilDeadline atomic.Bool
	handled := make(chan error, 1)
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod != kilnv1.FeatureService_GetFeatures_FullMethodName {
			return h(ctx, req)
		}
		if holdUntilDeadline.Load() {
			<-ctx.Done()
		}
		resp, err := h(ctx, req)
		handled <- err
		return resp, err
	}
	env := start(t, examples.FeedProjectName, examples.FeedProject, engine, grpcapi.Options{}, grpc.UnaryInterceptor(intercept))
	env.push(t, "engagements", feedEvents())
	req := request{service: "ranking", entities: []keys{ints("user", "user_id", 1), ints("post", "post_id", intRange(100, 150)...)}}.proto()

	if _, err := env.client.GetFeatures(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	<-handled
	if n := rows.gets.Load(); n != 1 {
		t.Fatalf("%d multi-gets for one call, want 1", n)
	}

	// Over the wire the client's own timer usually fires first and resets
	// the stream, so the server sees its context cancelled rather than
	// expired; either way the handler must stop without reading.
	stopped := func(what string, err error) {
		t.Helper()
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Canceled {
			t.Errorf("%s: handler returned %v, want DEADLINE_EXCEEDED or CANCELLED", what, err)
		}
	}

	// Past its deadline on arrival: no read at all.
	holdUntilDeadline.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := env.client.GetFeatures(ctx, req)
	cancel()
	wantCode(t, "client, expired on arrival", err, codes.DeadlineExceeded)
	stopped("server, expired on arrival", <-handled)
	if n := rows.gets.Load(); n != 1 {
		t.Errorf("%d multi-gets after a call that arrived past its deadline, want still 1", n)
	}
	holdUntilDeadline.Store(false)

	// The deadline passes during the read: the read stops and the handler
	// returns.
	rows.block.Store(true)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = env.client.GetFeatures(ctx, req)
	cancel()
	wantCode(t, "client, expired during the read", err, codes.DeadlineExceeded)
	<-rows.entered
	stopped("server, expired during the read", <-handled)
	if n := rows.gets.Load(); n != 2 {
		t.Errorf("%d multi-gets, want 2", n)
	}

	// Cancelled by the client during the read.
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := env.client.GetFeatures(ctx, req)
		errc <- err
	}()
	<-rows.entered
	cancel()
	wantCode(t, "client, cancelled", <-errc, codes.Canceled)
	wantCode(t, "server, cancelled", <-handled, codes.Canceled)

	// In process, where the codes are exact: a context already expired or
	// cancelled reads nothing, and one that expires during the read stops
	// it with DEADLINE_EXCEEDED.
	before := rows.gets.Load()
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	_, err = env.api.GetFeatures(ctx, req)
	cancel()
	wantCode(t, "in process, expired", err, codes.DeadlineExceeded)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = env.api.GetFeatures(ctx, req)
	wantCode(t, "in process, cancelled", err, codes.Canceled)
	if n := rows.gets.Load(); n != before {
		t.Errorf("calls with a done context read the store %d times", n-before)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err = env.api.GetFeatures(ctx, req)
	cancel()
	<-rows.entered
	wantCode(t, "in process, expired during the read", err, codes.DeadlineExceeded)
	if n := rows.gets.Load(); n != before+1 {
		t.Errorf("%d multi-gets for one call", n-before)
	}
}

// A store failure is UNAVAILABLE: retryable.
func TestStoreFailure(t *testing.T) {
	engine := func(n *node.Node, p *definition.Project) *query.Engine {
		e, err := query.New(query.Config{Project: p, Plans: n.Plans, Rows: failingRows{}, Now: n.Writer.Now})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	env := start(t, examples.FeedProjectName, examples.FeedProject, engine, grpcapi.Options{})
	_, err := env.client.GetFeatures(context.Background(), request{service: "user_profile", entities: []keys{ints("user", "user_id", 1)}}.proto())
	wantCode(t, "store failure", err, codes.Unavailable, "disk on fire", "retry")
}

type failingRows struct{}

func (failingRows) Get(context.Context, [][]byte, func(int, []byte, bool)) error {
	return errors.New("disk on fire")
}

func TestHealthAndReflection(t *testing.T) {
	env := startFeed(t, grpcapi.Options{})
	ctx := context.Background()
	hc := healthpb.NewHealthClient(env.conn)
	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.Status != want {
			t.Errorf("health of %q: %v %v, want %v", service, resp, err, want)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check("kiln.v1.FeatureService", healthpb.HealthCheckResponse_SERVING)
	env.api.SetServing(false)
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	check("kiln.v1.FeatureService", healthpb.HealthCheckResponse_NOT_SERVING)
	env.api.SetServing(true)
	check("", healthpb.HealthCheckResponse_SERVING)

	stream, err := reflectionpb.NewServerReflectionClient(env.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	list := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range list.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"kiln.v1.FeatureService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, lacks %s", names, want)
		}
	}
	file := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "kiln.v1.FeatureService"}})
	if fds := file.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fds) == 0 || !bytes.Contains(fds[0], []byte("kiln/v1/kiln.proto")) {
		t.Errorf("reflection has no descriptor for kiln.v1.FeatureService: %v", file)
	}
}

// BenchmarkGetFeaturesQ2 reads the RW1 Q2 shape — the ranking service for
// one user and 500 posts, 9,512 values — over loopback gRPC, by service
// name and by prepared id, and in process (the handler alone, without the
// transport).
func BenchmarkGetFeaturesQ2(b *testing.B) {
	env := startFeed(b, grpcapi.Options{})
	r := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"view", "view", "view", "like", "share", "comment"}
	var evs []map[string]any
	for post := range 500 {
		for range 8 {
			evs = append(evs, map[string]any{
				"user_id": 1 + r.IntN(1000), "post_id": post, "kind": kinds[r.IntN(len(kinds))], "dwell_ms": float64(r.IntN(60000)),
				"ts": t0.Add(-time.Duration(r.Int64N(int64(7 * 24 * time.Hour)))).Format(time.RFC3339Nano),
			})
		}
	}
	for range 50 {
		evs = append(evs, map[string]any{"user_id": 1, "post_id": r.IntN(500), "kind": "view", "dwell_ms": 100.0,
			"ts": t0.Add(-time.Duration(r.Int64N(int64(24 * time.Hour)))).Format(time.RFC3339Nano)})
	}
	env.push(b, "engagements", evs)
	ks := []keys{ints("user", "user_id", 1), ints("post", "post_id", intRange(0, 500)...)}
	byService := request{service: "ranking", entities: ks}.proto()
	ctx := context.Background()
	prep, err := env.client.Prepare(ctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: "ranking"}})
	if err != nil {
		b.Fatal(err)
	}
	byID := &kilnv1.GetFeaturesRequest{Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: prep.PreparedId}, Entities: protoKeys(ks)}
	resp, err := env.client.GetFeatures(ctx, byService)
	if err != nil {
		b.Fatal(err)
	}
	values := 0
	for _, ef := range resp.Entities {
		values += len(ef.Features) * len(ef.Statuses)
		for j, s := range ef.Statuses {
			if s != kilnv1.Status_STATUS_PRESENT {
				b.Fatalf("%s #%d not present", ef.Entity, j)
			}
		}
	}
	if values != 9512 {
		b.Fatalf("%d values, want 9512", values)
	}
	run := func(name string, call func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(values)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
		})
	}
	run("grpc/service", func() error { _, err := env.client.GetFeatures(ctx, byService); return err })
	run("grpc/prepared", func() error { _, err := env.client.GetFeatures(ctx, byID); return err })
	run("inprocess/prepared", func() error { _, err := env.api.GetFeatures(ctx, byID); return err })
}

// Diagnostics.GetRows reads what HTTP's /debug/rows reads: the same rows,
// the same bytes, for the same request. Both are on the node's admin
// listener (one port, HTTP/1 and gRPC), neither on the public API's.
func TestGetRowsMatchesHTTPRows(t *testing.T) {
	env := startFeed(t, grpcapi.Options{})
	env.push(t, "engagements", feedEvents())
	if _, err := kilnv1.NewDiagnosticsClient(env.conn).GetRows(context.Background(), &kilnv1.GetFeaturesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetRows on the public gRPC server: %v, want Unimplemented", err)
	}
	adminConn, err := grpc.NewClient(env.node.AdminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer adminConn.Close()
	diag := kilnv1.NewDiagnosticsClient(adminConn)
	req := request{service: "ranking", entities: []keys{ints("user", "user_id", 1, 2), ints("post", "post_id", append(intRange(150, 190), 9001)...)}}
	resp, err := diag.GetRows(context.Background(), req.proto())
	if err != nil {
		t.Fatal(err)
	}
	code, raw := env.post(t, "/debug/rows", req.json())
	if code != http.StatusOK {
		t.Fatalf("/debug/rows: %d %s", code, raw)
	}
	var rows struct {
		Rows  uint32 `json:"rows_found"`
		Bytes uint64 `json:"bytes"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	if resp.RowsFound == 0 || resp.RowsFound != rows.Rows || resp.Bytes != rows.Bytes {
		t.Fatalf("GetRows read %d rows, %d bytes; /debug/rows %d rows, %d bytes", resp.RowsFound, resp.Bytes, rows.Rows, rows.Bytes)
	}
	if _, err := diag.GetRows(context.Background(), &kilnv1.GetFeaturesRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetRows without features: %v", err)
	}
}
