// Package grpcapi owns Kiln's gRPC API: the kiln.v1.FeatureService of
// proto/kiln/v1 (GetFeatures and Prepare), the standard health service and
// server reflection on the public port, and the kiln.v1.Diagnostics service
// (GetRows: the store's raw read of a request's rows) for the admin
// listener. Its semantics are those of the HTTP API's
// POST /v1/features (package serve): both call query.Engine.Read, so they
// serve identical values; only the shape differs — names once per column,
// typed columns with one element per key.
//
// The caller owns the grpc.Servers and the listeners: build a Server with
// New, call Register on the public grpc.Server and RegisterDiagnostics on
// the admin one before Serve, and during shutdown call
// SetServing(false) before GracefulStop so that health checks turn away new
// traffic first. The engine is not owned either: close the store after the
// gRPC server has stopped.
//
// Cost per GetFeatures call: the query.Request and query.Result come from a
// sync.Pool, so parsing keys and reading allocate nothing per key or value
// once warm. Building the answer allocates a fixed number of slices per
// entity type of the request (statuses, event times, the column structs, one
// backing array per value type shared by all columns of that type, and one
// for the valid flags), whatever the number of keys or features. Protobuf
// itself allocates the message on the wire; nothing else is per value.
package grpcapi

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/store"
	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Limits of the gRPC API.
const (
	// MaxEntities is the most keys one GetFeatures call may name, over all
	// entity types (the RW1 Q2 shape, 1 user and 500 posts, is 501).
	MaxEntities = query.MaxEntities
	// DefaultMaxPrepared is how many prepared feature lists a server keeps
	// when Options.MaxPrepared is zero; the least recently used is dropped
	// first.
	DefaultMaxPrepared = 1024
)

// Options configures a Server. The zero value is valid.
type Options struct {
	// Admit, if set, is asked before every read with the number of keys
	// the call names. It returns at once with an error to refuse the call
	// (the client gets RESOURCE_EXHAUSTED with the error's message: retry
	// later or elsewhere), or with a release func that the server calls
	// when the call's work is done. A context error from Admit (it gave up
	// waiting) becomes DEADLINE_EXCEEDED or CANCELLED. Default: admit all.
	Admit func(ctx context.Context, keys int) (release func(), err error)
	// MaxPrepared bounds the prepared feature lists kept for Prepare.
	// Default DefaultMaxPrepared.
	MaxPrepared int
	// Logger receives store failures and panics. Default: discard.
	Logger *slog.Logger
	// Tracing, if set, traces the calls (tracing.go; ServerOptions
	// installs it). Default: off.
	Tracing trace.TracerProvider
}

// Server implements kilnv1.FeatureServiceServer over a query.Engine. It is
// safe for concurrent use.
type Server struct {
	kilnv1.UnimplementedFeatureServiceServer

	engine   *query.Engine
	opts     Options
	health   *health.Server
	prepared *preparedCache

	// The answer of GetMetadata, made on first use (metadata.go).
	metadataOnce sync.Once
	metadata     *kilnv1.GetMetadataResponse
	metadataErr  error
}

// New builds a server reading through engine.
func New(engine *query.Engine, opts Options) *Server {
	if opts.MaxPrepared <= 0 {
		opts.MaxPrepared = DefaultMaxPrepared
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		engine:   engine,
		opts:     opts,
		health:   health.NewServer(),
		prepared: newPreparedCache(opts.MaxPrepared),
	}
	s.SetServing(true)
	return s
}

// Register registers FeatureService, the health service and server
// reflection on gs, the public API's server. Call it before gs.Serve.
func (s *Server) Register(gs *grpc.Server) {
	kilnv1.RegisterFeatureServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
}

// RegisterDiagnostics registers Diagnostics and server reflection on gs,
// the admin listener's server: the raw-row read is for operators and
// benchmarks, not the public port. It shares the Server's engine and
// prepared ids. Call it before gs.Serve.
func (s *Server) RegisterDiagnostics(gs *grpc.Server) {
	kilnv1.RegisterDiagnosticsServer(gs, s.Diagnostics())
	reflection.Register(gs)
}

// SetServing sets what the health service answers, for the server as a
// whole ("") and for kiln.v1.FeatureService: SERVING or NOT_SERVING. Set it
// false before draining so that load balancers stop sending calls.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(kilnv1.FeatureService_ServiceDesc.ServiceName, st)
}

// readState is the per-call memory of the read path, pooled.
type readState struct {
	req query.Request
	res query.Result
}

