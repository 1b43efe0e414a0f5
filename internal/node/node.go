// Package node owns one running Kiln process: it opens the online store the
// project names (Pebble in a data directory, or Redis), starts what the
// process's role needs — the write path (package ingest), the read engine
// (package query) with its row cache, the HTTP API (package serve), the
// gRPC API (package grpcapi) and the admin listener with the process's
// metrics (package metrics) — and stops them in order: stop taking
// requests, stop the streaming sources, write what the partitions hold,
// close the store.
//
// Start returns once the listeners are bound; Close shuts everything down.
// Both the kiln command and end-to-end tests use it.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/grpcapi"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/metrics"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/rowcache"
	"github.com/kiln-dev/kiln/internal/serve"
	"github.com/kiln-dev/kiln/internal/spool"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/pebble"
	"github.com/kiln-dev/kiln/internal/store/redis"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/stream/kafka"
	"github.com/kiln-dev/kiln/internal/stream/nats"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tracing"
	"github.com/kiln-dev/kiln/internal/version"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Role is what a process does.
type Role uint8

// Roles a process can take.
const (
	// RoleAll ingests and serves: the embedded default, and the zero value.
	RoleAll Role = iota
	// RoleIngest owns the partitions and writes rows; it takes pushes and
	// serves no features.
	RoleIngest
	// RoleServe only reads rows and serves features; any number of serve
	// processes can answer from one shared store.
	RoleServe
)

var roleNames = [...]string{RoleAll: "all", RoleIngest: "ingest", RoleServe: "serve"}

