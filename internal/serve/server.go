// Package serve owns Kiln's HTTP API: POST /v1/push hands events to the
// write path, POST /v1/features reads rows (one multi-get per request) and
// evaluates their windows at the server's clock, POST /v1/training-set
// computes point-in-time values for a spine from the event archive
// (package training), and /healthz and /readyz
// answer probes. Every request is validated whole before anything is
// applied; bad input gets a 4xx naming what was wrong, never a panic.
//
// The server owns neither the store nor the ingest writer: the caller opens
// them, passes them in Config, and closes them after the HTTP server stops.
package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/tracing"
	"github.com/kiln-dev/kiln/internal/training"
	"github.com/kiln-dev/kiln/internal/ui"
)

// Limits of the HTTP API.
const (
	// MaxPushBytes is the largest push body accepted.
	MaxPushBytes = 16 << 20
	// MaxFeaturesBytes is the largest features-request body accepted.
	MaxFeaturesBytes = 4 << 20
	// MaxEntities is the most entities one features request may name.
	MaxEntities = query.MaxEntities
	// maxBodyPrealloc is the most memory reserved for a body before it
	// arrives, whatever its Content-Length says.
	maxBodyPrealloc = 64 << 10
)

// Config is what a Server needs: a Project, and an Engine, a Writer or
// both.
type Config struct {
	Project *definition.Project
	// Engine answers feature reads; nil refuses them (an ingest-only
	// process).
	Engine *query.Engine
	// Writer takes pushed events; nil refuses pushes (a read-only server).
	Writer *ingest.Writer
	// Registry, if set, is where the server's request metrics go and what
	// the admin listener's GET /metrics serves; without it, a registry of
	// the server's own.
	Registry *prometheus.Registry
	// Stats, if set, adds its fields to GET /debug/stats.
	Stats func() map[string]any
	// Rebuilds, if set, lists the views being rebuilt, which /readyz
	// names (their features answer 503 meanwhile; the others are served).
	Rebuilds func() []Rebuild
	// Archive, if set, is the event archive POST /v1/training-set reads,
	// with Plans, the views' compiled plans; without it the endpoint is
	// refused.
	Archive *archive.Archive
	Plans   map[*definition.View]*tile.Plan
	// Broken, if set, reports a failure that stops the process from taking
	// events until it restarts (the archive's journal could not be
	// written): /readyz then answers 503 with it.
	Broken func() error
	// FlushArchive, if set, writes what this process's archive journal
	// holds to the archive; a training set calls it first, so that it
	// counts every event accepted before the request.
	FlushArchive func(ctx context.Context) error
	// Logger receives a line per request: at debug level for each answer,
	// at info for each 4xx (warn for each 5xx) with the error the client
	// got. Default: discard.
	Logger *slog.Logger
	// Tracing, if set, traces the requests (tracing.go). Default: off.
	Tracing trace.TracerProvider
}

// Server serves the HTTP API. It is safe for concurrent use.
type Server struct {
	cfg    Config
	engine *query.Engine
	// resolver resolves the feature names of training-set requests (set
	// with Config.Archive): it reads no rows.
	resolver *query.Engine
	// training is held while a training set is computed (one at a time).
	training sync.Mutex
	decoder  *eventjson.Decoder
	// tracer makes the requests' spans; nil when they are not traced.
	tracer trace.Tracer
	ready  atomic.Bool
	// public and admin are the routes of the API's listener and of the
	// admin listener.
	public, admin *router
	// metrics are the instruments of requests and the /metrics handler
	// (observe.go).
	metrics serverMetrics
	// pushes holds the memory of pushes no longer in flight (*pushBuffer):
	// a push reuses a body and decoded events instead of allocating them.
	pushes sync.Pool

	// The body of GET /v1/metadata, made on first use (metadata.go).
	metadataOnce sync.Once
	metadataBody []byte
	metadataErr  error
}

type pushBuffer struct {
	body   []byte
	events eventjson.PushBuffer
}

