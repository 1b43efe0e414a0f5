package admission

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// RetryAfterSeconds is what a refusal's Retry-After header says.
const RetryAfterSeconds = 1

// refusal is the body of a 429: the JSON error every API error has. The
// header values are shared by every refusal (net/http only reads them), so
// a refusal allocates nothing.
var (
	refusal         = []byte(`{"error":` + strconv.Quote(ErrOverloaded.Error()) + "}\n")
	jsonContentType = []string{"application/json"}
	retryAfter      = []string{strconv.Itoa(RetryAfterSeconds)}
)

// HTTPHandler puts l in front of next for the requests isRead picks (the
// feature reads); other requests go straight to next.
//
// A read's slot covers its work, not its client's network, so that a
// client that sends its body slowly, or reads its answer slowly, holds no
// slot (with one slot per CPU, two such clients would stop every read):
//
//   - a request that l would refuse at once gets 429 with Retry-After
//     before anything reads its body;
//   - otherwise its body (up to maxBody bytes, and one more, so that next
//     can tell a body over its limit) is read first, and only then does
//     the read take a slot, or wait for one, or get refused; next reads
//     the body from memory, with the error reading it met, if any;
//   - the slot is given back as next starts its answer (its first
//     WriteHeader, Write or Flush), or when it returns.
//
// What net/http does with the body of a refused request: when the handler
// returns, it discards up to 256 KiB of it (no parsing, a copy into
// nothing) so that the connection can carry the next request, which
// HTTP/1.1 requires; a body declared larger is not read and the connection
// is closed instead. Closing every refused connection would cost more: the
// client must reconnect, and a reconnection costs both sides more CPU than
// discarding a features request (about 10 KiB for 500 keys).
func HTTPHandler(l *Limiter, next http.Handler, isRead func(*http.Request) bool, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isRead(r) {
			next.ServeHTTP(w, r)
			return
		}
		if l.Refuse() != nil {
			WriteRefusal(w)
			return
		}
		rd := readings.Get().(*reading)
		defer rd.put()
		rd.readBody(r.Body, r.ContentLength, maxBody)
		if err := l.Acquire(r.Context()); err != nil {
			if errors.Is(err, ErrOverloaded) {
				WriteRefusal(w)
				return
			}
			// The client went away while the read waited: nobody reads
			// the answer.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rd.l, rd.w, rd.held = l, w, true
		defer rd.release()
		r.Body = &rd.body
		next.ServeHTTP(rd, r)
	})
}

// reading is an admitted HTTP read: its body, read before it took a slot,
// and the writer that gives the slot back as the answer starts.
type reading struct {
	buf  bytes.Buffer
	body bufferedBody
	l    *Limiter
	w    http.ResponseWriter
	held bool
}

// maxKeptBody bounds the body memory a reading keeps for the next.
const maxKeptBody = 256 << 10

var readings = sync.Pool{New: func() any { return new(reading) }}

// readBody reads up to maxBody+1 bytes of body. It grows the buffer as the
// bytes arrive (a client announcing a large body and sending it slowly
// holds only what it sent).
func (rd *reading) readBody(body io.Reader, announced, maxBody int64) {
	rd.buf.Reset()
	if announced > 0 && announced <= maxBody {
		rd.buf.Grow(int(min(announced, maxKeptBody)) + bytes.MinRead)
	}
	_, err := rd.buf.ReadFrom(io.LimitReader(body, maxBody+1))
	rd.body = bufferedBody{data: rd.buf.Bytes(), err: err}
}

func (rd *reading) put() {
	rd.l, rd.w, rd.body = nil, nil, bufferedBody{}
	if rd.buf.Cap() > maxKeptBody {
		rd.buf = bytes.Buffer{}
	}
	readings.Put(rd)
}

// release gives the slot back, once.
func (rd *reading) release() {
	if rd.held {
		rd.held = false
		rd.l.Release()
	}
}

func (rd *reading) Header() http.Header { return rd.w.Header() }

func (rd *reading) WriteHeader(code int) {
	rd.release()
	rd.w.WriteHeader(code)
}

func (rd *reading) Write(b []byte) (int, error) {
	rd.release()
	return rd.w.Write(b)
}

// Flush passes a flush on, when the writer underneath can.
func (rd *reading) Flush() {
	rd.release()
	if f, ok := rd.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (rd *reading) Unwrap() http.ResponseWriter { return rd.w }

// bufferedBody is a body read ahead: its bytes, then the error reading it
// met (io.EOF if none).
type bufferedBody struct {
	data []byte
	err  error
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		if b.err == nil {
			return 0, io.EOF
		}
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *bufferedBody) Close() error { return nil }

// WriteRefusal answers a refused HTTP request: 429, Retry-After and the
// JSON error.
func WriteRefusal(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Retry-After"] = retryAfter
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write(refusal)
}

// GRPCServerOptions puts l in front of the unary methods named (full
// names, like "/kiln.v1.FeatureService/GetFeatures"): a tap handle refuses
// a call with RESOURCE_EXHAUSTED when l would refuse it at once, before
// its message is read or decoded (the tap runs on the connection's reader,
// so it never waits), and an interceptor admits the others, waiting for a
// slot if need be, and releases the slot when the handler returns.
func GRPCServerOptions(l *Limiter, methods ...string) []grpc.ServerOption {
	limited := make(map[string]bool, len(methods))
	for _, m := range methods {
		limited[m] = true
	}
	refused := status.Error(codes.ResourceExhausted, ErrOverloaded.Error())
	return []grpc.ServerOption{
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			if limited[info.FullMethodName] && l.Refuse() != nil {
				return nil, refused
			}
			return ctx, nil
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if !limited[info.FullMethod] {
				return handler(ctx, req)
			}
			if err := l.Acquire(ctx); err != nil {
				if errors.Is(err, ErrOverloaded) {
					return nil, refused
				}
				return nil, status.FromContextError(err).Err()
			}
			defer l.Release()
			return handler(ctx, req)
		}),
	}
}
