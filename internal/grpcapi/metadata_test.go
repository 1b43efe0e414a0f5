package grpcapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/internal/grpcapi"
	"github.com/kiln-dev/kiln/internal/metadata"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// GetMetadata describes what GET /v1/metadata describes.
func TestGetMetadata(t *testing.T) {
	env := startFeed(t, grpcapi.Options{})
	got, err := env.client.GetMetadata(context.Background(), &kilnv1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(env.node.URL() + "/v1/metadata")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d metadata.Project
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}

	if got.Project != d.Name || len(got.Entities) != len(d.Entities) || len(got.Sources) != len(d.Sources) ||
		len(got.Views) != len(d.Views) || len(got.Services) != len(d.Services) {
		t.Fatalf("GetMetadata %v\n/v1/metadata %+v", got, d)
	}
	if k := got.Entities[0].Keys[0]; k.Name != "user_id" || k.Type != kilnv1.ValueType_VALUE_TYPE_INT64 {
		t.Errorf("user key: %v", k)
	}
	for i, v := range d.Views {
		gv := got.Views[i]
		if gv.Name != v.Name || len(gv.Served) != len(v.Served) || len(gv.Plan.Levels) != len(v.Plan.Levels) ||
			gv.Plan.LateHorizon != v.Plan.LateHorizon || gv.Plan.RowBytesFull != int64(v.Plan.RowBytesFull) {
			t.Errorf("view %s: %v, want %+v", v.Name, gv, v)
			continue
		}
		for j, s := range v.Served {
			if gs := gv.Served[j]; gs.Name != s.Name || gs.Type.String() != map[string]string{
				"int64": "VALUE_TYPE_INT64", "float64": "VALUE_TYPE_DOUBLE", "string": "VALUE_TYPE_STRING", "bool": "VALUE_TYPE_BOOL",
			}[s.Type] {
				t.Errorf("served %v, want %+v", gs, s)
			}
		}
	}
	if w := got.Views[0].Features[0].Where[0]; w.Field != "kind" || w.ValuesJson[0] != `"view"` {
		t.Errorf("filter: %v", w)
	}
	if svc := got.Services[1]; svc.Name != "ranking" || len(svc.Features) != 31 || len(svc.Entities) != 2 {
		t.Errorf("service: %v", svc)
	}

	// What a caller does to its answer does not reach the next caller's.
	got.Project = "changed"
	again, err := env.api.GetMetadata(context.Background(), &kilnv1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	again.Views[0].Name = "changed"
	third, _ := env.api.GetMetadata(context.Background(), &kilnv1.GetMetadataRequest{})
	if third.Views[0].Name != "user_engagement" || !proto.Equal(third, func() *kilnv1.GetMetadataResponse { got.Project = d.Name; return got }()) {
		t.Errorf("the cached answer changed: %v", third)
	}
}
