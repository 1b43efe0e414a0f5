package grpcapi

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/auth"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// RequireTokens returns the server options that make every call but the
// health service's carry a bearer token of tokens (metadata
// "authorization: Bearer <token>") with the scope its method needs
// (ScopeOf), within the token's rate limit. A call refused ends with
// UNAUTHENTICATED (no token, or an unknown one), PERMISSION_DENIED (the
// scope is missing) or RESOURCE_EXHAUSTED (over the limit; the message
// names the limit and the trailer retry-after the seconds to wait) before
// its handler runs.
func RequireTokens(tokens *auth.Tokens) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, tokens, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := authorize(ss.Context(), tokens, info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// ScopeOf is the scope a method's calls need, or public for the health
// service, which needs none: Diagnostics (the raw rows) needs admin;
// FeatureService, reflection and anything else read.
func ScopeOf(fullMethod string) (scope auth.Scope, public bool) {
	switch {
	case strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"):
		return 0, true
	case strings.HasPrefix(fullMethod, "/"+kilnv1.Diagnostics_ServiceDesc.ServiceName+"/"):
		return auth.Admin, false
	}
	return auth.Read, false
}

func authorize(ctx context.Context, tokens *auth.Tokens, method string) error {
	scope, public := ScopeOf(method)
	if public {
		return nil
	}
	var value string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			value = v[0]
		}
	}
	d := tokens.Check(value, scope)
	switch d.Outcome {
	case auth.Allowed:
		return nil
	case auth.Missing, auth.Unknown:
		return status.Error(codes.Unauthenticated, d.Message())
	case auth.Forbidden:
		return status.Error(codes.PermissionDenied, d.Message())
	}
	grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(d.RetryAfter())))
	return status.Error(codes.ResourceExhausted, d.Message())
}