// New builds a server for the project.
func New(cfg Config) (*Server, error) {
	if cfg.Project == nil || (cfg.Engine == nil && cfg.Writer == nil) {
		return nil, errors.New("serve: Config needs a Project, and an Engine or a Writer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, engine: cfg.Engine, decoder: eventjson.NewDecoder(cfg.Project)}
	if cfg.Tracing != nil {
		s.tracer = cfg.Tracing.Tracer(tracing.Scope)
	}
	if cfg.Archive != nil {
		if cfg.Plans == nil {
			return nil, errors.New("serve: Config.Archive needs Config.Plans")
		}
		var err error
		if s.resolver, err = training.Resolver(cfg.Project, cfg.Plans); err != nil {
			return nil, err
		}
	}
	s.metrics = newServerMetrics(cfg)
	s.public = s.newRouter(s.publicRoutes(), false)
	s.admin = s.newRouter(s.adminRoutes(), true)
	s.ready.Store(true)
	return s, nil
}

// route is one path and method of a listener and its handler.
type route struct {
	method, path string
	handle       http.HandlerFunc
}

// publicRoutes are the API's routes: what clients call.
func (s *Server) publicRoutes() []route {
	return []route{
		{http.MethodPost, "/v1/push", s.handlePush},
		{http.MethodPost, "/v1/features", s.handleFeatures},
		{http.MethodPost, "/v1/training-set", s.handleTrainingSet},
		{http.MethodGet, "/v1/metadata", s.handleMetadata},
		{http.MethodPost, "/get-online-features", s.handleFeastOnline},
		{http.MethodPost, "/push", s.handleFeastPush},
		{http.MethodGet, "/healthz", s.handleHealth},
		{http.MethodGet, "/readyz", s.handleReady},
	}
}

// adminRoutes are the admin listener's routes: what operators and their
// tools read (admin.go), beside the profiler, and the dashboard (package
// ui).
func (s *Server) adminRoutes() []route {
	return []route{
		{http.MethodGet, "/metrics", s.handleMetrics},
		{http.MethodPost, "/debug/rows", s.handleRows},
		{http.MethodGet, "/debug/stats", s.handleStats},
		{http.MethodGet, "/healthz", s.handleHealth},
		{http.MethodGet, "/readyz", s.handleReady},
		// The dashboard and the read-only routes it calls besides
		// /metrics, so that the page needs no other origin.
		{http.MethodGet, "/ui", ui.Page},
		{http.MethodGet, "/ui/{file}", s.handleUIAsset},
		{http.MethodGet, "/v1/metadata", s.handleMetadata},
		{http.MethodPost, "/v1/features", s.handleFeatures},
	}
}

// handleUIAsset serves the dashboard's script and style sheet.
func (s *Server) handleUIAsset(w http.ResponseWriter, r *http.Request) {
	if !ui.Asset(w, r, r.PathValue("file")) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no file %s: the dashboard is at /ui", r.URL.Path), nil)
	}
}

// router is one listener's routes behind the request middleware
// (observe.go).
type router struct {
	s   *Server
	mux *http.ServeMux
	// notFound answers a path with no route.
	notFound http.HandlerFunc
}

// newRouter builds the mux of a listener. Every path answers a method it
// does not take with 405, an Allow header and a JSON error, HEAD included
// (a GET pattern would take HEAD too); every other path with a 404 listing
// the routes. With pprof, /debug/pprof/ serves the profiler, any method.
func (s *Server) newRouter(api []route, pprof bool) *router {
	rt := &router{s: s, mux: http.NewServeMux()}
	mux := rt.mux
	var names []string
	methods := map[string][]string{} // by path
	for _, a := range api {
		mux.HandleFunc(a.method+" "+a.path, s.observed(a.path, s.traced(a.method, a.path, a.handle)))
		names = append(names, a.method+" "+a.path)
		methods[a.path] = append(methods[a.path], a.method)
	}
	for p, ms := range methods {
		slices.Sort(ms)
		allowed := strings.Join(ms, ", ")
		refuse := s.observed(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, allowed, r.Method), nil)
		})
		mux.HandleFunc(p, refuse)
		if slices.Contains(ms, http.MethodGet) && !slices.Contains(ms, http.MethodHead) {
			mux.HandleFunc(http.MethodHead+" "+p, refuse)
		}
	}
	if pprof {
		names = append(names, "* /debug/pprof/")
	}
	slices.Sort(names)
	list := strings.Join(names, ", ")
	rt.notFound = s.observed(unmatchedRoute, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s; routes are: %s", r.URL.Path, list), nil)
	})
	mux.HandleFunc("/", rt.notFound)
	if pprof {
		mux.HandleFunc("/debug/pprof/", s.observed("/debug/pprof/", servePprof))
		// Without a route of its own, the mux would redirect /debug/pprof to
		// /debug/pprof/.
		mux.HandleFunc("/debug/pprof", rt.notFound)
	}
	return rt
}