var readStates = sync.Pool{New: func() any { return new(readState) }}

// request checks a GetFeatures-shaped call and resolves it into st.req,
// returning the prepared features and the number of keys. Its errors are
// statuses.
func (s *Server) request(ctx context.Context, in *kilnv1.GetFeaturesRequest, st *readState) (*query.Prepared, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, contextStatus(err)
	}
	prep, err := s.selection(in)
	if err != nil {
		return nil, 0, err
	}
	keys, err := s.parseKeys(prep, in.GetEntities(), &st.req)
	if err != nil {
		return nil, 0, status.Error(codes.InvalidArgument, err.Error())
	}
	return prep, keys, nil
}

// GetFeatures serves kiln.v1.FeatureService/GetFeatures.
func (s *Server) GetFeatures(ctx context.Context, in *kilnv1.GetFeaturesRequest) (resp *kilnv1.GetFeaturesResponse, err error) {
	defer s.traceFailure(ctx, &err)
	defer s.recoverPanic("GetFeatures", &err)
	st := readStates.Get().(*readState)
	defer readStates.Put(st)
	prep, keys, err := s.request(ctx, in, st)
	if err != nil {
		return nil, err
	}
	if s.opts.Admit != nil {
		release, err := s.opts.Admit(ctx, keys)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, contextStatus(err)
			}
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		if release != nil {
			defer release()
		}
	}
	s.traceRead(ctx, &st.req)
	if err := s.engine.Read(ctx, &st.req, &st.res); err != nil {
		return nil, s.readError(err)
	}
	return buildResponse(prep, &st.res), nil
}

// Diagnostics implements kilnv1.DiagnosticsServer beside a Server: it
// shares the Server's engine and prepared ids.
type Diagnostics struct {
	kilnv1.UnimplementedDiagnosticsServer
	s *Server
}

// Diagnostics returns the server's kiln.v1.Diagnostics service.
func (s *Server) Diagnostics() *Diagnostics { return &Diagnostics{s: s} }

// GetRows serves kiln.v1.Diagnostics/GetRows: the rows of a GetFeatures
// request read from the store and nothing else.
func (d *Diagnostics) GetRows(ctx context.Context, in *kilnv1.GetFeaturesRequest) (resp *kilnv1.GetRowsResponse, err error) {
	s := d.s
	defer s.traceFailure(ctx, &err)
	defer s.recoverPanic("GetRows", &err)
	st := readStates.Get().(*readState)
	defer readStates.Put(st)
	if _, _, err := s.request(ctx, in, st); err != nil {
		return nil, err
	}
	s.traceRead(ctx, &st.req)
	found, size, err := s.engine.RawRows(ctx, &st.req, &st.res)
	if err != nil {
		return nil, s.readError(err)
	}
	return &kilnv1.GetRowsResponse{RowsFound: uint32(found), Bytes: uint64(size)}, nil
}