// ParseRole returns the role named s (all, ingest or serve), as the
// --role flag spells it; empty is RoleAll, the default.
func ParseRole(s string) (Role, error) {
	if s == "" {
		return RoleAll, nil
	}
	for r, name := range roleNames {
		if name == s {
			return Role(r), nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: use all, ingest or serve", s)
}

// String returns the role's name: all, ingest or serve.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role?"
}

// MarshalText encodes r as its name, for the stats.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// DefaultMaxStaleness bounds how old a cached row a process serves when
// other processes write the store (the project's online_store.max_staleness
// overrides it).
const DefaultMaxStaleness = time.Second

// Config configures a node. Project is required; DataDir too with the
// embedded store.
type Config struct {
	Project *definition.Project
	// Role is RoleAll (default), RoleIngest or RoleServe. Ingest and serve
	// need a shared online store (online_store type redis).
	Role Role
	// DataDir is the embedded store's directory; it is created if missing.
	// Unused with Redis.
	DataDir string
	// Addr is the HTTP listen address. Default 127.0.0.1:7070; use
	// 127.0.0.1:0 for a free port (Node.Addr tells which).
	Addr string
	// GRPCAddr is the gRPC listen address; empty serves no gRPC.
	GRPCAddr string
	// AdminAddr is the admin listener's address: /metrics, the profiler
	// (/debug/pprof/), the raw-row read (POST /debug/rows and gRPC
	// kiln.v1.Diagnostics), /debug/stats, /healthz and /readyz. Empty
	// serves none (kiln serve's default is 127.0.0.1:7072); use
	// 127.0.0.1:0 for a free port (Node.AdminURL tells which).
	AdminAddr string
	// Ingest configures the write path (partitions, batching, clock).
	Ingest ingest.Options
	// Archive is where every event the write path accepts is kept
	// (OpenArchive); nil keeps none. A process that ingests journals the
	// events it accepts before it acknowledges them (package spool), in
	// Journal.Dir: by default "archive-journal" in DataDir. A new view is
	// filled from the archive, and changed views are rebuilt from it.
	Archive *archive.Archive
	// Journal configures the archive's journal; Start fills in its Archive,
	// Project, Logger and (from Ingest.Now) clock.
	Journal spool.Options
	// Now is the read clock of a serve-only process (Unix ms); other roles
	// read at the write path's clock. Default: the wall clock.
	Now func() int64
	// CacheBytes is the embedded store's block cache. Default: the store's
	// default.
	CacheBytes int64
	// RowCacheBytes bounds the read path's cache of rows. 0 means
	// rowcache.DefaultMaxBytes; negative disables it. The write path updates
	// it on every commit, so an embedded node never serves a stale row; a
	// node over Redis serves rows at most max_staleness old.
	RowCacheBytes int64
	// Admission configures the read path's overload control (package
	// admission: how many reads run at once, when a queue of them counts
	// as overload); AdmissionOff turns it off.
	// Its MaxConcurrent defaults to one read per CPU on the embedded store
	// and RedisReadsPerCPU per CPU over Redis.
	Admission    admission.Config
	AdmissionOff bool
	// ShutdownTimeout bounds how long Close waits for requests in flight.
	// Default 10s.
	ShutdownTimeout time.Duration
	// Tokens, if set, are the bearer tokens every request to either API
	// but the probes must carry, with its route's scope (package auth).
	// Nil asks for none.
	Tokens *auth.Tokens
	// TLS, if set, serves both APIs over TLS (auth.Certs.Config); nil
	// serves them in plaintext.
	TLS *tls.Config
	// HTTPTimeouts bound how long the HTTP API waits on a connection.
	HTTPTimeouts HTTPTimeouts
	// Logger receives the node's log. Default: discard.
	Logger *slog.Logger
	// Tracing, if set, traces the requests of the HTTP and gRPC APIs and
	// their reads of the row cache and the store (package tracing).
	// Default: off, and nothing of OpenTelemetry is in the request path.
	Tracing trace.TracerProvider

	// Rebuild rebuilds the views whose definition changed since their rows
	// were written from the Archive, serving the other views meanwhile
	// (kiln serve --rebuild). Without it, Start refuses to start on a
	// changed view (a *ChangedViewsError says which and how).
	Rebuild bool
	// ResetViews start the named views empty, under a new generation of
	// their rows, changed or not (kiln serve --reset-view).
	ResetViews []string
	// RebuildBatch, if set, is called before each batch a rebuild replays;
	// an error stops the rebuild. Tests hold a rebuild with it.
	RebuildBatch func(ctx context.Context, view string) error
	// CatalogPoll is how often a process that only serves reads the
	// catalog of view layouts while another process rebuilds a view.
	// Default 5s.
	CatalogPoll time.Duration
}

// HTTPTimeouts bound how long the HTTP server waits on a client, so that a
// slow or stalled one holds its connection (and what its request has sent)
// only so long. Zero is the default; negative is no limit.
type HTTPTimeouts struct {
	// ReadHeader bounds reading a request's headers. Default 10s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included: a 16 MiB push
	// must arrive at 300 KiB/s on average. Default 1m.
	Read time.Duration
	// Write bounds the time from the end of a request's headers to the
	// end of its answer (a training set's included). Default 5m.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request. Default 2m.
	Idle time.Duration
}

// Defaults of HTTPTimeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = 5 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

// orDefault is d, def when zero, and no limit (0, as http.Server reads it)
// when negative.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Node is a running Kiln process.
type Node struct {
	// Addr is the address the HTTP API listens on; GRPCAddr the gRPC API
	// (empty without one); AdminAddr the admin listener (empty without
	// one).
	Addr      string
	GRPCAddr  string
	AdminAddr string
	Role      Role
	Plans     map[*definition.View]*tile.Plan
	Store     store.Store
	Writer    *ingest.Writer // nil in a serve-only process
	// Archive is the event archive (Config.Archive), nil without one;
	// Journal is its journal, nil without an archive or in a serve-only
	// process.
	Archive *archive.Archive
	Journal *spool.Spool
	Engine  *query.Engine // nil in an ingest-only process
	Server  *serve.Server
	// Admission admits, queues or refuses the feature reads of both APIs;
	// nil in an ingest-only process or with Config.AdmissionOff. Its
	// Refused counts the refusals.
	Admission *admission.Limiter
	// Registry holds the process's metrics, served on the admin
	// listener's /metrics.
	Registry *prometheus.Registry

	cfg     Config
	admin   *admin // nil without an admin listener
	http    *http.Server
	serveCh chan error
	grpc    *grpc.Server
	grpcAPI *grpcapi.Server
	grpcCh  chan error

	sources     []*stream.Applier
	stopSources context.CancelFunc
	sourcesDone chan struct{}
	deadLetters []stream.DeadLetters

	// views is what the catalog of view layouts said at start; catMu
	// guards its catalog once rebuilds run.
	views     *views
	catMu     sync.Mutex
	rebuilds  *rebuilds // nil: a process that only serves
	stopWatch func()    // nil: no catalog watch

	closeOnce sync.Once
	closeErr  error
}

// Start opens the store, starts what the role needs and serves HTTP (and
// gRPC when asked).
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Project == nil {
		return nil, errors.New("node: Config needs a Project")
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
	online := cfg.Project.OnlineStore
	switch {
	case cfg.Role > RoleServe:
		return nil, fmt.Errorf("unknown role %q: use all, ingest or serve", cfg.Role)
	case cfg.Role != RoleAll && online.Type != definition.Redis:
		return nil, fmt.Errorf("role %s needs an online store shared by several processes: set online_store: {type: redis, addrs: [...]} in %s (the embedded store belongs to one process)", cfg.Role, cfg.Project.File)
	case online.Type != definition.Redis && cfg.DataDir == "":
		return nil, errors.New("node: the embedded store needs a data directory (--data)")
	}
	plans, err := tile.CompileProject(cfg.Project)
	if err != nil {
		return nil, err
	}
	build := version.Get()
	n := &Node{Role: cfg.Role, Plans: plans, Archive: cfg.Archive, cfg: cfg, Registry: metrics.NewRegistry(build)}
	reads := newStoreReads(n.Registry)
	cfg.Ingest.WriteLatency = storeWriteLatency(n.Registry)
	// On an error below, undo what was started.
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()

	if n.Store, err = openStore(cfg); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { n.Store.Close() })
	if err := checkNames(cfg.Project, "--reset-view", cfg.ResetViews); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	if cfg.Role == RoleServe {
		n.views, err = readCatalog(ctx, n.Store, cfg.Project, plans)
	} else {
		n.views, err = reconcile(ctx, n.Store, cfg.Project, plans, viewOptions{
			rebuildChanged: cfg.Rebuild, reset: setOf(cfg.ResetViews), archive: cfg.Archive != nil,
		}, cfg.Logger)
	}
	cancel()
	if err != nil {
		return nil, err
	}
	// Each view's rows at the generation the catalog gives them.
	plans = n.views.plans
	n.Plans = plans

	var cache *rowcache.Cache
	if cfg.Role != RoleIngest && cfg.RowCacheBytes >= 0 {
		opts := rowcache.Options{MaxBytes: cfg.RowCacheBytes}
		if online.Type == definition.Redis {
			// Other processes write the store: bound the age of what is served.
			opts.MaxAge = online.MaxStaleness
			if opts.MaxAge == 0 {
				opts.MaxAge = DefaultMaxStaleness
			}
		}
		cache = rowcache.New(opts)
	}
	if cfg.Role != RoleServe {
		if cache != nil {
			// Writing behind, only rows the cache holds are encoded at a
			// commit: the others are read from the write path when asked.
			cfg.Ingest.Changed = cache.ChangedHashed
			cfg.Ingest.AfterWrite = func(batch []store.KV, err error) {
				for _, kv := range batch {
					if err == nil {
						cache.Update(kv.Key, kv.Value)
					} else {
						cache.Delete(kv.Key)
					}
				}
			}
		}
		if cfg.Archive != nil {
			if n.Journal, err = openJournal(cfg); err != nil {
				return nil, err
			}
			cleanups = append(cleanups, func() {
				ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
				defer cancel()
				n.Journal.Close(ctx)
			})
			cfg.Ingest.Archive = n.Journal
		}
		if n.Writer, err = ingest.New(cfg.Project, plans, n.Store, cfg.Ingest); err != nil {
			return nil, err
		}
		cleanups = append(cleanups, func() { n.Writer.Close() })
		// T0 of the rebuilds: from now on the live path folds every
		// event into the rebuilt views' fresh rows.
		n.rebuilds = newRebuilds(n, n.views.rebuild, n.Writer.Now())
		if err := n.startSources(cfg); err != nil {
			return nil, err
		}
		cleanups = append(cleanups, n.stopStreams)
	}
	if cfg.Role != RoleIngest {
		// Rows as the write path committed them: with the embedded store,
		// rows written behind are in the write path's memory, not yet in the
		// store.
		var rows query.RowSource = n.Store
		if n.Writer != nil {
			rows = n.Writer
		}
		if cache != nil {
			rows = rowcache.ReadThrough{Cache: cache, Load: reads.wrap(rows.Get)}
		}
		if cfg.Tracing != nil {
			if rt, ok := rows.(rowcache.ReadThrough); ok {
				rows = tracing.CachedRows(cfg.Tracing, rt)
			} else {
				rows = tracing.StoreRows(cfg.Tracing, rows)
			}
		}
		now := cfg.Now
		if n.Writer != nil {
			now = n.Writer.Now
		}
		// The raw-rows read takes the same rows' bytes where they are,
		// with nothing on top: the store, or the write path's rows not
		// yet written back.
		var raw query.RowSource = n.Store
		if n.Writer != nil {
			raw = n.Writer
		}
		if cfg.Tracing != nil {
			raw = tracing.StoreRows(cfg.Tracing, raw)
		}
		n.Engine, err = query.New(query.Config{Project: cfg.Project, Plans: plans, Rows: rows, RawRows: raw, Now: now,
			ObserveRead: serviceReads(n.Registry, cfg.Project)})
		if err != nil {
			return nil, err
		}
		// Views being rebuilt are unavailable from the first read on.
		n.rebuilds.markUnavailable(n.Engine)
		n.markWaiting()
		if !cfg.AdmissionOff {
			if n.Admission, err = admission.New(admissionConfig(cfg)); err != nil {
				return nil, err
			}
		}
	}
	n.Registry.MustRegister(&collector{n: n, cache: cache})
	n.Server, err = serve.New(serve.Config{Project: cfg.Project, Engine: n.Engine, Writer: n.Writer, Logger: cfg.Logger, Registry: n.Registry, Tracing: cfg.Tracing,
		Archive: cfg.Archive, Plans: plans, FlushArchive: n.flushArchive, Broken: n.broken,
		Rebuilds: n.rebuilds.list,
		Stats: func() map[string]any {
			out := map[string]any{"role": cfg.Role, "online_store": online.Type}
			if n.Admission != nil {
				out["admission"] = n.Admission.Stats()
			}
			if cache != nil {
				out["row_cache"] = cache.Stats()
			}
			if len(n.sources) > 0 {
				ss := make([]stream.Stats, len(n.sources))
				for i, a := range n.sources {
					ss[i] = a.Stats()
				}
				out["sources"] = ss
			}
			return out
		}})
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (is another kiln running? pick another --addr)", cfg.Addr, err)
	}
	cleanups = append(cleanups, func() { ln.Close() })
	n.Addr = ln.Addr().String()
	gm := metrics.NewGRPC(n.Registry)
	if n.Engine != nil && (cfg.GRPCAddr != "" || cfg.AdminAddr != "") {
		n.grpcAPI = grpcapi.New(n.Engine, grpcapi.Options{Logger: cfg.Logger, Tracing: cfg.Tracing})
	}
	if cfg.GRPCAddr != "" && n.Engine != nil {
		gln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w (pick another --grpc-addr)", cfg.GRPCAddr, err)
		}
		n.GRPCAddr = gln.Addr().String()
		// Interceptors run in the order given: every call is counted; a
		// call without a token of its method's scope is refused before it
		// waits for a read's slot.
		opts := append(gm.ServerOptions(), n.grpcAPI.ServerOptions()...)
		if cfg.TLS != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
		}
		if cfg.Tokens != nil {
			opts = append(opts, grpcapi.RequireTokens(cfg.Tokens)...)
		}
		if n.Admission != nil {
			opts = append(opts, admission.GRPCServerOptions(n.Admission, kilnv1.FeatureService_GetFeatures_FullMethodName)...)
		}
		n.grpc = grpc.NewServer(opts...)
		n.grpcAPI.Register(n.grpc)
		gm.Init(n.grpc)
		n.grpcCh = make(chan error, 1)
		go func() { n.grpcCh <- n.grpc.Serve(gln) }()
	}
	if cfg.AdminAddr != "" {
		if n.admin, err = n.startAdmin(cfg, gm); err != nil {
			if n.grpc != nil {
				n.grpc.Stop()
				<-n.grpcCh
			}
			return nil, err
		}
		n.AdminAddr = n.admin.addr()
	}
	var handler http.Handler = n.Server
	if n.Admission != nil {
		// A read refused on arrival costs nothing more than its headers.
		handler = admission.HTTPHandler(n.Admission, handler, serve.IsRead, serve.MaxFeaturesBytes)
	}
	if cfg.Tokens != nil {
		// Outermost: a request without a token of its route's scope is
		// refused before it waits for a read's slot.
		handler = serve.RequireTokens(handler, cfg.Tokens)
	}
	t := cfg.HTTPTimeouts
	n.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: orDefault(t.ReadHeader, DefaultReadHeaderTimeout),
		ReadTimeout:       orDefault(t.Read, DefaultReadTimeout),
		WriteTimeout:      orDefault(t.Write, DefaultWriteTimeout),
		IdleTimeout:       orDefault(t.Idle, DefaultIdleTimeout),
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	n.serveCh = make(chan error, 1)
	if cfg.TLS != nil {
		n.http.TLSConfig = cfg.TLS
		go func() { n.serveCh <- n.http.ServeTLS(ln, "", "") }()
	} else {
		go func() { n.serveCh <- n.http.Serve(ln) }()
	}
	n.rebuilds.start()
	n.watchCatalog()
	cfg.Logger.Info("kiln serving", "version", build.Version, "revision", build.Revision, "go", build.GoVersion,
		"role", cfg.Role, "addr", n.Addr, "grpc", n.GRPCAddr, "admin", n.AdminAddr,
		"project", cfg.Project.Name, "online_store", online.Type, "tls", cfg.TLS != nil, "tokens", cfg.Tokens != nil)
	return n, nil
}

