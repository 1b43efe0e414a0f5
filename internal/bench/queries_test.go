package bench

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// Feast's requests ask for what the /v1/features ones ask for: the same
// service, the same user and posts in the same order, one row per post
// each carrying the user (one row for Q1), and the answer names the
// service's features as Kiln serves them. Asking for them changes no draw.
func TestFeastRequestsMatchFeatures(t *testing.T) {
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, name := range []string{queryQ1Name, queryQ2Name} {
		gen := workload.NewGenerator(workload.Config{Seed: 3, Scale: 0.01, Now: now})
		q, err := genQueries(gen, project, 3, name, 40, true)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := genQueries(gen, project, 3, name, 40, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(q.users, plain.users) || !slices.Equal(q.posts, plain.posts) || !slices.EqualFunc(q.bodies, plain.bodies, bytes.Equal) {
			t.Errorf("%s: the draws depend on encoding Feast's requests", name)
		}
		if plain.feast != nil || len(q.feast) != q.len() {
			t.Fatalf("%s: %d Feast bodies for %d requests (%d without asking)", name, len(q.feast), q.len(), len(plain.feast))
		}
		rows := max(1, q.postsPer)
		for i := range q.len() {
			var v1 struct {
				Service  string                        `json:"service"`
				Entities map[string][]map[string]int64 `json:"entities"`
			}
			if err := json.Unmarshal(q.bodies[i], &v1); err != nil {
				t.Fatalf("%s %d: /v1/features body: %v", name, i, err)
			}
			var feast struct {
				FeatureService   string             `json:"feature_service"`
				FullFeatureNames bool               `json:"full_feature_names"`
				Entities         map[string][]int64 `json:"entities"`
			}
			dec := json.NewDecoder(bytes.NewReader(q.feast[i]))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&feast); err != nil {
				t.Fatalf("%s %d: Feast body %s: %v", name, i, q.feast[i], err)
			}
			if feast.FeatureService != v1.Service || !feast.FullFeatureNames {
				t.Fatalf("%s %d: Feast asks for %q (full names %v), /v1/features for %q", name, i, feast.FeatureService, feast.FullFeatureNames, v1.Service)
			}
			users := v1.Entities[entityUser]
			if len(users) != 1 {
				t.Fatalf("%s %d: %d users in the /v1/features body", name, i, len(users))
			}
			if want := slices.Repeat([]int64{users[0][keyUser]}, rows); !slices.Equal(feast.Entities[keyUser], want) {
				t.Fatalf("%s %d: Feast's user column %v, want the user %d in each of %d rows", name, i, feast.Entities[keyUser], users[0][keyUser], rows)
			}
			var posts []int64
			for _, p := range v1.Entities[entityPost] {
				posts = append(posts, p[keyPost])
			}
			if !slices.Equal(feast.Entities[keyPost], posts) || len(posts) != q.postsPer {
				t.Fatalf("%s %d: Feast's post column %v, /v1/features' posts %v", name, i, feast.Entities[keyPost], posts)
			}
			if len(feast.Entities) != len(v1.Entities) {
				t.Fatalf("%s %d: Feast's columns %v for /v1/features' entities %v", name, i, feast.Entities, v1.Entities)
			}
			// The answer's join-key columns come in the request's order.
			if u, p := bytes.Index(q.feast[i], []byte(`"user_id"`)), bytes.Index(q.feast[i], []byte(`"post_id"`)); q.postsPer > 0 && u > p {
				t.Fatalf("%s %d: post_id before user_id in %s", name, i, q.feast[i])
			}
		}
		// The answer's columns: join keys, then each served name with
		// Feast's full name.
		names := feastNames(q)
		keys := 1 + min(1, q.postsPer)
		if len(names) != keys+len(q.features) || len(q.features) == 0 {
			t.Fatalf("%s: answer columns %v for features %v", name, names, q.features)
		}
		for k, f := range q.features {
			view, feature, _ := strings.Cut(f, ":")
			if names[keys+k] != view+"__"+feature {
				t.Errorf("%s: column %q for served name %q", name, names[keys+k], f)
			}
		}
	}
}
