package metadata_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/metadata"
)

func TestDescribeFeed(t *testing.T) {
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	d := metadata.Describe(p, plans)

	if d.Name != "feed" || len(d.Entities) != 2 || len(d.Sources) != 1 || len(d.Views) != 2 || len(d.Services) != 2 {
		t.Fatalf("described %+v", d)
	}
	if got := d.Entities[0]; got.Name != "user" || !slices.Equal(got.Keys, []metadata.Field{{Name: "user_id", Type: "int64"}}) {
		t.Errorf("entity user: %+v", got)
	}
	src := d.Sources[0]
	if src.Type != "push" || src.EventTime != "ts" || !slices.Contains(src.Fields, metadata.Field{Name: "kind", Type: "string"}) {
		t.Errorf("source: %+v", src)
	}

	v := d.Views[0]
	if v.Name != "user_engagement" || v.Entity != "user" || v.Source != "engagements" || len(v.Served) != 12 {
		t.Fatalf("view: %+v", v)
	}
	types := map[string]string{}
	for _, s := range v.Served {
		types[s.Name] = s.Type
	}
	for name, want := range map[string]string{
		"user_engagement:views_1h": "int64", "user_engagement:dwell_mean_24h": "float64",
		"user_engagement:dwell_max_24h": "float64", "user_engagement:last_post": "int64",
	} {
		if types[name] != want {
			t.Errorf("%s is %q, want %q", name, types[name], want)
		}
	}
	views := v.Features[0]
	if views.Agg != "count" || !slices.Equal(views.Windows, []string{"1h", "24h", "7d", "30d"}) ||
		len(views.Where) != 1 || views.Where[0].Field != "kind" || views.Where[0].Values[0] != "view" {
		t.Errorf("feature views: %+v", views)
	}
	if last := v.Features[4]; last.Agg != "last" || last.Field != "post_id" || len(last.Windows) != 0 {
		t.Errorf("feature last_post: %+v", last)
	}
	allTime, hour := v.Plan.Levels[0], v.Plan.Levels[1]
	if allTime.Window != "" || allTime.TileSize != "" || !slices.Equal(allTime.Features, []string{"last_post"}) {
		t.Errorf("all-time level: %+v", allTime)
	}
	if hour.Window != "1h" || hour.TileSize != "5m" || hour.TilesRead != 13 || hour.CoversMax != "65m" ||
		!slices.Equal(hour.Features, []string{"views", "likes"}) {
		t.Errorf("1h level: %+v", hour)
	}
	if v.Plan.LateHorizon != "" || d.Views[1].Plan.LateHorizon != "182h" || v.Plan.RowBytesEmpty <= 0 || v.Plan.RowBytesFull <= v.Plan.RowBytesEmpty {
		t.Errorf("plans: %+v / %+v", v.Plan, d.Views[1].Plan)
	}

	ranking := d.Services[1]
	if ranking.Name != "ranking" || len(ranking.Features) != 31 || !slices.Equal(ranking.Entities, []string{"user", "post"}) ||
		ranking.Features[0] != "user_engagement:views_1h" {
		t.Errorf("service ranking: %+v", ranking)
	}

	// Empty lists are JSON arrays, not null: a client iterates them.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("JSON has a null: %s", b)
	}
}

// The text kiln validate prints is written from the description.
func TestWriteText(t *testing.T) {
	p, plans := kilntest.Compile(t, examples.FeedProjectName, examples.FeedProject)
	var out bytes.Buffer
	if err := metadata.Describe(p, plans).WriteText(&out, "kiln.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kiln.yaml: project feed is valid: 2 entities, 1 sources, 2 views, 2 services\n",
		"view user_engagement (entity user, source engagements): 12 served values\n",
		"  all time  -                1           every event   0              last_post\n",
		"  1h        5m               13          [1h, 65m)     8.3%           views, likes\n",
		"  late-event horizon: none (all-time features keep every event)\n",
		"  late-event horizon: 182h\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out.String())
		}
	}
}

// A project without services describes them as an empty list, not null:
// clients iterate it.
func TestNoServicesIsAnEmptyList(t *testing.T) {
	p, plans := kilntest.Compile(t, "k.yaml", []byte(`
project: k
entities:
  user: {keys: [user_id]}
sources:
  s:
    type: push
    event_time: ts
    fields: {user_id: int64}
views:
  v:
    entity: user
    source: s
    features:
      n: {agg: count, windows: [1h]}
`))
	b, err := json.Marshal(metadata.Describe(p, plans))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"services":[]`) {
		t.Errorf("services not an empty list: %s", b)
	}
}