// openStore opens the online store the project names.
func openStore(cfg Config) (store.Store, error) {
	online := cfg.Project.OnlineStore
	if online.Type == definition.Redis {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tlsConfig, err := online.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("online_store tls: %w", err)
		}
		opts := redis.Options{Addrs: online.Addrs, Timeout: online.Timeout, Logger: cfg.Logger,
			Username: online.Username, Password: online.Password.Reveal(), TLS: tlsConfig}
		if online.Durability == definition.DurabilityReplicated {
			opts.Replicas, opts.ReplicationTimeout = online.Replicas, online.ReplicationTimeout
		}
		return redis.Open(ctx, opts)
	}
	return pebble.Open(cfg.DataDir, pebble.Options{CacheBytes: cfg.CacheBytes, Logger: cfg.Logger})
}

// startSources starts a consumer per streaming source of the project.
func (n *Node) startSources(cfg Config) error {
	dec := eventjson.NewDecoder(cfg.Project)
	fail := func(err error) error {
		for _, d := range n.deadLetters {
			d.Close()
		}
		n.deadLetters, n.sources = nil, nil
		return err
	}
	type runner interface{ Run(context.Context) error }
	var runners []runner
	for _, src := range cfg.Project.Sources {
		st := src.Stream
		if st == nil {
			continue
		}
		var dead stream.DeadLetters
		var err error
		switch {
		case st.DeadLetter.Topic != "":
			dead, err = kafka.OpenDeadLetters(st, cfg.Logger.With("source", src.Name))
		case st.DeadLetter.Subject != "":
			dead, err = nats.OpenDeadLetters(st, cfg.Logger.With("source", src.Name))
		default:
			path := st.DeadLetter.File
			if path == "" {
				if cfg.DataDir == "" {
					err = fmt.Errorf("source %s: say where its dead letters go: dead_letter: {topic: ...}, {subject: ...} or {file: ...} (without --data there is no default file)", src.Name)
					break
				}
				path = filepath.Join(cfg.DataDir, "dead-letter", src.Name+".jsonl")
			}
			dead, err = stream.OpenFile(path)
		}
		if err != nil {
			return fail(fmt.Errorf("source %s: dead letters: %w", src.Name, err))
		}
		n.deadLetters = append(n.deadLetters, dead)
		format, ok := stream.Formats[st.Format]
		if !ok {
			return fail(fmt.Errorf("source %s: unknown format %q", src.Name, st.Format))
		}
		a := stream.NewApplier(src, format(dec), n.Writer, dead, nil)
		n.sources = append(n.sources, a)
		log := cfg.Logger.With("source", src.Name)
		var r runner
		switch src.Type {
		case definition.Kafka:
			r, err = kafka.New(kafka.Options{Source: src, Applier: a, Logger: log, SessionTimeout: st.SessionTimeout})
		case definition.NATS:
			r, err = nats.New(nats.Options{Source: src, Applier: a, Logger: log, PinnedTTL: st.SessionTimeout})
		default:
			err = fmt.Errorf("unknown source type %q", src.Type)
		}
		if err != nil {
			return fail(fmt.Errorf("source %s: %w", src.Name, err))
		}
		runners = append(runners, r)
	}
	if len(runners) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stopSources = cancel
	n.sourcesDone = make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Run(ctx)
		}()
	}
	go func() { wg.Wait(); close(n.sourcesDone) }()
	return nil
}

