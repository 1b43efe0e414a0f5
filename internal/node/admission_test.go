package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/redistest"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// adminStats reads /debug/stats's admission member; nil when it has none.
func adminStats(t *testing.T, n *node.Node) *admission.Stats {
	t.Helper()
	resp, err := http.Get(n.AdminURL() + "/debug/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Admission *admission.Stats `json:"admission"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Admission
}

// Admission control stands in front of the feature reads of both APIs,
// and of nothing else; AdmissionOff takes it away.
func TestAdmissionInFrontOfReads(t *testing.T) {
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, DataDir: t.TempDir(), Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Admission: admission.Config{MaxConcurrent: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	body := []byte(`{"features":["post_engagement:views_1h"],"entities":{"post":[{"post_id":1}]}}`)
	for _, path := range []string{"/v1/features", "/healthz", "/v1/metadata"} {
		var resp *http.Response
		if path == "/v1/features" {
			resp, err = http.Post(n.URL()+path, "application/json", bytes.NewReader(body))
		} else {
			resp, err = http.Get(n.URL() + path)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	cc, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = kilnv1.NewFeatureServiceClient(cc).GetFeatures(context.Background(), &kilnv1.GetFeaturesRequest{
		Selection: &kilnv1.GetFeaturesRequest_Features{Features: &kilnv1.FeatureList{Names: []string{"post_engagement:views_1h"}}},
		Entities:  []*kilnv1.EntityKeys{{Entity: "post", Keys: []*kilnv1.KeyColumn{{Field: "post_id", IntValues: []int64{1}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := adminStats(t, n)
	if st == nil || st.Admitted != 2 || st.MaxConcurrent != 3 || st.Refused != 0 || st.Running != 0 {
		t.Fatalf("admission stats %+v, want 2 reads admitted of 3 slots", st)
	}
	if n.Admission == nil || n.Admission.Refused() != 0 {
		t.Fatal("the node does not expose its Limiter")
	}

	off, err := node.Start(node.Config{Project: p, DataDir: t.TempDir(), Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", AdmissionOff: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if off.Admission != nil || adminStats(t, off) != nil {
		t.Fatal("admission control with AdmissionOff")
	}
}

// Reads run one per CPU by default on the embedded store, where a read
// uses its CPU from start to end, and RedisReadsPerCPU per CPU over Redis,
// where it mostly waits on the network.
func TestAdmissionDefaultsByStore(t *testing.T) {
	embedded, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	redis, err := projectfile.Parse("m.yaml", []byte("online_store: {type: redis, addrs: ["+redistest.Standalone(t)+"]}\n"+clicksProject))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  node.Config
		want int
	}{
		{"embedded", node.Config{Project: embedded, DataDir: t.TempDir()}, 3},
		{"redis", node.Config{Project: redis, Role: node.RoleServe}, 3 * node.RedisReadsPerCPU},
		{"set", node.Config{Project: embedded, DataDir: t.TempDir(), Admission: admission.Config{MaxConcurrent: 5}}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr, tc.cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
			if tc.cfg.Admission.MaxConcurrent == 0 {
				tc.cfg.Admission.CPUs = 3
			}
			n, err := node.Start(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if got := adminStats(t, n).MaxConcurrent; got != tc.want {
				t.Fatalf("%d reads at once, want %d", got, tc.want)
			}
		})
	}
}
