package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The raw client reads both kinds of bodies Go's server sends (with a
// Content-Length, and chunked when the handler writes more than its
// buffer), keeps the connection, and reports non-200 answers.
func TestRawClient(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case "small":
			w.Write([]byte(`{"ok":1}`))
		case "big":
			w.Write([]byte(big))
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.Error(w, "bad body "+string(body), http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	rc, err := newRawClient(srv.URL+"/x", 2*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.closeIdle()
	ctx := context.Background()
	for range 3 {
		out, err := rc.post(ctx, []byte("small"), true)
		if err != nil || string(out) != `{"ok":1}` {
			t.Fatalf("small: %q, %v", out, err)
		}
		out, err = rc.post(ctx, []byte("big"), true)
		if err != nil || string(out) != big {
			t.Fatalf("big: %d bytes, %v", len(out), err)
		}
		if _, err := rc.post(ctx, []byte("big"), false); err != nil {
			t.Fatalf("big, dropped: %v", err)
		}
	}
	if len(rc.idle) != 1 {
		t.Errorf("%d idle connections after sequential requests, want 1", len(rc.idle))
	}
	_, err = rc.post(ctx, []byte("nope"), false)
	var he *httpError
	if !errors.As(err, &he) || he.status != 400 || !strings.Contains(he.msg, "bad body nope") {
		t.Errorf("error answer: %v", err)
	}
	var v struct{ OK int }
	if err := rc.postJSON(ctx, []byte("small"), &v); err != nil || v.OK != 1 {
		t.Errorf("postJSON: %+v, %v", v, err)
	}
	// A cancelled context ends the exchange at once.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := rc.post(cctx, []byte("slow"), false); err == nil {
		t.Error("a cancelled request succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a cancelled request took %v", d)
	}
}