// stopStreams stops the streaming sources: each finishes (or abandons) the
// batch it is applying; what is not committed is read again on restart.
func (n *Node) stopStreams() {
	if n.stopSources == nil {
		return
	}
	n.stopSources()
	<-n.sourcesDone
	for _, d := range n.deadLetters {
		d.Close()
	}
	n.stopSources, n.deadLetters = nil, nil
}

// broken reports the archive journal's failure, after which no push can
// be acknowledged until a restart recovers the journal.
func (n *Node) broken() error {
	if n.Journal == nil {
		return nil
	}
	return n.Journal.Err()
}

// flushArchive writes the journal to the archive (nothing without a
// journal: a serve-only process reads what ingest processes archived).
func (n *Node) flushArchive(ctx context.Context) error {
	if n.Journal == nil {
		return nil
	}
	return n.Journal.Flush(ctx)
}

// URL is the base URL of the HTTP API: https:// with TLS.
func (n *Node) URL() string {
	if n.cfg.TLS != nil {
		return "https://" + n.Addr
	}
	return "http://" + n.Addr
}

// AdminURL is the base URL of the admin listener, "" without one.
func (n *Node) AdminURL() string {
	if n.AdminAddr == "" {
		return ""
	}
	return "http://" + n.AdminAddr
}

