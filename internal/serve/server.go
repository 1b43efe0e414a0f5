// Package serve owns Kiln's HTTP API: POST /v1/push hands events to the
// write path, POST /v1/features reads rows (one multi-get per request) and
// evaluates their windows at the server's clock, and /healthz and /readyz
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
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
)

// Limits of the HTTP API.
const (
	// MaxPushBytes is the largest push body accepted.
	MaxPushBytes = 16 << 20
	// MaxFeaturesBytes is the largest features-request body accepted.
	MaxFeaturesBytes = 4 << 20
	// MaxEntities is the most entities one features request may name.
	MaxEntities = query.MaxEntities
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
	// Stats, if set, adds its fields to GET /debug/stats.
	Stats func() map[string]any
	// Logger receives request errors. Default: discard.
	Logger *slog.Logger
}

// Server serves the HTTP API. It is safe for concurrent use.
type Server struct {
	cfg     Config
	engine  *query.Engine
	decoder *ingest.Decoder
	ready   atomic.Bool
	routes  map[string]map[string]http.HandlerFunc
	// pushes holds the memory of pushes no longer in flight (*pushBuffer):
	// a push reuses a body and decoded events instead of allocating them.
	pushes sync.Pool
}

type pushBuffer struct {
	body   []byte
	events ingest.PushBuffer
}

// New builds a server for the project.
func New(cfg Config) (*Server, error) {
	if cfg.Project == nil || (cfg.Engine == nil && cfg.Writer == nil) {
		return nil, errors.New("serve: Config needs a Project, and an Engine or a Pipeline")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, engine: cfg.Engine, decoder: ingest.NewDecoder(cfg.Project)}
	s.routes = map[string]map[string]http.HandlerFunc{
		"/v1/push":     {http.MethodPost: s.handlePush},
		"/v1/features": {http.MethodPost: s.handleFeatures},
		"/healthz":     {http.MethodGet: s.handleHealth},
		"/readyz":      {http.MethodGet: s.handleReady},
		"/debug/floor": {http.MethodPost: s.handleFloor},
		"/debug/stats": {http.MethodGet: s.handleStats},
	}
	s.ready.Store(true)
	return s, nil
}

// SetReady sets what /readyz answers: set it false before draining.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// ServeHTTP routes a request, answering unknown paths and methods with a
// JSON error, and turns a panic into a 500 rather than a dropped connection.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("panic serving request", "path", r.URL.Path, "panic", p)
			writeError(w, http.StatusInternalServerError, "internal error; the server log has the details", nil)
		}
	}()
	if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
		servePprof(w, r)
		return
	}
	methods, ok := s.routes[r.URL.Path]
	if !ok {
		paths := make([]string, 0, len(s.routes))
		for p, ms := range s.routes {
			for m := range ms {
				paths = append(paths, m+" "+p)
			}
		}
		sort.Strings(paths)
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s; routes are: %s", r.URL.Path, strings.Join(paths, ", ")), nil)
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allowed := make([]string, 0, len(methods))
		for m := range methods {
			allowed = append(allowed, m)
		}
		sort.Strings(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, strings.Join(allowed, ", "), r.Method), nil)
		return
	}
	h(w, r)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok"}`+"\n")
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "not ready", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ready"}`+"\n")
}

// readBody reads a request body up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return readBodyInto(w, r, limit, nil)
}

// readBodyInto is readBody into dst's memory.
func readBodyInto(w http.ResponseWriter, r *http.Request, limit int64, dst []byte) ([]byte, bool) {
	buf := bytes.NewBuffer(dst[:0])
	if n := r.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead) // the last read, which finds the end, needs room too
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the %d-byte limit: send smaller batches", limit), nil)
		} else {
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
	src, events, err := s.decoder.DecodePushInto(body, s.cfg.Writer.Now(), &pb.events)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	res, err := s.cfg.Writer.Push(r.Context(), src, events)
	if err != nil {
		s.storeError(w, "push", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b := fmt.Appendf(nil, `{"accepted":%d,"dropped_late":%d}`+"\n", res.Accepted, res.DroppedLate)
	w.Write(b)
}

// storeError answers a failure of the store or the write path: retryable.
func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, query.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, err.Error(), nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, what+" did not finish before the request ended: "+err.Error(), nil)
	case errors.Is(err, ingest.ErrClosed), errors.Is(err, store.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down; retry on another replica or after restart", nil)
	default:
		s.cfg.Logger.Error(what+" failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, what+" failed: "+err.Error()+"; retry", nil)
	}
}

func writeRequestError(w http.ResponseWriter, err error) {
	var re *ingest.RequestError
	if errors.As(err, &re) {
		writeError(w, http.StatusBadRequest, re.Message, re.Details)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), nil)
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error   string           `json:"error"`
	Details []ingest.Problem `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string, details []ingest.Problem) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(errorBody{Error: msg, Details: details})
	w.Write(append(b, '\n'))
}