// Prepare serves kiln.v1.FeatureService/Prepare.
func (s *Server) Prepare(ctx context.Context, in *kilnv1.PrepareRequest) (resp *kilnv1.PrepareResponse, err error) {
	defer s.traceFailure(ctx, &err)
	defer s.recoverPanic("Prepare", &err)
	var prep *query.Prepared
	switch sel := in.GetSelection().(type) {
	case *kilnv1.PrepareRequest_Service:
		prep, err = s.engine.Service(sel.Service)
	case *kilnv1.PrepareRequest_Features:
		prep, err = s.engine.Prepare(sel.Features.GetNames())
	default:
		return nil, status.Error(codes.InvalidArgument, "no features requested: set service or features")
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, err := s.prepared.put(prep)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp = &kilnv1.PrepareResponse{PreparedId: id, Entities: make([]*kilnv1.PreparedEntity, len(prep.Entities))}
	for i, pe := range prep.Entities {
		out := &kilnv1.PreparedEntity{Entity: pe.Entity.Def.Name}
		for k, f := range pe.Entity.Def.Keys {
			out.KeyFields = append(out.KeyFields, &kilnv1.KeyField{Name: f, Type: valueType(pe.Entity.KeyTypes[k])})
		}
		for _, f := range pe.Features {
			out.Features = append(out.Features, &kilnv1.FeatureSpec{Name: f.Name, Type: valueType(f.Type)})
		}
		resp.Entities[i] = out
	}
	return resp, nil
}

// selection resolves the features a GetFeatures call asks for.
func (s *Server) selection(in *kilnv1.GetFeaturesRequest) (*query.Prepared, error) {
	var prep *query.Prepared
	var err error
	switch sel := in.GetSelection().(type) {
	case *kilnv1.GetFeaturesRequest_Service:
		prep, err = s.engine.Service(sel.Service)
	case *kilnv1.GetFeaturesRequest_Features:
		prep, err = s.engine.Prepare(sel.Features.GetNames())
	case *kilnv1.GetFeaturesRequest_PreparedId:
		prep = s.prepared.get(sel.PreparedId)
		if prep == nil {
			return nil, status.Errorf(codes.NotFound,
				"prepared_id %d is not known to this server (it restarted, or the list was evicted after %d newer ones): call Prepare again",
				sel.PreparedId, s.opts.MaxPrepared)
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "no features requested: set service, features or prepared_id")
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return prep, nil
}

// parseKeys checks the call's entity keys against the prepared features,
// as the HTTP API does: every entity the features need is given, once, and
// no other; every key field has one column of its type; all columns have
// the same length. It fills req and returns the number of keys.
func (s *Server) parseKeys(prep *query.Prepared, given []*kilnv1.EntityKeys, req *query.Request) (int, error) {
	for i, ek := range given {
		name := ek.GetEntity()
		if prep.Entity(name) == nil {
			if s.engine.Entity(name) == nil {
				return 0, fmt.Errorf("entities[%d]: entity %q is not defined (the requested features are about: %s)", i, name, entityNames(prep))
			}
			return 0, fmt.Errorf("entities[%d]: entity %q is given but none of the requested features is about it", i, name)
		}
		for _, other := range given[:i] {
			if other.GetEntity() == name {
				return 0, fmt.Errorf("entities[%d]: entity %q is given twice: give all its keys in one EntityKeys", i, name)
			}
		}
	}
	req.Prepared = prep
	if cap(req.Keys) < len(prep.Entities) {
		req.Keys = make([][]event.Value, len(prep.Entities))
	}
	req.Keys = req.Keys[:len(prep.Entities)]
	total := 0
	for i, pe := range prep.Entities {
		def := pe.Entity.Def
		var ek *kilnv1.EntityKeys
		for _, g := range given {
			if g.GetEntity() == def.Name {
				ek = g
			}
		}
		if ek == nil {
			return 0, fmt.Errorf("the requested features need entity %q: add an EntityKeys {entity: %q, keys: [{field: %q, ...}]}", def.Name, def.Name, def.Keys[0])
		}
		n, err := checkColumns(pe.Entity, ek.GetKeys())
		if err != nil {
			return 0, err
		}
		total += n
		if total > MaxEntities {
			return 0, fmt.Errorf("more than %d entities in one request: split it", MaxEntities)
		}
		k := len(def.Keys)
		vals := req.Keys[i][:0]
		if cap(vals) < n*k {
			vals = make([]event.Value, n*k)
		}
		vals = vals[:n*k]
		req.Keys[i] = vals
		for _, col := range ek.GetKeys() {
			f := slices.Index(pe.Entity.Def.Keys, col.GetField())
			switch pe.Entity.KeyTypes[f] {
			case event.Int64:
				for j, v := range col.GetIntValues() {
					vals[j*k+f] = event.IntValue(v)
				}
			case event.String:
				for j, v := range col.GetStringValues() {
					vals[j*k+f] = event.StringValue(v)
				}
			}
		}
	}
	return total, nil
}

// checkColumns checks the key columns of one entity type and returns the
// number of keys they hold.
func checkColumns(ent *query.Entity, cols []*kilnv1.KeyColumn) (int, error) {
	name := ent.Def.Name
	n := -1
	var nField string
	for ci, col := range cols {
		f := slices.Index(ent.Def.Keys, col.GetField())
		if f < 0 {
			return 0, fmt.Errorf("entity %s: key column %d: %q is not a key field of %s (keys: %s)",
				name, ci, col.GetField(), name, strings.Join(ent.Def.Keys, ", "))
		}
		for _, other := range cols[:ci] {
			if other.GetField() == col.GetField() {
				return 0, fmt.Errorf("entity %s: key field %s has two columns: give each field once", name, col.GetField())
			}
		}
		ints, strs := len(col.GetIntValues()), len(col.GetStringValues())
		var l int
		switch t := ent.KeyTypes[f]; t {
		case event.Int64:
			if strs > 0 {
				return 0, fmt.Errorf("entity %s: key field %s is int64: send its values in int_values, not string_values", name, col.GetField())
			}
			l = ints
		case event.String:
			if ints > 0 {
				return 0, fmt.Errorf("entity %s: key field %s is string: send its values in string_values, not int_values", name, col.GetField())
			}
			l = strs
		default:
			return 0, fmt.Errorf("entity %s: key field %s has type %v, which the gRPC API cannot carry", name, col.GetField(), t)
		}
		if n >= 0 && l != n {
			return 0, fmt.Errorf("entity %s: key column %s has %d values but column %s has %d: every key needs a value in every column",
				name, col.GetField(), l, nField, n)
		}
		n, nField = l, col.GetField()
	}
	if len(cols) < len(ent.Def.Keys) {
		for _, k := range ent.Def.Keys {
			have := false
			for _, col := range cols {
				have = have || col.GetField() == k
			}
			if !have {
				return 0, fmt.Errorf("entity %s: no column for key field %s (keys: %s)", name, k, strings.Join(ent.Def.Keys, ", "))
			}
		}
	}
	if n <= 0 {
		return 0, fmt.Errorf("entity %s: no keys: give at least one value in each key column", name)
	}
	return n, nil
}

func entityNames(prep *query.Prepared) string {
	names := make([]string, len(prep.Entities))
	for i, pe := range prep.Entities {
		names[i] = pe.Entity.Def.Name
	}
	return strings.Join(names, ", ")
}

// readError maps an error of Engine.Read to a status, as the HTTP API maps
// it to 400 or 503.
func (s *Server) readError(err error) error {
	var qe *query.Error
	switch {
	case errors.As(err, &qe):
		return status.Error(codes.InvalidArgument, qe.Msg)
	case errors.Is(err, admission.ErrOverloaded):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, query.ErrViewUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return contextStatus(err)
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "the server is shutting down; retry on another replica or after restart")
	}
	s.opts.Logger.Error("reading features failed", "err", err)
	return status.Error(codes.Unavailable, "reading features failed: "+err.Error()+"; retry")
}

func contextStatus(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before the features were read")
	}
	return status.Error(codes.Canceled, "the call was cancelled before the features were read")
}