// IsRead reports whether r is a feature read, which admission control
// (package admission) admits, queues or refuses before its body is read:
// POST /v1/features and Feast's POST /get-online-features.
func IsRead(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/v1/features" || r.URL.Path == "/get-online-features")
}

// SetReady sets what /readyz answers: set it false before draining.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// ServeHTTP serves the public API: it routes a request, answering unknown
// paths and methods with a JSON error, and turns a panic into a 500 rather
// than a dropped connection.
//
// A path is routed as it is, once unescaped: one the mux would redirect to
// its clean form (/v1//push, /./healthz) is not found, and one with escaped
// slashes (/v1%2Fpush) is the path they spell.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.public.ServeHTTP(w, r) }

// Admin is the handler of the admin listener: /metrics, the profiler,
// /debug/rows, /debug/stats, /healthz and /readyz, and the dashboard (/ui)
// with the two reads it makes (GET /v1/metadata, POST /v1/features),
// routed as ServeHTTP routes the API. It answers anyone who reaches it:
// listen on loopback or a network only operators reach.
func (s *Server) Admin() http.Handler { return s.admin }

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := rt.s.startRequest(w)
	defer rt.s.endRequest(rec, r)
	defer func() {
		if p := recover(); p != nil {
			rt.s.cfg.Logger.Error("panic serving request", "path", r.URL.Path, "panic", p)
			writeError(rec, http.StatusInternalServerError, "internal error; the server log has the details", nil)
		}
	}()
	if !isClean(r.URL.Path) {
		rt.notFound(rec, r)
		return
	}
	if r.URL.RawPath != "" {
		u := *r.URL
		u.RawPath = ""
		r = r.WithContext(r.Context())
		r.URL = &u
	}
	rt.mux.ServeHTTP(rec, r)
}

// isClean reports whether p is a path that http.ServeMux routes without
// redirecting: rooted, and the same cleaned (but for a trailing slash).
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return true // no empty, "." or ".." element
	}
	c := path.Clean(p)
	return c == p || c != "/" && len(p) == len(c)+1 && p[len(c)] == '/' && strings.HasPrefix(p, c)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok"}`+"\n")
}

// Rebuild is a view being rebuilt, as /readyz lists it.
type Rebuild struct {
	View           string `json:"view"`
	DatesDone      int    `json:"dates_done"`
	DatesTotal     int    `json:"dates_total"`
	EventsReplayed int64  `json:"events_replayed"`
	// Error says why the rebuild failed; empty while it runs.
	Error string `json:"error,omitempty"`
}

// handleReady answers 200 while the server takes requests, listing the
// views being rebuilt if any (the process is ready: it serves every other
// view), and 503 once it is draining.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "not ready", nil)
		return
	}
	if s.cfg.Broken != nil {
		if err := s.cfg.Broken(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error(), nil)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	var rebuilding []Rebuild
	if s.cfg.Rebuilds != nil {
		rebuilding = s.cfg.Rebuilds()
	}
	if len(rebuilding) == 0 {
		io.WriteString(w, `{"status":"ready"}`+"\n")
		return
	}
	b, _ := json.Marshal(struct {
		Status     string    `json:"status"`
		Rebuilding []Rebuild `json:"rebuilding"`
	}{"ready", rebuilding})
	w.Write(append(b, '\n'))
}

// readBody reads a request body up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return readBodyInto(w, r, limit, nil)
}

