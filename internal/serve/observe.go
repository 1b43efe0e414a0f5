package serve

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-dev/kiln/internal/metrics"
)

// The request middleware: every request of both listeners passes through
// router.ServeHTTP, which hands the routes a recorder instead of the
// connection's ResponseWriter, and, once the route has answered, counts the
// answer in kiln_http_requests_total{route,code}, observes its latency in
// kiln_http_request_duration_seconds{route} and logs it.
//
// The log line of a request names its method, route, status, duration,
// bytes written and remote address (and, for an error, the message the
// client got): never a header, a query string or a body, so that nothing
// secret a client sends (an Authorization header, a token in a query) is
// ever logged. Answers below 400 are logged at debug level, 4xx at info,
// 5xx at warn: each request once.

// unmatchedRoute is the route label of requests no route took.
const unmatchedRoute = "unmatched"

// serverMetrics are a server's request instruments, one Route per path,
// made when the routes are.
type serverMetrics struct {
	registry *prometheus.Registry
	requests *metrics.Requests
	// handler serves GET /metrics.
	handler http.Handler
	mu      sync.Mutex // guards routes, written only while routes are built
	routes  map[string]*metrics.Route
}

func newServerMetrics(cfg Config) serverMetrics {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return serverMetrics{
		registry: reg,
		requests: metrics.NewRequests(reg, "http", "HTTP", []string{"route"}, metrics.HTTPCode),
		handler:  metrics.Handler(reg, cfg.Logger),
		routes:   map[string]*metrics.Route{},
	}
}

// observed wraps the handler of a route: it tells the recorder which route
// answered. The route's instruments are looked up here, once.
func (s *Server) observed(route string, h http.HandlerFunc) http.HandlerFunc {
	s.metrics.mu.Lock()
	rt := s.metrics.routes[route]
	if rt == nil {
		rt = s.metrics.requests.Route(route)
		s.metrics.routes[route] = rt
	}
	s.metrics.mu.Unlock()
	return func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route, rec.routeName = rt, route
		}
		h(w, r)
	}
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// recorder is the ResponseWriter a route writes to: it keeps what the log
// line and the metrics need. Recorders are pooled: a request allocates
// none.
type recorder struct {
	http.ResponseWriter
	start     time.Time
	status    int
	bytes     int64
	route     *metrics.Route
	routeName string
	// err is the error message the client got (writeError).
	err string
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered (the profiler streams).
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the connection's ResponseWriter.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// startRequest starts timing a request.
func (s *Server) startRequest(w http.ResponseWriter) *recorder {
	rec := recorders.Get().(*recorder)
	*rec = recorder{ResponseWriter: w, start: time.Now()}
	return rec
}

// endRequest counts, times and logs the answer of a request.
func (s *Server) endRequest(rec *recorder, r *http.Request) {
	d := time.Since(rec.start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing: net/http answers 200
	}
	if rec.route != nil {
		rec.route.Observe(status, d.Seconds())
	}
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400:
		level = slog.LevelInfo
	}
	if log := s.cfg.Logger; log.Enabled(context.Background(), level) {
		route := rec.routeName
		if route == "" {
			route = unmatchedRoute
		}
		attrs := [...]slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Duration("duration", d), slog.Int64("bytes", rec.bytes),
			slog.String("remote", r.RemoteAddr), slog.String("error", rec.err),
		}
		n := len(attrs)
		if rec.err == "" {
			n--
		}
		log.LogAttrs(context.Background(), level, "request", attrs[:n]...)
	}
	*rec = recorder{}
	recorders.Put(rec)
}
