package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/catalog"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/rebuild"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/stream"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Definition A, and B: A with a window added, a feature added and a
// filter changed in user_engagement; post_engagement is the same in both.
const projectA = `
project: t
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  engagements:
    type: push
    event_time: ts
    fields: {user_id: int64, post_id: int64, kind: string, dwell_ms: float64}
views:
  user_engagement:
    entity: user
    source: engagements
    features:
      views:      {agg: count, where: {kind: view}, windows: [1h, 24h]}
      dwell_mean: {agg: mean, field: dwell_ms, where: {kind: view}, windows: [24h]}
      last_post:  {agg: last, field: post_id}
  post_engagement:
    entity: post
    source: engagements
    features:
      views: {agg: count, where: {kind: view}, windows: [1h, 24h]}
`

var projectB = edit(projectA,
	"views:      {agg: count, where: {kind: view}, windows: [1h, 24h]}", "views:      {agg: count, where: {kind: view}, windows: [1h, 2h, 24h]}",
	"dwell_mean: {agg: mean, field: dwell_ms, where: {kind: view}, windows: [24h]}", "dwell_mean: {agg: mean, field: dwell_ms, where: {kind: [view, like]}, windows: [24h]}\n      likes_7d:   {agg: count, where: {kind: like}, windows: [7d]}",
)

// projectC is A with a view added.
var projectC = edit(projectA, "  post_engagement:\n", `  user_kinds:
    entity: user
    source: engagements
    features:
      likes: {agg: count, where: {kind: like}, windows: [6h]}
      dwell: {agg: sum, field: dwell_ms, windows: [2d]}
  post_engagement:
`)

