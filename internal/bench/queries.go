package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"

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
	postsPer int // 0 for Q1
	users    []int64
	posts    []int64
	bodies   [][]byte // JSON of POST /v1/features and /debug/rows
	values   int      // feature values in one answer
	rows     int      // rows one request reads (one per key and view)
	bytes    int64    // sum of len(bodies)
}

func (q *querySet) len() int { return len(q.users) }

// postsOf returns the posts of request i.
func (q *querySet) postsOf(i int) []int64 {
	i %= q.len()
	return q.posts[i*q.postsPer : (i+1)*q.postsPer]
}

// genQueries draws n requests of a query type from its own seeded stream,
// with the workload's Zipf laws, and encodes their bodies. n is cut so
// that the bodies stay within maxQueryBytes.
func genQueries(gen *workload.Generator, project *definition.Project, seed uint64, name string, n int) (*querySet, error) {
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
	q.values = perEntity[entityUser] + q.postsPer*perEntity[entityPost]
	q.rows = 1
	if q.postsPer > 0 {
		q.rows += q.postsPer
	}
	// A Q1 body is about 70 bytes, a Q2 body about 19 bytes a post.
	est := 80 + 20*q.postsPer
	n = max(1, min(n, maxQueryBytes/est))
	r := rand.New(rand.NewPCG(seed, stream))
	q.users = make([]int64, n)
	q.posts = make([]int64, 0, n*q.postsPer)
	q.bodies = make([][]byte, n)
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

// caller sends the pre-generated requests of one query type to one target.
type caller interface {
	// call sends request i (mod the number of requests).
	call(ctx context.Context, i int) error
	// check sends request i and checks the answer's shape; it is not
	// timed.
	check(ctx context.Context, i int) error
}

// httpTarget sends a query type's bodies to one URL.
type httpTarget struct {
	c   *rawClient
	url string
	q   *querySet
}

func (h *httpTarget) call(ctx context.Context, i int) error {
	_, err := h.c.post(ctx, h.q.bodies[i%h.q.len()], false)
	return err
}

// answer sends request i and decodes its answer into v.
func (h *httpTarget) answer(ctx context.Context, i int, v any) error {
	if err := h.c.postJSON(ctx, h.q.bodies[i%h.q.len()], v); err != nil {
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