// recoverPanic turns a panic of a handler into INTERNAL rather than a dead
// process, as the HTTP server turns one into a 500.
func (s *Server) recoverPanic(rpc string, err *error) {
	if p := recover(); p != nil {
		s.opts.Logger.Error("panic serving gRPC call", "rpc", rpc, "panic", p)
		*err = status.Error(codes.Internal, "internal error; the server log has the details")
	}
}

func valueType(t event.Type) kilnv1.ValueType {
	switch t {
	case event.Int64:
		return kilnv1.ValueType_VALUE_TYPE_INT64
	case event.Float64:
		return kilnv1.ValueType_VALUE_TYPE_DOUBLE
	case event.String:
		return kilnv1.ValueType_VALUE_TYPE_STRING
	case event.Bool:
		return kilnv1.ValueType_VALUE_TYPE_BOOL
	}
	return kilnv1.ValueType_VALUE_TYPE_UNSPECIFIED
}

// buildResponse copies a Result into a response. The Result goes back to
// the pool when the handler returns, before gRPC marshals the response, so
// the response cannot share its slices; instead each entity type gets one
// allocation per slice kind, carved into its columns.
func buildResponse(prep *query.Prepared, res *query.Result) *kilnv1.GetFeaturesResponse {
	resp := &kilnv1.GetFeaturesResponse{EvaluatedAtMs: res.At}
	ents := make([]kilnv1.EntityFeatures, len(prep.Entities))
	resp.Entities = make([]*kilnv1.EntityFeatures, len(prep.Entities))
	for i, pe := range prep.Entities {
		er := &res.Entities[i]
		out := &ents[i]
		resp.Entities[i] = out
		out.Entity = pe.Entity.Def.Name
		n := er.N

		out.Statuses = make([]kilnv1.Status, n)
		out.EventTimeMs = make([]int64, n)
		for j, present := range er.Present[:n] {
			if present {
				out.Statuses[j] = kilnv1.Status_STATUS_PRESENT
				out.EventTimeMs[j] = er.EventTime[j]
			} else {
				out.Statuses[j] = kilnv1.Status_STATUS_NOT_FOUND
			}
		}

		// Count the columns of each type to size the backing arrays.
		var nInt, nFloat, nStr, nBool int
		for _, f := range pe.Features {
			switch f.Type {
			case event.Int64:
				nInt++
			case event.Float64:
				nFloat++
			case event.String:
				nStr++
			case event.Bool:
				nBool++
			}
		}
		var ints []int64
		var floats []float64
		var strs []string
		if nInt > 0 {
			ints = make([]int64, nInt*n)
		}
		if nFloat > 0 {
			floats = make([]float64, nFloat*n)
		}
		if nStr > 0 {
			strs = make([]string, nStr*n)
		}
		bools := make([]bool, (len(pe.Features)+nBool)*n) // valid flags, then bool values
		cols := make([]kilnv1.FeatureColumn, len(pe.Features))
		out.Features = make([]*kilnv1.FeatureColumn, len(pe.Features))
		for c, f := range pe.Features {
			col := &er.Columns[c]
			fc := &cols[c]
			out.Features[c] = fc
			fc.Name = f.Name
			fc.Type = valueType(f.Type)
			fc.Valid, bools = bools[:n:n], bools[n:]
			valid := col.Valid[:n]
			copy(fc.Valid, valid)
			// Values of null slots may be stale in the Result: the answer
			// promises zero there, and fresh memory is zero, so copy only
			// the valid ones.
			switch f.Type {
			case event.Int64:
				fc.IntValues, ints = ints[:n:n], ints[n:]
				copyValid(fc.IntValues, col.Ints, valid)
			case event.Float64:
				fc.DoubleValues, floats = floats[:n:n], floats[n:]
				copyValid(fc.DoubleValues, col.Floats, valid)
			case event.String:
				fc.StringValues, strs = strs[:n:n], strs[n:]
				copyValid(fc.StringValues, col.Strs, valid)
			case event.Bool:
				fc.BoolValues, bools = bools[:n:n], bools[n:]
				copyValid(fc.BoolValues, col.Bools, valid)
			}
		}
	}
	return resp
}

