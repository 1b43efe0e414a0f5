package query

import (
	"context"
	"testing"
)

// The read path alone (rows served from memory) and over the embedded store,
// for RW1's query shapes: Q1 (one user, 12 values) and Q2 (one user and
// 500 posts, 9,512 values).
func BenchmarkRead(b *testing.B) {
	w := newWorld(b, 100, 1500)
	for _, src := range []struct {
		name string
		rows RowSource
	}{{"mem", w.memSource(b)}, {"pebble", w.store}} {
		e := w.engine(b, src.rows, 0)
		for _, q := range []struct {
			name  string
			posts int
		}{{"Q1", 0}, {"Q2", 500}} {
			b.Run(src.name+"/"+q.name, func(b *testing.B) {
				req := rankingRequest(b, e, 7, q.posts)
				if q.posts == 0 {
					p, _ := e.Service("user_profile")
					req.Prepared, req.Keys = p, req.Keys[:1]
				}
				values := 12 + q.posts*19
				var res Result
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := e.Read(context.Background(), req, &res); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(values)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
			})
		}
	}
}
