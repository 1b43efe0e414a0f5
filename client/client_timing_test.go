package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/internal/grpcapi"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// BenchmarkGet measures one ranking call (1 user, 50 posts, 31 features)
// over loopback: the client beside a direct call of the generated stub on
// one connection, the baseline the client adds its routing to.
func BenchmarkGet(b *testing.B) {
	cl := startCluster(b, 2, grpcapi.Options{})
	ctx := context.Background()
	posts := make([]int64, 50)
	for i := range posts {
		posts[i] = 100 + int64(i)
	}
	build := func(req *client.Request) {
		req.Reset()
		req.Add("user", client.Int("user_id", 1))
		req.AddInts("post", "post_id", posts...)
	}

	b.Run("direct", func(b *testing.B) {
		conn, err := grpc.NewClient(cl.replicas[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		stub := kilnv1.NewFeatureServiceClient(conn)
		in := &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_Service{Service: "ranking"},
			Entities: []*kilnv1.EntityKeys{
				{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}},
				{Entity: "post", Keys: []*kilnv1.KeyColumn{{Field: "post_id", IntValues: posts}}},
			},
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stub.GetFeatures(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, bc := range []struct {
		name     string
		opts     client.Options
		prepared bool
	}{
		{"client", client.Options{}, false},
		{"client-prepared", client.Options{}, true},
		{"client-affinity", client.Options{Affinity: true}, false},
		{"client-hedge-unfired", client.Options{Hedge: time.Second}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClient(b, cl, bc.opts)
			req := &client.Request{Selection: client.Service("ranking")}
			if bc.prepared {
				p, err := c.Prepare(ctx, client.Service("ranking"))
				if err != nil {
					b.Fatal(err)
				}
				req = &client.Request{Prepared: p}
			}
			b.ReportAllocs()
			for b.Loop() {
				build(req)
				if _, err := c.Get(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// Building a reused request allocates nothing.
	b.Run("build-request", func(b *testing.B) {
		req := &client.Request{Selection: client.Service("ranking")}
		b.ReportAllocs()
		for b.Loop() {
			build(req)
		}
	})
}
