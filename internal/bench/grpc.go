package bench

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Limits of the gRPC client.
const (
	grpcMaxMessageBytes = 64 << 20
	grpcConnectTimeout  = 30 * time.Second
)

// grpcConn is a connection to Kiln's gRPC API (kiln.v1.FeatureService) and
// one to its admin listener (kiln.v1.Diagnostics).
type grpcConn struct {
	cc    *grpc.ClientConn
	admin *grpc.ClientConn
	fs    kilnv1.FeatureServiceClient
	diag  kilnv1.DiagnosticsClient
}

// dialGRPC connects to the gRPC API at addr and the admin listener at
// admin, and waits until the API answers.
func dialGRPC(ctx context.Context, addr, admin string) (*grpcConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMaxMessageBytes)),
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: gRPC client of %s: %w", addr, err)
	}
	ac, err := grpc.NewClient(admin, opts...)
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("bench: gRPC client of the admin listener %s: %w", admin, err)
	}
	g := &grpcConn{cc: cc, admin: ac, fs: kilnv1.NewFeatureServiceClient(cc), diag: kilnv1.NewDiagnosticsClient(ac)}
	cctx, cancel := context.WithTimeout(ctx, grpcConnectTimeout)
	defer cancel()
	// Prepare answers as soon as the server serves; wait for it.
	if _, err := g.fs.Prepare(cctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: serviceQ1}}, grpc.WaitForReady(true)); err != nil {
		g.close()
		return nil, fmt.Errorf("bench: the gRPC API at %s does not answer: %w", addr, err)
	}
	return g, nil
}

func (g *grpcConn) close() {
	g.cc.Close()
	g.admin.Close()
}

// features prepares q's service and encodes every request of q as a
// GetFeaturesRequest with the prepared id: the calls then send bytes
// encoded before the clock started and drop the answer's bytes unparsed,
// as the HTTP client does.
func (g *grpcConn) features(ctx context.Context, q *querySet, timeout time.Duration) (caller, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	prep, err := g.fs.Prepare(pctx, &kilnv1.PrepareRequest{Selection: &kilnv1.PrepareRequest_Service{Service: q.service}})
	if err != nil {
		return nil, fmt.Errorf("bench: gRPC Prepare %s: %w", q.service, err)
	}
	c := &grpcFeatures{g: g, q: q, timeout: timeout, msgs: make([]*kilnv1.GetFeaturesRequest, q.len()), wire: make([][]byte, q.len())}
	for i := range q.len() {
		m := &kilnv1.GetFeaturesRequest{
			Selection: &kilnv1.GetFeaturesRequest_PreparedId{PreparedId: prep.PreparedId},
			Entities: []*kilnv1.EntityKeys{{
				Entity: entityUser,
				Keys:   []*kilnv1.KeyColumn{{Field: keyUser, IntValues: q.users[i : i+1]}},
			}},
		}
		if q.postsPer > 0 {
			m.Entities = append(m.Entities, &kilnv1.EntityKeys{
				Entity: entityPost,
				Keys:   []*kilnv1.KeyColumn{{Field: keyPost, IntValues: q.postsOf(i)}},
			})
		}
		if c.wire[i], err = proto.Marshal(m); err != nil {
			return nil, err
		}
		c.msgs[i] = m
	}
	return c, nil
}

// grpcFeatures calls GetFeatures with pre-encoded requests.
type grpcFeatures struct {
	g       *grpcConn
	q       *querySet
	timeout time.Duration
	msgs    []*kilnv1.GetFeaturesRequest
	wire    [][]byte
}

func (c *grpcFeatures) call(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var discard rawMessage
	return c.g.cc.Invoke(ctx, kilnv1.FeatureService_GetFeatures_FullMethodName,
		rawMessage(c.wire[i%len(c.wire)]), &discard, grpc.ForceCodec(rawCodec{}))
}

func (c *grpcFeatures) check(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.g.fs.GetFeatures(ctx, c.msgs[i%len(c.msgs)])
	if err != nil {
		return fmt.Errorf("%s gRPC GetFeatures: %w", c.q.name, err)
	}
	want := map[string]int{entityUser: 1}
	if c.q.postsPer > 0 {
		want[entityPost] = c.q.postsPer
	}
	if len(resp.Entities) != len(want) {
		return fmt.Errorf("%s gRPC GetFeatures: %d entity types in the answer, want %d", c.q.name, len(resp.Entities), len(want))
	}
	values := 0
	for _, e := range resp.Entities {
		if n := len(e.Statuses); n != want[e.Entity] {
			return fmt.Errorf("%s gRPC GetFeatures: %d %s keys in the answer, want %d", c.q.name, n, e.Entity, want[e.Entity])
		}
		values += len(e.Statuses) * len(e.Features)
	}
	if values != c.q.values {
		return fmt.Errorf("%s gRPC GetFeatures: %d values in the answer, want %d", c.q.name, values, c.q.values)
	}
	return nil
}

// rawMessage is a message already in wire form.
type rawMessage []byte

// rawCodec sends rawMessages as they are and keeps answers undecoded. It
// is named "proto" so the server decodes what it sends as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("bench: raw codec cannot encode %T", v)
	}
	return m, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("bench: raw codec cannot decode into %T", v)
	}
	*m = data[:0:0] // dropped: only the size of the answer would be kept
	return nil
}

func (rawCodec) Name() string { return "proto" }

// grpcFloor sends the same pre-encoded requests to Diagnostics.GetRows: the
// floor over the same transport as Kiln's gRPC reads.
type grpcFloor struct{ *grpcFeatures }

func (c grpcFloor) call(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var discard rawMessage
	return c.g.admin.Invoke(ctx, kilnv1.Diagnostics_GetRows_FullMethodName,
		rawMessage(c.wire[i%len(c.wire)]), &discard, grpc.ForceCodec(rawCodec{}))
}

func (c grpcFloor) check(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.g.diag.GetRows(ctx, c.msgs[i%len(c.msgs)])
	if err != nil {
		return fmt.Errorf("%s gRPC GetRows: %w", c.q.name, err)
	}
	if resp.RowsFound == 0 {
		return fmt.Errorf("%s gRPC GetRows: no rows found: is the history loaded?", c.q.name)
	}
	return nil
}

// floor returns the floor caller of q over gRPC.
func (g *grpcConn) floor(ctx context.Context, q *querySet, timeout time.Duration) (caller, error) {
	c, err := g.features(ctx, q, timeout)
	if err != nil {
		return nil, err
	}
	return grpcFloor{c.(*grpcFeatures)}, nil
}
