package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPC instruments a gRPC server's calls: kiln_grpc_requests_total by
// service, method and code, kiln_grpc_request_duration_seconds by service
// and method. Make it before the server (its interceptors go in the
// server's options), then call Init with the server once every service is
// registered, before it serves.
type GRPC struct {
	req *Requests
	// methods holds each registered method's instruments by full name
	// (/package.Service/Method); written by Init only, before serving.
	methods map[string]*Route
	other   *Route
}

// NewGRPC registers the instruments of a gRPC server on reg.
func NewGRPC(reg prometheus.Registerer) *GRPC {
	g := &GRPC{
		req: NewRequests(reg, "grpc", "gRPC", []string{"service", "method"}, func(c int) string { return codes.Code(c).String() }),
	}
	g.other = g.req.Route("other", "other")
	return g
}

// Init makes the instruments of every method s serves.
func (g *GRPC) Init(s *grpc.Server) {
	g.methods = map[string]*Route{}
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			rt := g.req.Route(svc, m.Name)
			rt.Counter(int(codes.OK)) // the series a dashboard divides by exists from the start
			g.methods["/"+svc+"/"+m.Name] = rt
		}
	}
}

func (g *GRPC) route(full string) *Route {
	if rt := g.methods[full]; rt != nil {
		return rt
	}
	return g.other
}

// ServerOptions are the interceptors to give grpc.NewServer.
func (g *GRPC) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}

func (g *GRPC) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	g.route(info.FullMethod).Observe(int(status.Code(err)), time.Since(start).Seconds())
	return resp, err
}

func (g *GRPC) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	g.route(info.FullMethod).Observe(int(status.Code(err)), time.Since(start).Seconds())
	return err
}
