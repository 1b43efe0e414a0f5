package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/workload"
)

// The RW1 names the benchmark relies on (docs/workload.md, examples/feed).
const (
	entityUser  = "user"
	entityPost  = "post"
	keyUser     = "user_id"
	keyPost     = "post_id"
	viewUser    = "user_engagement"
	viewPost    = "post_engagement"
	serviceQ1   = "user_profile"
	serviceQ2   = "ranking"
	postsPerQ2  = 500
	queryQ1Name = "Q1"
	queryQ2Name = "Q2"
)

// PCG streams of the query draws, apart from the workload's own streams.
const (
	streamQ1      = 0x6b696c6e2d713131 // "kiln-q11"
	streamQ2      = 0x6b696c6e2d713231 // "kiln-q21"
	streamUniform = 0x6b696c6e2d756e31 // "kiln-un1"
)

// maxQueryBytes bounds the memory of one query type's pre-generated
// bodies; a longer run cycles through them.
const maxQueryBytes = 256 << 20

// querySet is one query type with its pre-generated requests: request i
// (mod len) asks for users[i] and, for Q2, posts[i·postsPer:(i+1)·postsPer].
type querySet struct {
	name     string // Q1, Q2
	service  string
	features []string // the service's served names, in its order
	postsPer int      // 0 for Q1
	users    []int64
	posts    []int64
	bodies   [][]byte // JSON of POST /v1/features and /debug/rows
	// feast holds the same requests as JSON of Feast's POST
	// /get-online-features (nil unless asked for): one row per post, each
	// carrying the user, as a Feast client asks.
	feast  [][]byte
	values int   // distinct feature values in one answer (Feast's repeats the user's in every row)
	rows   int   // rows one request reads (one per key and view)
	bytes  int64 // sum of len(bodies) and len(feast)
}

func (q *querySet) len() int { return len(q.users) }

// postsOf returns the posts of request i.
func (q *querySet) postsOf(i int) []int64 {
	i %= q.len()
	return q.posts[i*q.postsPer : (i+1)*q.postsPer]
}

// genQueries draws n requests of a query type from its own seeded stream,
// with the workload's Zipf laws, and encodes their bodies, also in Feast's
// shape if feast is set. n is cut so that the bodies stay within
// maxQueryBytes; the draws do not depend on feast.
func genQueries(gen *workload.Generator, project *definition.Project, seed uint64, name string, n int, feast bool) (*querySet, error) {
	q := &querySet{name: name}
	stream := uint64(streamQ1)
	switch name {
	case queryQ1Name:
		q.service = serviceQ1
	case queryQ2Name:
		q.service, q.postsPer, stream = serviceQ2, postsPerQ2, streamQ2
	default:
		return nil, fmt.Errorf("bench: no query %q", name)
	}
	perEntity, err := servedPerEntity(project, q.service)
	if err != nil {
		return nil, err
	}
	for _, f := range project.Service(q.service).Features {
		q.features = append(q.features, f.Name())
	}
	q.values = perEntity[entityUser] + q.postsPer*perEntity[entityPost]
	q.rows = 1
	if q.postsPer > 0 {
		q.rows += q.postsPer
	}
	// A Q1 body is about 70 bytes, a Q2 body about 19 bytes a post; in
	// Feast's shape about 90 bytes, and 16 bytes a post (user and post ids).
	est := 80 + 20*q.postsPer
	if feast {
		est += 100 + 16*q.postsPer
	}
	n = max(1, min(n, maxQueryBytes/est))
	r := rand.New(rand.NewPCG(seed, stream))
	q.users = make([]int64, n)
	q.posts = make([]int64, 0, n*q.postsPer)
	q.bodies = make([][]byte, n)
	if feast {
		q.feast = make([][]byte, n)
	}
	var buf []int64
	for i := range n {
		q.users[i] = gen.QueryUser(r)
		if q.postsPer > 0 {
			buf = gen.QueryPosts(r, q.postsPer, buf)
			q.posts = append(q.posts, buf...)
		}
		var posts []int64
		if q.postsPer > 0 {
			posts = q.postsOf(i)
		}
		q.bodies[i] = featuresBody(nil, q.service, nil, q.users[i:i+1], posts)
		q.bytes += int64(len(q.bodies[i]))
		if feast {
			q.feast[i] = feastBody(nil, q.service, q.users[i], posts)
			q.bytes += int64(len(q.feast[i]))
		}
	}
	return q, nil
}

// servedPerEntity counts the values a service serves per key of each
// entity.
func servedPerEntity(p *definition.Project, service string) (map[string]int, error) {
	svc := p.Service(service)
	if svc == nil {
		return nil, fmt.Errorf("bench: the project has no service %q (is it the RW1 project?)", service)
	}
	m := map[string]int{}
	for _, f := range svc.Features {
		m[f.View.Entity.Name]++
	}
	return m, nil
}