func edit(s string, pairs ...string) string {
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			panic("no " + pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

// start is the time the history begins.
var start = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// clock is an injected clock the test moves.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *clock) set(t int64)    { c.ms.Store(t) }

// batch is what one push carries: its clock, its events, and the origin
// stream they are read from ("" for the push API).
type batch struct {
	at     int64
	events []event.Event
	stream string
	first  int64 // offset of the first event in stream
}

// history is a seeded random history of n batches over four days: half
// pushed, half streamed from one Kafka partition, event times up to 30
// hours before the clock (and a few seconds after it), small whole numbers
// for the floats so every sum is exact.
func history(seed uint64, from time.Time, n int) []batch {
	return historyOf(seed, from, n, "kafka/engagements/0")
}

// historyOf is history streaming from the named partition.
func historyOf(seed uint64, from time.Time, n int, partition string) []batch {
	rng := rand.New(rand.NewPCG(seed, 7))
	kinds := []string{"view", "view", "like", "share"}
	var out []batch
	at := from.UnixMilli()
	var offset int64
	for i := range n {
		at += rng.Int64N(4 * 24 * 3600_000 / int64(n) * 2)
		b := batch{at: at}
		if i%2 == 1 {
			b.stream, b.first = partition, offset
		}
		for range 1 + rng.IntN(20) {
			ts := at - rng.Int64N(30*3600_000) + 5000
			b.events = append(b.events, event.Event{TS: ts, Fields: []event.Value{
				event.IntValue(rng.Int64N(12)), event.IntValue(rng.Int64N(8)),
				event.StringValue(kinds[rng.IntN(len(kinds))]), event.FloatValue(float64(rng.IntN(1000))),
			}})
			if b.stream != "" {
				b.events[len(b.events)-1].Origin = event.Origin{Stream: stream.StreamID(b.stream), Offset: uint64(offset)}
				offset++
			}
		}
		out = append(out, b)
	}
	return out
}

// kiln is a node under test with its clock.
type kiln struct {
	n     *node.Node
	p     *definition.Project
	clock *clock
}

type options struct {
	dir     string
	archive *archive.Archive
	rebuild bool
	reset   []string
	hook    func(ctx context.Context, view string) error
	logger  *slog.Logger
	grpc    bool
}

func startKiln(t *testing.T, text string, c *clock, o options) (*kiln, error) {
	t.Helper()
	p, err := projectfile.Parse("kiln.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{
		Project: p, DataDir: o.dir, Addr: "127.0.0.1:0", Archive: o.archive, Rebuild: o.rebuild,
		ResetViews: o.reset, RebuildBatch: o.hook, Logger: o.logger,
		Ingest: ingest.Options{Now: c.now, Partitions: 3},
	}
	if o.grpc {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	n, err := node.Start(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return &kiln{n: n, p: p, clock: c}, nil
}

func mustStart(t *testing.T, text string, c *clock, o options) *kiln {
	t.Helper()
	k, err := startKiln(t, text, c, o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// archivedHistory pushes hist into a node of projectA that archives it,
// and into a reference node of project ref that had ref's views all
// along; it stops the first and moves both clocks a minute on. It returns
// the archive, the first node's clock and data directory, and the
// reference.
func archivedHistory(t *testing.T, hist []batch, ref string) (*archive.Archive, *clock, string, *kiln) {
	t.Helper()
	a := archive.New(archive.NewMem())
	c, cref := &clock{}, &clock{}
	dir := t.TempDir()
	k := mustStart(t, projectA, c, options{dir: dir, archive: a})
	r := mustStart(t, ref, cref, options{dir: t.TempDir()})
	for _, b := range hist {
		k.push(t, b, a)
		r.push(t, b, nil)
	}
	k.close(t)
	c.set(c.ms.Load() + 60_000)
	cref.set(c.ms.Load())
	return a, c, dir, r
}

// push applies a batch at its clock, as the push API or a stream would;
// a node with an archive journals it (so a is only there to say so at the
// call).
func (k *kiln) push(t *testing.T, b batch, a *archive.Archive) {
	t.Helper()
	k.clock.set(b.at)
	src := k.p.Source("engagements")
	if b.stream != "" {
		k.n.Writer.NameStream(stream.StreamID(b.stream), b.stream)
	}
	if _, err := k.n.Writer.Push(context.Background(), src, b.events); err != nil {
		t.Fatal(err)
	}
}

func (k *kiln) close(t *testing.T) {
	t.Helper()
	if err := k.n.Close(); err != nil {
		t.Fatal(err)
	}
}

func (k *kiln) wait(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.n.WaitRebuilds(ctx); err != nil {
		t.Fatal(err)
	}
	if r := k.n.Rebuilding(); len(r) != 0 {
		t.Fatalf("still rebuilding: %+v", r)
	}
}

// post sends a JSON body and returns the status and the body.
func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// features reads every feature of a view for users or posts 0..11 over
// HTTP and returns them by key, with each key's status.
func (k *kiln) features(t *testing.T, view string) map[string]any {
	t.Helper()
	v := k.p.View(view)
	var names []string
	for _, ref := range v.Outputs() {
		names = append(names, fmt.Sprintf("%q", ref.Name()))
	}
	var keys []string
	for id := range 12 {
		keys = append(keys, fmt.Sprintf(`{%q: %d}`, v.Entity.Keys[0], id))
	}
	code, body := post(t, k.n.URL()+"/v1/features", fmt.Sprintf(`{"features": [%s], "entities": {%q: [%s]}}`,
		strings.Join(names, ","), v.Entity.Name, strings.Join(keys, ",")))
	if code != http.StatusOK {
		t.Fatalf("features of %s: %d %s", view, code, body)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// present counts the keys of a features answer with a row.
func present(answer map[string]any) int {
	n := 0
	for _, list := range answer["entities"].(map[string]any) {
		for _, e := range list.([]any) {
			if e.(map[string]any)["status"] == "present" {
				n++
			}
		}
	}
	return n
}

// The test that proves a rebuild: a history pushed under definition A,
// the project changed to B (a window added, a feature added, a filter
// changed), rebuilt from the archive, and every feature value compared with
// a node that had B from the start and took the same events at the same
// clock — before and after more events arrive live and a stream delivers
// its last batch again.
func TestRebuildMatchesAFreshNode(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			hist := history(seed, start, 60)
			a := archive.New(archive.NewMem())
			c, cref := &clock{}, &clock{}
			dir := t.TempDir()
			old := mustStart(t, projectA, c, options{dir: dir, archive: a})
			ref := mustStart(t, projectB, cref, options{dir: t.TempDir()})
			for _, b := range hist {
				old.push(t, b, a)
				ref.push(t, b, nil)
			}
			old.close(t)

			c.set(hist[len(hist)-1].at + 60_000)
			cref.set(c.ms.Load())
			// The rebuild is held at its first batch while events arrive
			// live: they are archived too, after T0, and must count once.
			hook, held, release := holdRebuild()
			k := mustStart(t, projectB, c, options{dir: dir, archive: a, rebuild: true, hook: hook})
			<-held
			for _, b := range historyOf(seed+10, c.now().Add(time.Minute), 6, "kafka/engagements/1") {
				k.push(t, b, a)
				ref.push(t, b, nil)
			}
			close(release)
			k.wait(t)
			for _, view := range []string{"user_engagement", "post_engagement"} {
				got, want := k.features(t, view), ref.features(t, view)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s after the rebuild:\n%v\nwant\n%v", view, got, want)
				}
				if present(got) == 0 {
					t.Fatalf("%s: no key has a row", view)
				}
			}
			// More live events, and the history's last streamed batch
			// delivered again (a consumer resuming from an older commit).
			last := hist[len(hist)-1]
			if last.stream == "" {
				last = hist[len(hist)-2]
			}
			more := historyOf(seed+20, c.now().Add(time.Minute), 6, "kafka/engagements/2")
			more = append(more, batch{at: more[len(more)-1].at + 1000, events: last.events, stream: last.stream, first: last.first})
			for _, b := range more {
				k.push(t, b, a)
				ref.push(t, b, nil)
			}
			for _, view := range []string{"user_engagement", "post_engagement"} {
				if got, want := k.features(t, view), ref.features(t, view); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s after live events:\n%v\nwant\n%v", view, got, want)
				}
			}
		})
	}
}

// A changed view refuses the start, saying which view, how it changed and
// what to do, and leaves the rows as they were.
func TestChangedViewRefusesToStart(t *testing.T) {
	a := archive.New(archive.NewMem())
	c := &clock{}
	dir := t.TempDir()
	k := mustStart(t, projectA, c, options{dir: dir, archive: a})
	for _, b := range history(3, start, 20) {
		k.push(t, b, a)
	}
	before := k.features(t, "user_engagement")
	k.close(t)
	_, err := startKiln(t, projectB, c, options{dir: dir, archive: a})
	var ce *node.ChangedViewsError
	if !errors.As(err, &ce) {
		t.Fatalf("start on a changed view: %v, want a ChangedViewsError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"the definition of view user_engagement changed",
		"window 2h added to feature views",
		"feature likes_7d added",
		`filter of feature dwell_mean changed from kind = "view" to kind in ("view", "like")`,
		"kiln serve -c kiln.yaml --rebuild",
		"kiln rebuild -c kiln.yaml --view user_engagement",
		"--reset-view user_engagement",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "post_engagement") {
		t.Errorf("the refusal names an unchanged view:\n%s", msg)
	}
	// Without an archive, --rebuild is refused too, saying so.
	_, err = startKiln(t, projectB, c, options{dir: dir, rebuild: true})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "no event archive") {
		t.Fatalf("--rebuild without an archive: %v", err)
	}
	k = mustStart(t, projectA, c, options{dir: dir, archive: a})
	if got := k.features(t, "user_engagement"); !reflect.DeepEqual(got, before) {
		t.Fatalf("after the refusals the rows changed:\n%v\nwant\n%v", got, before)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// --reset-view starts the view empty, says so at warn, and leaves the
// other views as they were; a removed view is logged and dropped.
func TestResetViewStartsEmpty(t *testing.T) {
	c := &clock{}
	dir := t.TempDir()
	k := mustStart(t, projectC, c, options{dir: dir})
	for _, b := range history(4, start, 20) {
		k.push(t, b, nil)
	}
	posts := k.features(t, "post_engagement")
	if present(k.features(t, "user_engagement")) == 0 {
		t.Fatal("no user has a row")
	}
	k.close(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	k = mustStart(t, projectB, c, options{dir: dir, reset: []string{"user_engagement"}, logger: logger})
	if n := present(k.features(t, "user_engagement")); n != 0 {
		t.Fatalf("%d users have a row after --reset-view", n)
	}
	if got := k.features(t, "post_engagement"); !reflect.DeepEqual(got, posts) {
		t.Fatal("--reset-view of one view changed another")
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "--reset-view") || !strings.Contains(out, "view=user_engagement") {
		t.Fatalf("no warning of the reset:\n%s", out)
	}
	if !strings.Contains(out, "view is no longer in the project") || !strings.Contains(out, "view=user_kinds") {
		t.Fatalf("no warning of the removed view:\n%s", out)
	}
	// New events count from zero.
	k.push(t, batch{at: c.ms.Load(), events: []event.Event{{TS: c.ms.Load(), Fields: []event.Value{
		event.IntValue(1), event.IntValue(1), event.StringValue("view"), event.FloatValue(1)}}}}, nil)
	got := k.features(t, "user_engagement")["entities"].(map[string]any)["user"].([]any)[1].(map[string]any)["features"].(map[string]any)
	if got["user_engagement:views_24h"] != 1.0 {
		t.Fatalf("after one event: %v", got)
	}
}

// A view added to a project with history is filled from the archive at
// start, without being asked, and equals a node that had it all along.
func TestNewViewIsFilledFromTheArchive(t *testing.T) {
	a, c, dir, ref := archivedHistory(t, history(5, start, 40), projectC)
	k := mustStart(t, projectC, c, options{dir: dir, archive: a})
	k.wait(t)
	got, want := k.features(t, "user_kinds"), ref.features(t, "user_kinds")
	if !reflect.DeepEqual(got, want) || present(got) == 0 {
		t.Fatalf("the new view:\n%v\nwant\n%v", got, want)
	}
}

// holdRebuild returns a RebuildBatch hook that blocks the first batch
// until release is closed (or the rebuild stops), having closed held.
func holdRebuild() (hook func(context.Context, string) error, held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook = func(ctx context.Context, _ string) error {
		once.Do(func() { close(held) })
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return hook, held, release
}

// While a view is rebuilt, its features answer 503 / UNAVAILABLE naming
// the view and the progress, /readyz names it, and the other views are
// served.
func TestReadsWaitForTheRebuild(t *testing.T) {
	hist := history(6, start, 20)
	a := archive.New(archive.NewMem())
	c := &clock{}
	dir := t.TempDir()
	k := mustStart(t, projectA, c, options{dir: dir, archive: a})
	for _, b := range hist {
		k.push(t, b, a)
	}
	k.close(t)
	hook, held, release := holdRebuild()
	c.set(c.ms.Load() + 60_000)
	k = mustStart(t, projectB, c, options{dir: dir, archive: a, rebuild: true, hook: hook, grpc: true})
	<-held
	code, body := post(t, k.n.URL()+"/v1/features", `{"features": ["user_engagement:views_2h"], "entities": {"user": [{"user_id": 1}]}}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "view user_engagement") || !strings.Contains(body, "being rebuilt") || !strings.Contains(body, "archived dates") {
		t.Fatalf("a read of the view being rebuilt: %d %s", code, body)
	}
	if code, body := post(t, k.n.URL()+"/v1/features", `{"features": ["post_engagement:views_1h"], "entities": {"post": [{"post_id": 1}]}}`); code != http.StatusOK {
		t.Fatalf("a read of another view: %d %s", code, body)
	}
	resp, err := http.Get(k.n.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(ready), `"rebuilding":[{"view":"user_engagement"`) {
		t.Fatalf("/readyz while rebuilding: %d %s", resp.StatusCode, ready)
	}
	conn, err := grpc.NewClient(k.n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = kilnv1.NewFeatureServiceClient(conn).GetFeatures(context.Background(), &kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: []string{"user_engagement:views_2h"}}},
		Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}}},
	})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "view user_engagement") {
		t.Fatalf("gRPC read of the view being rebuilt: %v", err)
	}
	close(release)
	k.wait(t)
	if code, body := post(t, k.n.URL()+"/v1/features", `{"features": ["user_engagement:views_2h"], "entities": {"user": [{"user_id": 1}]}}`); code != http.StatusOK {
		t.Fatalf("a read after the rebuild: %d %s", code, body)
	}
}

// A rebuild stopped part way (the process stopped once the catalog said
// rebuilding) is started again, under a new generation, at the next start,
// unasked, and ends with the values of an uninterrupted one.
func TestInterruptedRebuildStartsAgain(t *testing.T) {
	a, c, dir, ref := archivedHistory(t, history(7, start, 30), projectB)
	hook, held, _ := holdRebuild()
	k := mustStart(t, projectB, c, options{dir: dir, archive: a, rebuild: true, hook: hook})
	<-held
	cat, err := catalog.Load(context.Background(), k.n.Store)
	if err != nil {
		t.Fatal(err)
	}
	rec := cat.Views["user_engagement"]
	if rec.State != catalog.Rebuilding {
		t.Fatalf("catalog during the rebuild: %+v", rec)
	}
	gen := rec.Generation
	k.close(t) // stops the rebuild

	k = mustStart(t, projectB, c, options{dir: dir, archive: a}) // no --rebuild
	k.wait(t)
	if got, want := k.features(t, "user_engagement"), ref.features(t, "user_engagement"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the rebuild started again:\n%v\nwant\n%v", got, want)
	}
	cat, err = catalog.Load(context.Background(), k.n.Store)
	if err != nil {
		t.Fatal(err)
	}
	if rec := cat.Views["user_engagement"]; rec.State != catalog.Ready || rec.Generation <= gen {
		t.Fatalf("catalog after the second rebuild: %+v (the interrupted one had generation %d)", rec, gen)
	}
	if k.n.Plans[k.p.View("user_engagement")].Generation() != cat.Views["user_engagement"].Generation {
		t.Fatal("the node's plan is not at the catalog's generation")
	}
}

// kiln rebuild's work: offline, then the server starts on the rebuilt view
// without being asked anything.
func TestOfflineRebuild(t *testing.T) {
	a, c, dir, ref := archivedHistory(t, history(8, start, 30), projectB)
	p, err := projectfile.Parse("kiln.yaml", []byte(projectB))
	if err != nil {
		t.Fatal(err)
	}
	var progress []int64
	sums, err := node.Rebuild(context.Background(), node.RebuildConfig{
		Project: p, DataDir: dir, Archive: a, Views: []string{"user_engagement"},
		Ingest:   ingest.Options{Now: c.now},
		Progress: func(pr rebuild.Progress) { progress = append(progress, pr.Replayed) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].View != "user_engagement" || sums[0].Replayed == 0 || sums[0].Rows == 0 || len(progress) == 0 {
		t.Fatalf("summaries %+v, progress %v", sums, progress)
	}
	k := mustStart(t, projectB, c, options{dir: dir, archive: a})
	if r := k.n.Rebuilding(); len(r) != 0 {
		t.Fatalf("rebuilding at start after kiln rebuild: %+v", r)
	}
	if got, want := k.features(t, "user_engagement"), ref.features(t, "user_engagement"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after kiln rebuild:\n%v\nwant\n%v", got, want)
	}
	// Unknown names are refused, naming the views there are.
	_, err = node.Rebuild(context.Background(), node.RebuildConfig{Project: p, DataDir: dir, Archive: a, Views: []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), "user_engagement, post_engagement") {
		t.Fatalf("rebuild of an unknown view: %v", err)
	}
}

// A store written before the catalog existed (or a first start) records
// the layouts as they are and keeps its rows.
func TestFirstStartRecordsLayouts(t *testing.T) {
	c := &clock{}
	dir := t.TempDir()
	k := mustStart(t, projectA, c, options{dir: dir})
	for _, b := range history(9, start, 10) {
		k.push(t, b, nil)
	}
	before := k.features(t, "user_engagement")
	// Take the catalog away, as in a data directory from before it.
	del := store.Range{Start: catalog.Key, End: append(slices.Clone(catalog.Key), 0)}
	if err := k.n.Store.(store.LogKeeper).Apply(context.Background(), nil, del, true); err != nil {
		t.Fatal(err)
	}
	k.close(t)
	k = mustStart(t, projectA, c, options{dir: dir})
	if got := k.features(t, "user_engagement"); !reflect.DeepEqual(got, before) {
		t.Fatal("rows lost on a start without a catalog")
	}
	cat, err := catalog.Load(context.Background(), k.n.Store)
	if err != nil || !cat.Exists() || !slices.Equal(slices.Sorted(maps.Keys(cat.Views)), []string{"post_engagement", "user_engagement"}) {
		t.Fatalf("catalog %+v, %v", cat, err)
	}
	for _, v := range k.p.Views {
		if g := k.n.Plans[v].Generation(); g != 0 {
			t.Fatalf("view %s at generation %d, want 0 (the rows' own)", v.Name, g)
		}
	}
}
