package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"

	"github.com/kiln-dev/kiln/internal/grpcapi"
	"github.com/kiln-dev/kiln/internal/metrics"
	"github.com/kiln-dev/kiln/internal/serve"
)

// admin is the admin listener: one port that serves HTTP/1 (the server's
// Admin handler: /metrics, the profiler, /debug/rows, /debug/stats, the
// probes) and gRPC (kiln.v1.Diagnostics), told apart by the first bytes a
// connection sends (an HTTP/2 preface is gRPC).
type admin struct {
	ln     net.Listener
	mux    cmux.CMux
	http   *http.Server
	grpc   *grpc.Server // nil without a read engine
	served chan error   // the mux's Serve
	parts  chan error   // the HTTP and gRPC servers' Serve
	nparts int
}

// startAdmin listens on cfg.AdminAddr and serves the admin listener.
func (n *Node) startAdmin(cfg Config, gm *metrics.GRPC) (*admin, error) {
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (pick another --admin-addr, or give --admin-addr= for none)", cfg.AdminAddr, err)
	}
	a := &admin{ln: ln, mux: cmux.New(ln), served: make(chan error, 1), parts: make(chan error, 2)}
	// A connection that sends nothing is dropped after this long, so that
	// it cannot hold the mux's goroutine for it.
	a.mux.SetReadTimeout(10 * time.Second)
	// Without a read engine there is no Diagnostics: every connection is
	// HTTP's.
	var grpcL net.Listener
	if n.grpcAPI != nil {
		grpcL = a.mux.Match(cmux.HTTP2())
	}
	httpL := a.mux.Match(cmux.Any())
	handler := n.Server.Admin()
	if cfg.Tokens != nil {
		// The operators' routes ask for the admin scope (serve.ScopeOf),
		// as they did on the public port.
		handler = serve.RequireTokens(handler, cfg.Tokens)
	}
	a.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	go func() { a.parts <- a.http.Serve(httpL) }()
	a.nparts++
	if n.grpcAPI != nil {
		opts := gm.ServerOptions()
		if cfg.Tokens != nil {
			opts = append(opts, grpcapi.RequireTokens(cfg.Tokens)...)
		}
		a.grpc = grpc.NewServer(opts...)
		n.grpcAPI.RegisterDiagnostics(a.grpc)
		gm.Init(a.grpc)
		go func() { a.parts <- a.grpc.Serve(grpcL) }()
		a.nparts++
	}
	go func() { a.served <- a.mux.Serve() }()
	return a, nil
}

// addr is the address the admin listener is bound to.
func (a *admin) addr() string { return a.ln.Addr().String() }

// close stops the admin listener: the requests in flight finish (up to
// ctx), then the listener closes.
func (a *admin) close(ctx context.Context) error {
	if a.grpc != nil {
		stopped := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			a.grpc.Stop()
		}
	}
	err := a.http.Shutdown(ctx)
	// Closing the servers' listeners closed the one they share; the mux
	// stops once it is closed.
	a.mux.Close()
	a.ln.Close()
	<-a.served
	for range a.nparts {
		<-a.parts
	}
	// The HTTP server's listener is the shared one (a cmux listener closes
	// its root): once the gRPC server has closed it, Shutdown closing it
	// again says so, unless HTTP's Serve saw it first.
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
