package admission

import (
	"context"
	"errors"
	"net/http"
	"strconv"

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
// feature reads); other requests go straight to next. A refused request
// gets 429 with Retry-After before anything reads its body.
//
// What net/http then does with the unread body: when the handler returns,
// it discards up to 256 KiB of it (no parsing, a copy into nothing) so that
// the connection can carry the next request, which HTTP/1.1 requires; a
// body declared larger is not read and the connection is closed instead.
// Closing every refused connection would cost more: the client must
// reconnect, and a reconnection costs both sides more CPU than discarding
// a features request (about 10 KiB for 500 keys).
func HTTPHandler(l *Limiter, next http.Handler, isRead func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isRead(r) {
			next.ServeHTTP(w, r)
			return
		}
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
		defer l.Release()
		next.ServeHTTP(w, r)
	})
}

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