// readBodyInto is readBody into dst's memory.
func readBodyInto(w http.ResponseWriter, r *http.Request, limit int64, dst []byte) ([]byte, bool) {
	buf := bytes.NewBuffer(dst[:0])
	if n := r.ContentLength; n > 0 && n <= limit {
		// The last read, which finds the end, needs room too. Beyond
		// maxBodyPrealloc the buffer grows as the body arrives, so that
		// a client announcing a large body and sending it slowly holds
		// only what it sent.
		buf.Grow(int(min(n, maxBodyPrealloc)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the %d-byte limit: send smaller batches", limit), nil)
		case errors.Is(err, os.ErrDeadlineExceeded):
			writeError(w, http.StatusRequestTimeout, "the request body did not arrive within the server's read timeout (kiln serve --http-read-timeout): send it faster, or in smaller batches", nil)
		default:
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error(), nil)
		}
		return nil, false
	}
	return body, true
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Writer == nil {
		writeError(w, http.StatusForbidden, "this process only serves (--role=serve): push events to the ingest process", nil)
		return
	}
	pb, _ := s.pushes.Get().(*pushBuffer)
	if pb == nil {
		pb = new(pushBuffer)
	}
	// The events are done with once Push returns, and the body once they
	// are decoded.
	defer s.pushes.Put(pb)
	body, ok := readBodyInto(w, r, MaxPushBytes, pb.body)
	if !ok {
		return
	}
	pb.body = body
	var origin importOrigin
	if r.URL.RawQuery != "" {
		var msg string
		if origin, msg = parseImportOrigin(r); msg != "" {
			writeError(w, http.StatusBadRequest, msg, nil)
			return
		}
	}
	src, events, err := s.decoder.DecodePushInto(body, s.cfg.Writer.Now(), &pb.events)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if origin.name != "" {
		id := stream.StreamID(origin.name)
		s.cfg.Writer.NameStream(id, origin.name)
		for i := range events {
			events[i].Origin = event.Origin{Stream: id, Offset: origin.first + uint64(i)}
		}
	}
	res, err := s.push(r.Context(), src, events)
	if err != nil {
		s.storeError(w, "push", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(appendPushAnswer(nil, res))
}

// appendPushAnswer appends the JSON answer to a push to b:
// {"accepted":N,"dropped_late":N,"late_by_view":{"view":N,...}}, the views
// in name order.
func appendPushAnswer(b []byte, res ingest.Result) []byte {
	b = fmt.Appendf(b, `{"accepted":%d,"dropped_late":%d,"late_by_view":{`, res.Accepted, res.DroppedLate)
	for i, name := range slices.Sorted(maps.Keys(res.LateByView)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, name) // view names are plain ASCII
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(res.LateByView[name]), 10)
	}
	return append(b, "}}\n"...)
}

// importOrigin is where the events of a push were read, for imports
// (package importer): events[i] is at offset first+i of the stream name.
type importOrigin struct {
	name  string
	first uint64
}

// parseImportOrigin reads ?origin=import/<id>&offset=N, or explains what is
// wrong with the query.
func parseImportOrigin(r *http.Request) (importOrigin, string) {
	q := r.URL.Query()
	for k := range q {
		if k != "origin" && k != "offset" {
			return importOrigin{}, fmt.Sprintf("unknown query parameter %q: /v1/push takes origin and offset (for imports) or nothing", k)
		}
	}
	name, off := q.Get("origin"), q.Get("offset")
	if name == "" || off == "" {
		return importOrigin{}, "origin and offset go together: origin=import/<id> names the file the events were read from, offset=N the position of the first"
	}
	id, ok := strings.CutPrefix(name, "import/")
	if !ok || id == "" || len(id) > 100 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return importOrigin{}, fmt.Sprintf("origin %q: write import/<id>, the id of up to 100 letters, digits, '.', '_' or '-'", name)
	}
	first, err := strconv.ParseUint(off, 10, 64)
	if err != nil || first == 0 {
		return importOrigin{}, fmt.Sprintf("offset %q: write the position of the first event, a whole number from 1", off)
	}
	return importOrigin{name: name, first: first}, ""
}

// storeError answers a failure of the store or the write path: retryable.
func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, admission.ErrOverloaded):
		admission.WriteRefusal(w)
	case errors.Is(err, query.ErrViewUnavailable):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, what+" did not finish before the request ended: "+err.Error(), nil)
	case errors.Is(err, ingest.ErrClosed), errors.Is(err, store.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down; retry on another replica or after restart", nil)
	default:
		// The request's log line (observe.go) carries the error.
		writeError(w, http.StatusServiceUnavailable, what+" failed: "+err.Error()+"; retry", nil)
	}
}

func writeRequestError(w http.ResponseWriter, err error) {
	var re *eventjson.RequestError
	if errors.As(err, &re) {
		writeError(w, http.StatusBadRequest, re.Message, re.Details)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), nil)
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error   string              `json:"error"`
	Details []eventjson.Problem `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string, details []eventjson.Problem) {
	// The message goes to the request's span (tracedWriter) and its log
	// line (recorder), whichever of them w is or wraps.
	inner := w
	if tw, ok := inner.(*tracedWriter); ok {
		traceError(tw, msg)
		inner = tw.ResponseWriter
	}
	if rec, ok := inner.(*recorder); ok {
		rec.err = msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Messages quote JSON and placeholders like "<name>": they go as
	// written, not HTML-escaped (\u003c), which JSON does not need.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(errorBody{Error: msg, Details: details}) // ends with '\n'
	w.Write(b.Bytes())
}