// featuresBody appends the JSON of a features request: a service, or a
// list of features when service is "", for the given users and posts
// (either may be empty).
func featuresBody(b []byte, service string, features []string, users, posts []int64) []byte {
	if service != "" {
		b = append(b, `{"service":`...)
		b = strconv.AppendQuote(b, service)
	} else {
		b = append(b, `{"features":[`...)
		for i, f := range features {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, f)
		}
		b = append(b, ']')
	}
	b = append(b, `,"entities":{`...)
	sep := false
	for _, e := range []struct {
		entity, key string
		ids         []int64
	}{{entityUser, keyUser, users}, {entityPost, keyPost, posts}} {
		if len(e.ids) == 0 {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = strconv.AppendQuote(b, e.entity)
		b = append(b, ":["...)
		for i, id := range e.ids {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = strconv.AppendQuote(b, e.key)
			b = append(b, ':')
			b = strconv.AppendInt(b, id, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// feastBody appends the JSON of Feast's get-online-features request for a
// service, one user and posts (may be empty): columns of join keys, one row
// per post, each carrying the user (one row of the user alone without
// posts). The features are named view__feature in the answer, as Kiln
// serves them view:feature (and as Feast must name them when two views
// share a feature's name, as RW1's do).
func feastBody(b []byte, service string, user int64, posts []int64) []byte {
	b = append(b, `{"feature_service":`...)
	b = strconv.AppendQuote(b, service)
	b = append(b, `,"full_feature_names":true,"entities":{`...)
	b = strconv.AppendQuote(b, keyUser)
	b = append(b, ":["...)
	for i := range max(1, len(posts)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, user, 10)
	}
	b = append(b, ']')
	if len(posts) > 0 {
		b = append(b, ',')
		b = strconv.AppendQuote(b, keyPost)
		b = append(b, ":["...)
		for i, id := range posts {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// caller sends the pre-generated requests of one query type to one target.
type caller interface {
	// call sends request i (mod the number of requests).
	call(ctx context.Context, i int) error
	// check sends request i and checks the answer's shape; it is not
	// timed.
	check(ctx context.Context, i int) error
}

// httpTarget sends a query type's bodies to one URL: bodies[i] is request
// i of q in the shape the URL takes.
type httpTarget struct {
	c      *rawClient
	url    string
	q      *querySet
	bodies [][]byte
}

func (h *httpTarget) call(ctx context.Context, i int) error {
	_, err := h.c.post(ctx, h.bodies[i%len(h.bodies)], false)
	return err
}

// answer sends request i and decodes its answer into v.
func (h *httpTarget) answer(ctx context.Context, i int, v any) error {
	if err := h.c.postJSON(ctx, h.bodies[i%len(h.bodies)], v); err != nil {
		return fmt.Errorf("%s %s: %w", h.q.name, h.url, err)
	}
	return nil
}

// httpFeatures sends requests to POST /v1/features.
type httpFeatures struct{ httpTarget }

func (h *httpFeatures) check(ctx context.Context, i int) error {
	var ans struct {
		Entities map[string][]struct {
			Status   string          `json:"status"`
			Features json.RawMessage `json:"features"`
		} `json:"entities"`
	}
	if err := h.answer(ctx, i, &ans); err != nil {
		return err
	}
	if n := len(ans.Entities[entityUser]); n != 1 {
		return fmt.Errorf("%s %s: %d users in the answer, want 1", h.q.name, h.url, n)
	}
	if n := len(ans.Entities[entityPost]); n != h.q.postsPer {
		return fmt.Errorf("%s %s: %d posts in the answer, want %d", h.q.name, h.url, n, h.q.postsPer)
	}
	return nil
}

// httpFeast sends the same requests, in Feast's shape, to POST
// /get-online-features?status=true: the answer then carries a status and
// a time for each value, as /v1/features' carries them for each key.
type httpFeast struct{ httpTarget }

func (h *httpFeast) check(ctx context.Context, i int) error {
	var ans struct {
		Metadata struct {
			FeatureNames []string `json:"feature_names"`
		} `json:"metadata"`
		Results []struct {
			Statuses []string          `json:"statuses"`
			Values   []json.RawMessage `json:"values"`
		} `json:"results"`
	}
	if err := h.answer(ctx, i, &ans); err != nil {
		return err
	}
	want := feastNames(h.q)
	if !slices.Equal(ans.Metadata.FeatureNames, want) {
		return fmt.Errorf("%s %s: the answer names %q, want %q", h.q.name, h.url, ans.Metadata.FeatureNames, want)
	}
	if len(ans.Results) != len(want) {
		return fmt.Errorf("%s %s: %d columns in the answer, want %d", h.q.name, h.url, len(ans.Results), len(want))
	}
	rows := max(1, h.q.postsPer)
	for c, col := range ans.Results {
		if len(col.Values) != rows || len(col.Statuses) != rows {
			return fmt.Errorf("%s %s: column %s has %d values and %d statuses, want %d", h.q.name, h.url, want[c], len(col.Values), len(col.Statuses), rows)
		}
	}
	return nil
}

// feastNames are the columns of q's answer in Feast's shape: the join keys
// as the request gives them, then the service's features with full names.
func feastNames(q *querySet) []string {
	names := []string{keyUser}
	if q.postsPer > 0 {
		names = append(names, keyPost)
	}
	for _, f := range q.features {
		names = append(names, strings.Replace(f, ":", "__", 1))
	}
	return names
}

// floorAnswer is the answer of POST /debug/rows.
type floorAnswer struct {
	RowsFound int64 `json:"rows_found"`
	Bytes     int64 `json:"bytes"`
}

// httpFloor sends the same bodies to POST /debug/rows.
type httpFloor struct{ httpTarget }

func (h *httpFloor) check(ctx context.Context, i int) error {
	var ans floorAnswer
	if err := h.answer(ctx, i, &ans); err != nil {
		return err
	}
	if ans.RowsFound < 0 || ans.RowsFound > int64(h.q.rows) {
		return fmt.Errorf("%s %s: %d rows found for a request of %d rows", h.q.name, h.url, ans.RowsFound, h.q.rows)
	}
	return nil
}
