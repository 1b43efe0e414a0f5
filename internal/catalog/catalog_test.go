package catalog

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/redis"
	"github.com/kiln-dev/kiln/internal/tile"
)

const projectA = `
project: t
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, post_id: int64, kind: string, x: float64}
views:
  by_user:
    entity: user
    source: clicks
    features:
      views:    {agg: count, where: {kind: view}, windows: [1h, 24h]}
      likes_7d: {agg: count, where: {kind: like}, windows: [7d]}
      xs:       {agg: sum, field: x, windows: [1h]}
  by_post:
    entity: post
    source: clicks
    features:
      n: {agg: count, windows: [1h]}
  gone:
    entity: post
    source: clicks
    features:
      n: {agg: count, windows: [1h]}
`

// compile parses a project and its plans.
func compile(t *testing.T, text string) (*definition.Project, map[*definition.View]*tile.Plan) {
	t.Helper()
	return kilntest.Compile(t, "kiln.yaml", []byte(text))
}

// catalogOf records every view of a project, as a first start does.
func catalogOf(t *testing.T, text string) *Catalog {
	p, plans := compile(t, text)
	c := &Catalog{Views: map[string]*View{}}
	for _, v := range p.Views {
		c.Views[v.Name] = Describe(plans[v], 0, Ready)
	}
	return c
}

func TestCompare(t *testing.T) {
	c := catalogOf(t, projectA)
	edit := func(pairs ...string) string {
		s := projectA
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("the project has no %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	b := edit(
		"windows: [1h, 24h]}", "windows: [1h, 2h, 24h]}",
		"      likes_7d: {agg: count, where: {kind: like}, windows: [7d]}\n", "",
		"      xs:       {agg: sum, field: x, windows: [1h]}", "      xs:       {agg: sum, field: x, where: {kind: [a, b]}, windows: [1h]}\n      shares:   {agg: count, where: {kind: share}, windows: [1d]}",
		"  gone:\n    entity: post\n    source: clicks\n    features:\n      n: {agg: count, windows: [1h]}\n", "  fresh:\n    entity: post\n    source: clicks\n    features:\n      n: {agg: count, windows: [1h]}\n",
	)
	p, plans := compile(t, b)
	got := map[string]Change{}
	var order []string
	for _, ch := range Compare(c, p, plans) {
		got[ch.View] = ch
		order = append(order, ch.View+" "+ch.Kind.String())
	}
	if want := []string{"by_user changed", "by_post unchanged", "fresh new", "gone removed"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("changes %v, want %v", order, want)
	}
	wantDiffs := []string{
		"feature likes_7d removed",
		"window 2h added to feature views",
		`filter of feature xs changed from none to kind in ("a", "b")`,
		"feature shares added",
	}
	if d := got["by_user"].Differences; !reflect.DeepEqual(d, wantDiffs) {
		t.Fatalf("differences\n%q\nwant\n%q", d, wantDiffs)
	}
	if d := got["by_post"].Differences; len(d) != 0 {
		t.Fatalf("unchanged view with differences %q", d)
	}

	// Each kind of change, alone.
	for _, c2 := range []struct {
		name  string
		edit  []string
		kind  Kind
		diffs []string
	}{
		{"filter", []string{"where: {kind: view}", "where: {kind: [view, like]}"}, Changed,
			[]string{`filter of feature views changed from kind = "view" to kind in ("view", "like")`}},
		{"window removed", []string{"windows: [1h, 24h]}", "windows: [1h]}"}, Changed,
			[]string{"window 24h removed from feature views"}},
		{"aggregation", []string{"xs:       {agg: sum", "xs:       {agg: max"}, Changed,
			[]string{"aggregation of feature xs changed from sum to max"}},
		{"key", []string{"user: {keys: [user_id]}", "user: {keys: [post_id]}"}, Changed,
			[]string{"entity key changed from (user_id) to (post_id)"}},
		{"source field", []string{"x: float64}", "x: float64, referrer: string}"}, Changed,
			[]string{"field referrer added to source clicks"}},
		{"all time", []string{"{agg: sum, field: x, windows: [1h]}", "{agg: sum, field: x}"}, Changed,
			[]string{"feature xs changed from windows 1h to all time"}},
		{"renamed", []string{"likes_7d:", "likes:   "}, Unchanged,
			[]string{"feature likes_7d removed", "feature likes added"}},
	} {
		p, plans := compile(t, edit(c2.edit...))
		ch := Compare(c, p, plans)[0]
		if ch.View != "by_user" || ch.Kind != c2.kind || !reflect.DeepEqual(ch.Differences, c2.diffs) {
			t.Errorf("%s: %s %s %q, want by_user %s %q", c2.name, ch.View, ch.Kind, ch.Differences, c2.kind, c2.diffs)
		}
	}
}

// The catalog goes into a store and comes back the same, on every store;
// a store without one reads as an empty catalog.
func testRoundTrip(t *testing.T, st store.Store) {
	ctx := context.Background()
	empty, err := Load(ctx, st)
	if err != nil || empty.Exists() || len(empty.Views) != 0 {
		t.Fatalf("empty store: %v, exists %v, %d views", err, empty.Exists(), len(empty.Views))
	}
	c := catalogOf(t, projectA)
	c.Views["by_post"].Generation = c.NextGeneration()
	c.Views["by_post"].State = Rebuilding
	c.found, c.raw = empty.found, empty.raw
	if err := c.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	back, err := Load(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Exists() || !reflect.DeepEqual(back.Views, c.Views) || back.LastGeneration != 1 {
		t.Fatalf("read back %+v, want %+v", back, c)
	}
	if g := back.NextGeneration(); g != 2 {
		t.Fatalf("next generation %d, want 2", g)
	}
	back.Views["by_post"].State = Ready
	if err := back.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := back.Save(ctx, st); err != nil { // unchanged: nothing to write
		t.Fatal(err)
	}
	if _, ok := st.(store.ConditionalWriter); ok {
		// c read the catalog before back saved it: its save must not win.
		c.Views["by_user"].State = Rebuilding
		if err := c.Save(ctx, st); !errors.Is(err, ErrConflict) {
			t.Fatalf("saving over a catalog another process changed: %v, want ErrConflict", err)
		}
	}
	again, err := Load(ctx, st)
	if err != nil || again.Views["by_post"].State != Ready || again.LastGeneration != 2 {
		t.Fatalf("after the second save: %v %+v", err, again)
	}
	// It lives under a reserved key, apart from every row.
	if !store.Reserved(Key) {
		t.Fatal("the catalog's key is not reserved")
	}
}

func TestRoundTripEmbedded(t *testing.T) { testRoundTrip(t, kilntest.MemStore(t)) }

func TestRoundTripRedis(t *testing.T) {
	addr := redistest.Standalone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := redis.Open(ctx, redis.Options{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testRoundTrip(t, st)
}

// A damaged catalog is an error that says what to do, not an empty one.
func TestLoadRefusesDamage(t *testing.T) {
	st := kilntest.MemStore(t)
	for _, bad := range []string{"{", `{"version": 9, "views": {}}`, `{"version": 1, "views": {"v": {"state": "odd"}}}`} {
		if err := st.Write(context.Background(), []store.KV{{Key: Key, Value: []byte(bad)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(context.Background(), st); err == nil || !strings.Contains(err.Error(), "catalog") {
			t.Errorf("%s: %v, want an error about the catalog", bad, err)
		}
	}
}
