package admission

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoLength answers a read with the length of its body, or, for a body
// "big", with size bytes written 64 KiB at a time, telling wrote as it
// starts.
type echoLength struct {
	size  int
	wrote chan struct{}
}

func (h *echoLength) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 100))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if string(b) != "big" {
		fmt.Fprintf(w, "%d\n", len(b))
		return
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	h.wrote <- struct{}{}
	for i := 0; i < h.size; i += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// rawPost opens a connection to srv and sends a features request's
// headers announcing n bytes of body, and the first part of it.
func rawPost(t *testing.T, srv *httptest.Server, n int, part string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/features HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, part)
	return c
}

func postBody(t *testing.T, srv *httptest.Server, body string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(srv.URL+"/v1/features", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A client sending its body slowly holds no slot: with one slot, another
// read is answered while the slow body is still arriving, and the slow
// read then gets its whole body.
func TestSlowBodyHoldsNoSlot(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1})
	srv := httptest.NewServer(HTTPHandler(l, &echoLength{}, isFeatures, 100))
	defer srv.Close()
	slow := rawPost(t, srv, 10, "12345")
	defer slow.Close() // before srv.Close, which waits for its handler
	if code, body := postBody(t, srv, "abc"); code != http.StatusOK || body != "3\n" {
		t.Fatalf("a read beside a slow body: %d %q", code, body)
	}
	io.WriteString(slow, "67890")
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "10\n" {
		t.Fatalf("the slow read: %d %q, want 200 and its 10 bytes", resp.StatusCode, b)
	}
	if st := l.Stats(); st.Admitted != 2 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A client reading its answer slowly holds no slot: the slot is given back
// as the answer starts.
func TestSlowReaderHoldsNoSlot(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1})
	h := &echoLength{size: 64 << 20, wrote: make(chan struct{}, 1)}
	srv := httptest.NewServer(HTTPHandler(l, h, isFeatures, 100))
	defer srv.Close()
	slow := rawPost(t, srv, 3, "big") // never reads its answer
	defer slow.Close()                // before srv.Close, which waits for its handler
	<-h.wrote
	if code, body := postBody(t, srv, "abcd"); code != http.StatusOK || body != "4\n" {
		t.Fatalf("a read beside a slow reader: %d %q", code, body)
	}
}

// The handler behind sees a body over its limit as such, and an error
// reading the body as that error.
func TestBodyReadAheadKeepsLimitsAndErrors(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConcurrent: 1})
	srv := httptest.NewServer(HTTPHandler(l, &echoLength{}, isFeatures, 100))
	defer srv.Close()
	if code, _ := postBody(t, srv, strings.Repeat("x", 100)); code != http.StatusOK {
		t.Fatalf("a body at the limit: %d", code)
	}
	if code, _ := postBody(t, srv, strings.Repeat("x", 5000)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over the limit: %d, want 413", code)
	}
	cut := rawPost(t, srv, 50, "short")
	cut.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(cut), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a body cut short: %d, want the handler's 400", resp.StatusCode)
	}
}