// Close stops the node: /readyz and gRPC health turn unready, requests in
// flight finish (up to the shutdown timeout), the streaming sources stop,
// the ingest writer writes what it holds, and the store closes. Every step runs
// whatever the earlier ones met, and the error joins all their errors
// (errors.Join): a last write that failed is not hidden behind a shutdown
// that timed out.
//
// Close may be called more than once; later calls return the first's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
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
	if n.admin != nil {
		errs = append(errs, n.admin.close(ctx))
	}
	if n.stopWatch != nil {
		n.stopWatch()
	}
	n.rebuilds.stop()
	n.stopStreams()
	if n.Writer != nil {
		errs = append(errs, n.Writer.Close())
	}
	if n.Journal != nil {
		// What the journal holds reaches the archive now, or at the next
		// start: either way nothing is lost, so a journal left to archive
		// is worth a warning, not a failed shutdown.
		jctx, jcancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		if err := n.Journal.Close(jctx); err != nil {
			n.cfg.Logger.Warn("the archive's journal was not all archived before the shutdown timeout; the next start archives the rest", "err", err)
		}
		jcancel()
	}
	errs = append(errs, n.Store.Close())
	return errors.Join(errs...)
}

// RedisReadsPerCPU is the default of admitted reads per CPU over Redis. A
// read of the embedded store uses its CPU from start to end, and one per
// CPU keeps the CPUs busy; a read over Redis waits on the network for most
// of its time, and takes more in flight to keep them busy.
const RedisReadsPerCPU = 4

// admissionConfig is cfg.Admission with the store's default of reads
// running at once per CPU.
func admissionConfig(cfg Config) admission.Config {
	ac := cfg.Admission
	if ac.PerCPU == 0 && cfg.Project.OnlineStore.Type == definition.Redis {
		ac.PerCPU = RedisReadsPerCPU
	}
	return ac
}
