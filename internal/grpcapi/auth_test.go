package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/auth/authtest"
	"github.com/kiln-dev/kiln/internal/grpcapi"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Every method but the health service's needs a token with its scope:
// FeatureService and reflection read, Diagnostics admin. A token over its
// read limit gets RESOURCE_EXHAUSTED naming the limit, while another
// token's calls go on.
func TestRequireTokens(t *testing.T) {
	reader := &authtest.Token{Name: "reader", Scopes: auth.Read}
	limited := &authtest.Token{Name: "limited", Scopes: auth.Read, Limits: auth.Limits{ReadRPS: 0.5}}
	ops := &authtest.Token{Name: "ops", Scopes: auth.Admin}
	tokens, err := auth.Load(authtest.WriteTokens(t, reader, limited, ops))
	if err != nil {
		t.Fatal(err)
	}
	env := startFeed(t, grpcapi.Options{}, grpcapi.RequireTokens(tokens)...)
	req := request{service: "user_profile", entities: []keys{ints("user", "user_id", 1)}}.proto()
	with := func(tok *authtest.Token) context.Context {
		ctx := context.Background()
		if tok != nil {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.Token)
		}
		return ctx
	}
	get := func(tok *authtest.Token, code codes.Code, msg string) {
		t.Helper()
		var trailer metadata.MD
		_, err := env.client.GetFeatures(with(tok), req, grpc.Trailer(&trailer))
		wantCode(t, "GetFeatures", err, code, msg)
		if code == codes.ResourceExhausted && trailer.Get("retry-after")[0] != "2" {
			t.Errorf("retry-after trailer %v, want 2", trailer.Get("retry-after"))
		}
	}
	get(nil, codes.Unauthenticated, "needs a bearer token")
	get(&authtest.Token{Token: "kiln_nope"}, codes.Unauthenticated, "not one this server knows")
	get(ops, codes.PermissionDenied, `token "ops" may not read`)
	get(reader, codes.OK, "")
	get(limited, codes.OK, "")
	get(limited, codes.ResourceExhausted, `token "limited" is over its read limit of 0.5 requests/s`)
	get(reader, codes.OK, "")

	// Diagnostics is served apart (the admin listener), asking the same tokens.
	diag := kilnv1.NewDiagnosticsClient(serveWith(t, env.api.RegisterDiagnostics, grpcapi.RequireTokens(tokens)...))
	_, err = diag.GetRows(with(reader), req)
	wantCode(t, "GetRows as a reader", err, codes.PermissionDenied, "diagnostics")
	_, err = diag.GetRows(with(ops), req)
	wantCode(t, "GetRows as ops", err, codes.OK)

	_, err = kilnv1.NewFeatureServiceClient(env.conn).GetMetadata(context.Background(), &kilnv1.GetMetadataRequest{})
	wantCode(t, "GetMetadata without a token", err, codes.Unauthenticated)
	h, err := healthpb.NewHealthClient(env.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check without a token: %v %v", h, err)
	}
	// Reflection is a stream: the stream interceptor refuses it.
	stream, err := reflectionpb.NewServerReflectionClient(env.conn).ServerReflectionInfo(context.Background())
	if err == nil {
		stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated || strings.Contains(err.Error(), "kiln_") {
		t.Errorf("reflection without a token: %v", err)
	}
}
