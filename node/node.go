// Package node owns one running Kiln process in embedded mode: it opens the
// Pebble store in a data directory, starts the write path (package ingest)
// and the HTTP API (package serve) on a listener, and stops them in order:
// stop taking requests, write what the partitions hold, close the store.
//
// Start returns once the listener is bound and the server answers; Close
// shuts it down. Both the kiln command and end-to-end tests use it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"google.golang.org/grpc"

	"github.com/kiln-dev/kiln/definition"
	"github.com/kiln-dev/kiln/grpcapi"
	"github.com/kiln-dev/kiln/ingest"
	"github.com/kiln-dev/kiln/query"
	"github.com/kiln-dev/kiln/rowcache"
	"github.com/kiln-dev/kiln/serve"
	"github.com/kiln-dev/kiln/store"
	"github.com/kiln-dev/kiln/store/pebble"
	"github.com/kiln-dev/kiln/tile"
)

// Config configures a node. Project and DataDir are required.
type Config struct {
	Project *definition.Project
	// DataDir is the embedded store's directory; it is created if missing.
	DataDir string
	// Addr is the HTTP listen address. Default 127.0.0.1:7070; use
	// 127.0.0.1:0 for a free port (Node.Addr tells which).
	Addr string
	// GRPCAddr is the gRPC listen address; empty serves no gRPC.
	GRPCAddr string
	// Ingest configures the write path (partitions, batching, clock).
	Ingest ingest.Options
	// CacheBytes is the store's block cache. Default: the store's default.
	CacheBytes int64
	// RowCacheBytes bounds the read path's cache of rows. The write path
	// updates it on every commit, so in embedded mode it never serves a
	// stale row. 0 means rowcache.DefaultMaxBytes; negative disables it.
	RowCacheBytes int64
	// MaxInFlightRows is the read path's admission budget (query.Config).
	// 0 means 2,048 rows per CPU; negative disables admission control.
	MaxInFlightRows int64
	// ShutdownTimeout bounds how long Close waits for requests in flight.
	// Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives the node's log. Default: discard.
	Logger *slog.Logger
}

// Node is a running Kiln process.
type Node struct {
	// Addr is the address the HTTP API listens on; GRPCAddr the gRPC API
	// (empty without one).
	Addr     string
	GRPCAddr string
	Plans    map[*definition.View]*tile.Plan
	Store    *pebble.Store
	Pipeline *ingest.Pipeline
	Engine   *query.Engine
	Server   *serve.Server

	cfg     Config
	http    *http.Server
	serveCh chan error
	grpc    *grpc.Server
	grpcAPI *grpcapi.Server
	grpcCh  chan error
}

// Start opens the store, starts the pipeline and serves HTTP on cfg.Addr.
func Start(cfg Config) (*Node, error) {
	if cfg.Project == nil || cfg.DataDir == "" {
		return nil, errors.New("node: Config needs Project and DataDir")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:7070"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ingest.Logger == nil {
		cfg.Ingest.Logger = cfg.Logger
	}
	plans, err := tile.CompileProject(cfg.Project)
	if err != nil {
		return nil, err
	}
	st, err := pebble.Open(cfg.DataDir, pebble.Options{CacheBytes: cfg.CacheBytes, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	var rows query.RowSource = st
	var cache *rowcache.Cache
	if cfg.RowCacheBytes >= 0 {
		cache = rowcache.New(rowcache.Options{MaxBytes: cfg.RowCacheBytes})
		rows = rowcache.Source{Cache: cache, Load: st.Get}
		cfg.Ingest.AfterWrite = func(batch []store.KV, err error) {
			for _, kv := range batch {
				if err == nil {
					cache.Set(kv.Key, kv.Value)
				} else {
					cache.Delete(kv.Key)
				}
			}
		}
	}
	pl, err := ingest.New(cfg.Project, plans, st, cfg.Ingest)
	if err != nil {
		st.Close()
		return nil, err
	}
	maxRows := cfg.MaxInFlightRows
	if maxRows == 0 {
		maxRows = 2048 * int64(runtime.GOMAXPROCS(0))
	}
	engine, err := query.New(query.Config{Project: cfg.Project, Plans: plans, Rows: rows, Floor: st, Now: pl.Now, MaxInFlightRows: maxRows})
	if err != nil {
		pl.Close()
		st.Close()
		return nil, err
	}
	srv, err := serve.New(serve.Config{Project: cfg.Project, Engine: engine, Pipeline: pl, Logger: cfg.Logger,
		Stats: func() map[string]any {
			out := map[string]any{"read": engine.Stats()}
			if cache != nil {
				out["row_cache"] = cache.Stats()
			}
			return out
		}})
	if err != nil {
		pl.Close()
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		pl.Close()
		st.Close()
		return nil, fmt.Errorf("listening on %s: %w (is another kiln running? pick another --addr)", cfg.Addr, err)
	}
	n := &Node{
		Addr: ln.Addr().String(), Plans: plans, Store: st, Pipeline: pl, Engine: engine, Server: srv, cfg: cfg,
		http: &http.Server{
			Handler:           srv,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		},
		serveCh: make(chan error, 1),
	}
	if cfg.GRPCAddr != "" {
		gln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			ln.Close()
			pl.Close()
			st.Close()
			return nil, fmt.Errorf("listening on %s: %w (pick another --grpc-addr)", cfg.GRPCAddr, err)
		}
		n.GRPCAddr = gln.Addr().String()
		n.grpc = grpc.NewServer()
		n.grpcAPI = grpcapi.New(engine, grpcapi.Options{Logger: cfg.Logger})
		n.grpcAPI.Register(n.grpc)
		n.grpcCh = make(chan error, 1)
		go func() { n.grpcCh <- n.grpc.Serve(gln) }()
	}
	go func() { n.serveCh <- n.http.Serve(ln) }()
	cfg.Logger.Info("kiln serving", "addr", n.Addr, "project", cfg.Project.Name, "data", cfg.DataDir)
	return n, nil
}

// URL is the base URL of the HTTP API.
func (n *Node) URL() string { return "http://" + n.Addr }

// Close stops the node: /readyz turns unready, requests in flight finish
// (up to the shutdown timeout), the pipeline writes what it holds, and the
// store closes. It returns the first error met.
func (n *Node) Close() error {
	n.Server.SetReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	if n.grpc != nil {
		n.grpcAPI.SetServing(false)
		stopped := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpc.Stop()
		}
		<-n.grpcCh
	}
	errs := []error{n.http.Shutdown(ctx)}
	if err := <-n.serveCh; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, n.Pipeline.Close(), n.Store.Close())
	return errors.Join(errs...)
}
