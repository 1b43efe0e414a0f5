package admission

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// The server's cost of a refusal: the Limiter's decision and the 429.
func BenchmarkHTTPRefusal(b *testing.B) {
	l, err := New(Config{MaxConcurrent: 1, MaxQueue: 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Acquire(context.Background()); err != nil {
		b.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() { queued <- l.Acquire(context.Background()) }() // fills the queue
	for l.Stats().Queued != 1 {
		runtime.Gosched()
	}
	b.Cleanup(func() {
		l.Release() // to the waiter
		<-queued
		l.Release()
	})
	h := HTTPHandler(l, http.NotFoundHandler(), func(*http.Request) bool { return true }, 1<<20)
	req, _ := http.NewRequest(http.MethodPost, "/v1/features", strings.NewReader("{}"))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
	if l.Refused() < int64(b.N) {
		b.Fatalf("%d refused of %d", l.Refused(), b.N)
	}
}

// The cost admission adds to an admitted read.
func BenchmarkAcquireRelease(b *testing.B) {
	l, err := New(Config{MaxConcurrent: 64})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
	})
}
