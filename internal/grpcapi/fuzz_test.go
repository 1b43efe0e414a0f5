package grpcapi_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/internal/grpcapi"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// FuzzGetFeatures decodes arbitrary bytes as a GetFeatures request and
// hands it to the server in-process: every request gets an answer or a
// status with a documented code, never a panic.
func FuzzGetFeatures(f *testing.F) {
	env := startFeed(f, grpcapi.Options{})
	api := env.api
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Service{Service: "ranking"},
		Entities: []*kilnv1.EntityKeys{
			{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", IntValues: []int64{1}}}},
			{Entity: "post", Keys: []*kilnv1.KeyColumn{{Field: "post_id", IntValues: []int64{1, 2, 3}}}},
		},
	})
	seed(&kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: []string{"user_engagement:views_1h"}}},
		Entities:  []*kilnv1.EntityKeys{{Entity: "user", Keys: []*kilnv1.KeyColumn{{Field: "user_id", StringValues: []string{"x"}}}}},
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		var req kilnv1.GetFeaturesRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		_, err := api.GetFeatures(context.Background(), &req)
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.NotFound:
		default:
			t.Fatalf("code %v for %v: %v", status.Code(err), &req, err)
		}
	})
}