func copyValid[T any](dst, src []T, valid []bool) {
	for j, ok := range valid {
		if ok {
			dst[j] = src[j]
		}
	}
}

// preparedCache keeps the prepared lists Prepare made, by id, dropping the
// least recently used beyond max. A lookup takes one short critical section
// (a map lookup and a list move).
type preparedCache struct {
	max int

	mu    sync.Mutex               // guards byID and order
	byID  map[uint64]*list.Element // values are *preparedEntry
	order *list.List               // most recently used first
}

type preparedEntry struct {
	id   uint64
	prep *query.Prepared
}

func newPreparedCache(max int) *preparedCache {
	return &preparedCache{max: max, byID: map[uint64]*list.Element{}, order: list.New()}
}

func (c *preparedCache) get(id uint64) *query.Prepared {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byID[id]
	if el == nil {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*preparedEntry).prep
}

// put keeps prep and returns its id.
func (c *preparedCache) put(prep *query.Prepared) (uint64, error) {
	id := preparedID(prep)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byID[id]; el != nil {
		if old := el.Value.(*preparedEntry).prep; !samePrepared(old, prep) {
			// 64-bit hashes of a few lists do not collide in practice;
			// refuse rather than serve the wrong columns.
			return 0, fmt.Errorf("prepared id %d already names another feature list", id)
		}
		c.order.MoveToFront(el)
		return id, nil
	}
	c.byID[id] = c.order.PushFront(&preparedEntry{id: id, prep: prep})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*preparedEntry).id)
	}
	return id, nil
}

// preparedID hashes what a prepared list serves — its entity types, key
// fields, and features with their types, in order — so that an id means
// one column layout on every server and across restarts: a stale id is
// either unknown or names the very same columns.
func preparedID(prep *query.Prepared) uint64 {
	h := xxhash.New()
	var buf [8]byte
	str := func(s string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.WriteString(s)
	}
	for _, pe := range prep.Entities {
		str(pe.Entity.Def.Name)
		for k, f := range pe.Entity.Def.Keys {
			str(f)
			str(pe.Entity.KeyTypes[k].String())
		}
		for _, f := range pe.Features {
			str(f.Name)
			str(f.Type.String())
		}
		str("") // ends the entity
	}
	id := h.Sum64()
	if id == 0 {
		id = 1 // 0 is proto3's unset value
	}
	return id
}

func samePrepared(a, b *query.Prepared) bool {
	return slices.EqualFunc(a.Entities, b.Entities, func(pa, pb *query.PreparedEntity) bool {
		return pa.Entity == pb.Entity && slices.Equal(pa.Features, pb.Features)
	})
}
