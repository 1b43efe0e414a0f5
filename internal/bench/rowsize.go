package bench

// The size of rows, sampled through the floor after the measurements: for
// the report's bytes per row.

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/kiln-dev/kiln/internal/workload"
)

// rowSizes reads rows through the floor: the benchmark's own query keys
// (hot-key weighted) and uniformly drawn ids, per view.
func (b *rw1) rowSizes(ctx context.Context, gen *workload.Generator, q1, q2 *querySet) ([]RowSize, error) {
	userFeature, postFeature, err := b.firstFeatures()
	if err != nil {
		return nil, err
	}
	var out []RowSize
	// Q1 bodies as sent: one user each.
	rs := RowSize{View: viewUser, Sample: "query keys"}
	for i := range min(q1.len(), rowSampleQ1) {
		if err := b.floorInto(ctx, &rs, q1.bodies[i], 1); err != nil {
			return nil, err
		}
	}
	out = append(out, rs)
	// The posts of Q2 requests (distinct within each request).
	rs = RowSize{View: viewPost, Sample: "query keys"}
	for i := range min(q2.len(), rowSampleQ2) {
		body := featuresBody(nil, "", []string{postFeature}, nil, q2.postsOf(i))
		if err := b.floorInto(ctx, &rs, body, int64(q2.postsPer)); err != nil {
			return nil, err
		}
	}
	out = append(out, rs)
	// Uniform samples of distinct ids.
	r := rand.New(rand.NewPCG(b.cfg.Seed, streamUniform))
	for _, u := range []struct {
		view, feature string
		n             int64
		want          int
		users         bool
	}{{viewUser, userFeature, gen.Users(), rowSampleUsers, true}, {viewPost, postFeature, gen.Posts(), rowSamplePosts, false}} {
		rs := RowSize{View: u.view, Sample: "uniform ids"}
		ids := sampleIDs(r, u.n, u.want)
		for len(ids) > 0 {
			k := min(len(ids), rowSampleBatch)
			var body []byte
			if u.users {
				body = featuresBody(nil, "", []string{u.feature}, ids[:k], nil)
			} else {
				body = featuresBody(nil, "", []string{u.feature}, nil, ids[:k])
			}
			if err := b.floorInto(ctx, &rs, body, int64(k)); err != nil {
				return nil, err
			}
			ids = ids[k:]
		}
		out = append(out, rs)
	}
	return out, nil
}

// firstFeatures names one served feature of each RW1 view: a floor
// request for it reads exactly that view's rows.
func (b *rw1) firstFeatures() (user, post string, err error) {
	for _, v := range []struct {
		name string
		dst  *string
	}{{viewUser, &user}, {viewPost, &post}} {
		view := b.project.View(v.name)
		if view == nil || len(view.Outputs()) == 0 {
			return "", "", fmt.Errorf("bench: the RW1 project has no view %s", v.name)
		}
		*v.dst = view.Outputs()[0].Name()
	}
	return user, post, nil
}

// floorInto reads one floor request of keys keys and adds its answer.
func (b *rw1) floorInto(ctx context.Context, rs *RowSize, body []byte, keys int64) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	var ans floorAnswer
	if err := postJSON(ctx, b.ctl, b.srv.adminURL+"/debug/rows", body, &ans); err != nil {
		return fmt.Errorf("bench: measuring row sizes: %w", err)
	}
	rs.Keys += keys
	rs.RowsFound += ans.RowsFound
	rs.Bytes += ans.Bytes
	rs.BytesPerRow = ratio(float64(rs.Bytes), float64(rs.RowsFound))
	rs.FoundFraction = ratio(float64(rs.RowsFound), float64(rs.Keys))
	return nil
}

// sampleIDs draws min(want, n) distinct ids from 1..n.
func sampleIDs(r *rand.Rand, n int64, want int) []int64 {
	if int64(want) >= n {
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = int64(i) + 1
		}
		return ids
	}
	seen := make(map[int64]bool, want)
	ids := make([]int64, 0, want)
	for len(ids) < want {
		id := r.Int64N(n) + 1
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}
