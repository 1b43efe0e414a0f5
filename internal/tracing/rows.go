package tracing

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/rowcache"
)

// Names of the spans below a request's span.
const (
	// CacheLookupSpan is a read of a request's rows through the row cache:
	// the rows it holds answered from memory, the others read from the
	// store (a StoreReadSpan child) or waited for while another request
	// reads them.
	CacheLookupSpan = "rowcache.lookup"
	// StoreReadSpan is one multi-get of rows from the store (on the
	// embedded store, from the write path's rows not yet written back
	// first).
	StoreReadSpan = "store.read"
	// CommitSpan is a push's events folded into their rows and made
	// durable: the partitions' group commit and the archive's journal.
	CommitSpan = "ingest.commit"
)

// CachedRows returns rt, a read through the row cache, with a
// CacheLookupSpan around each read and a StoreReadSpan around each read of
// the store it makes for the rows the cache does not hold. Spans are made
// only under a recorded request span: a read outside any request, or of a
// request not sampled, costs one look at its context.
func CachedRows(tp trace.TracerProvider, rt rowcache.ReadThrough) query.MemoRowSource {
	t := tp.Tracer(Scope)
	rt.Load = storeRead(t, rt.Load)
	return &cachedRows{rt: rt, tracer: t}
}

type cachedRows struct {
	rt     rowcache.ReadThrough
	tracer trace.Tracer
}

func (c *cachedRows) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return c.lookup(ctx, keys, func(ctx context.Context) error { return c.rt.Get(ctx, keys, fn) })
}

func (c *cachedRows) GetUnordered(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return c.lookup(ctx, keys, func(ctx context.Context) error { return c.rt.GetUnordered(ctx, keys, fn) })
}

func (c *cachedRows) GetMemo(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool, memo []byte) []byte) error {
	return c.lookup(ctx, keys, func(ctx context.Context) error { return c.rt.GetMemo(ctx, keys, fn) })
}

// lookup calls read in a CacheLookupSpan.
func (c *cachedRows) lookup(ctx context.Context, keys [][]byte, read func(context.Context) error) error {
	ctx, span := startRead(ctx, c.tracer, CacheLookupSpan, len(keys))
	if span == nil {
		return read(ctx)
	}
	err := read(ctx)
	endSpan(span, err)
	return err
}

// StoreRows returns rows with a StoreReadSpan around each read, made only
// under a recorded request span.
func StoreRows(tp trace.TracerProvider, rows query.RowSource) query.RowSource {
	return storeRows(storeRead(tp.Tracer(Scope), rows.Get))
}

type storeRows rowcache.LoadFunc

func (get storeRows) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	return get(ctx, keys, fn)
}

// storeRead returns load in a StoreReadSpan that counts the rows found.
func storeRead(t trace.Tracer, load rowcache.LoadFunc) rowcache.LoadFunc {
	return func(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
		ctx, span := startRead(ctx, t, StoreReadSpan, len(keys))
		if span == nil {
			return load(ctx, keys, fn)
		}
		found := 0
		err := load(ctx, keys, func(i int, value []byte, ok bool) {
			if ok {
				found++
			}
			fn(i, value, ok)
		})
		span.SetAttributes(RowsFoundKey.Int(found))
		endSpan(span, err)
		return err
	}
}

// startRead starts a span named name under ctx's span for a read of n
// rows, or returns a nil span when ctx's span is not recorded.
func startRead(ctx context.Context, t trace.Tracer, name string, n int) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return t.Start(ctx, name, trace.WithAttributes(RowsKey.Int(n)))
}

// endSpan ends span, recording err on it if not nil.
func endSpan(span trace.Span, err error) {
	Fail(span, err)
	span.End()
}

// Fail records err on span, which then has the status Error; a nil err
// changes nothing.
func Fail(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Read puts what a read asks for on its request's span: the service, the
// keys, the features and the values to answer (ServiceKey, EntitiesKey,
// FeaturesKey, ValuesKey), from req as the API parsed it. It does nothing
// if span is not recorded.
func Read(span trace.Span, req *query.Request) {
	if !span.IsRecording() || req.Prepared == nil {
		return
	}
	keys, features, values := 0, 0, 0
	for i, pe := range req.Prepared.Entities {
		features += len(pe.Features)
		if i < len(req.Keys) {
			n := len(req.Keys[i]) / max(len(pe.Entity.KeyTypes), 1)
			keys += n
			values += n * len(pe.Features)
		}
	}
	span.SetAttributes(ServiceKey.String(req.Prepared.Service), EntitiesKey.Int(keys), FeaturesKey.Int(features), ValuesKey.Int(values))
}
