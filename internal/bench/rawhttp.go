package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawClient sends POST requests with pre-encoded bodies over keep-alive
// HTTP/1.1 connections, writing the request and reading the answer in the
// calling goroutine. net/http's client hands every request between three
// goroutines (caller, writer, reader); on a small machine those wake-ups
// cost more CPU than the request itself, CPU the server under test then
// lacks. The answer's body is read and dropped, or returned when asked for.
//
// It speaks only what Kiln's server answers: a status line, headers, and a
// body with Content-Length or chunked. It is safe for concurrent use; it
// keeps at most maxIdle idle connections.
type rawClient struct {
	addr    string // host:port
	prefix  []byte // request line and fixed headers, up to Content-Length:
	timeout time.Duration
	idle    chan *rawConn
}

// Limits of the raw client.
const (
	rawReadBuffer   = 64 << 10
	rawMaxHeader    = 64 << 10 // bytes of status line and headers
	rawMaxErrorBody = 1 << 10
)

type rawConn struct {
	c    net.Conn
	r    *bufio.Reader
	wbuf []byte
}

// newRawClient returns a client of POST rawURL (http://host:port/path).
func newRawClient(rawURL string, timeout time.Duration, maxIdle int) (*rawClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: %q: want http://host:port/path", rawURL)
	}
	prefix := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nUser-Agent: kiln-bench\r\nContent-Length: ", u.RequestURI(), u.Host)
	return &rawClient{addr: u.Host, prefix: prefix, timeout: timeout, idle: make(chan *rawConn, maxIdle)}, nil
}

// post sends body and returns the answer's body if keep is set (else nil).
// A status other than 200 is an error carrying the start of the body.
func (rc *rawClient) post(ctx context.Context, body []byte, keep bool) ([]byte, error) {
	var conn *rawConn
	select {
	case conn = <-rc.idle:
	default:
		c, err := (&net.Dialer{Timeout: rc.timeout}).DialContext(ctx, "tcp", rc.addr)
		if err != nil {
			return nil, err
		}
		conn = &rawConn{c: c, r: bufio.NewReaderSize(c, rawReadBuffer)}
	}
	deadline := time.Now().Add(rc.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.c.SetDeadline(deadline)
	// A cancelled context cuts the exchange short through the deadline.
	stop := context.AfterFunc(ctx, func() { conn.c.SetDeadline(time.Unix(1, 0)) })
	out, reuse, err := conn.exchange(rc, body, keep)
	if !stop() || ctx.Err() != nil {
		reuse = false
		if err == nil {
			err = ctx.Err()
		}
	}
	if reuse {
		select {
		case rc.idle <- conn:
		default:
			conn.c.Close()
		}
	} else {
		conn.c.Close()
	}
	return out, err
}

// postJSON sends body and decodes the 200 answer into v.
func (rc *rawClient) postJSON(ctx context.Context, body []byte, v any) error {
	out, err := rc.post(ctx, body, true)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, v)
}

// exchange writes one request and reads its answer. reuse reports whether
// the connection can carry another request.
func (c *rawConn) exchange(rc *rawClient, body []byte, keep bool) (out []byte, reuse bool, err error) {
	c.wbuf = append(c.wbuf[:0], rc.prefix...)
	c.wbuf = strconv.AppendInt(c.wbuf, int64(len(body)), 10)
	c.wbuf = append(c.wbuf, "\r\n\r\n"...)
	c.wbuf = append(c.wbuf, body...)
	if _, err := c.c.Write(c.wbuf); err != nil {
		return nil, false, err
	}
	status, length, chunked, closeConn, err := c.readHead()
	if err != nil {
		return nil, false, err
	}
	var buf *bytes.Buffer // nil: drop the body
	if keep || status != 200 {
		buf = new(bytes.Buffer)
	}
	switch {
	case chunked:
		err = c.readChunked(buf)
	case length >= 0:
		err = c.copyN(buf, length)
	default:
		// No length: the body runs to the end of the connection.
		if buf != nil {
			_, err = io.Copy(buf, c.r)
		} else {
			_, err = io.Copy(io.Discard, c.r)
		}
		closeConn = true
	}
	if err != nil {
		return nil, false, err
	}
	if status != 200 {
		msg := bytes.TrimSpace(buf.Bytes())
		if len(msg) > rawMaxErrorBody {
			msg = msg[:rawMaxErrorBody]
		}
		return nil, !closeConn, &httpError{status: status, msg: string(msg)}
	}
	if buf != nil {
		out = buf.Bytes()
	}
	return out, !closeConn, nil
}

var errBadAnswer = errors.New("bench: malformed HTTP answer")

// readHead reads the status line and headers. length is -1 when there is
// no Content-Length.
func (c *rawConn) readHead() (status int, length int64, chunked, closeConn bool, err error) {
	length = -1
	read := 0
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, false, err
		}
		read += len(line)
		if read > rawMaxHeader {
			return 0, 0, false, false, fmt.Errorf("%w: headers over %d bytes", errBadAnswer, rawMaxHeader)
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			// HTTP/1.1 200 OK
			f := bytes.Fields(line)
			if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
				return 0, 0, false, false, fmt.Errorf("%w: status line %q", errBadAnswer, line)
			}
			if status, err = strconv.Atoi(string(f[1])); err != nil {
				return 0, 0, false, false, fmt.Errorf("%w: status line %q", errBadAnswer, line)
			}
			closeConn = bytes.Equal(f[0], []byte("HTTP/1.0"))
			continue
		}
		if len(line) == 0 {
			return status, length, chunked, closeConn, nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, false, fmt.Errorf("%w: header %q", errBadAnswer, line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(v), 10, 64); err != nil || length < 0 {
				return 0, 0, false, false, fmt.Errorf("%w: Content-Length %q", errBadAnswer, v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closeConn = closeConn || bytes.EqualFold(v, []byte("close"))
		}
	}
}

// copyN reads n bytes of body into dst, or drops them if dst is nil.
func (c *rawConn) copyN(dst *bytes.Buffer, n int64) error {
	if dst == nil {
		_, err := c.r.Discard(int(n))
		return err
	}
	_, err := io.CopyN(dst, c.r, n)
	return err
}

// readChunked reads a chunked body into dst (nil: drops it) and its
// trailers.
func (c *rawConn) readChunked(dst *bytes.Buffer) error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadAnswer, line)
		}
		if n == 0 {
			break
		}
		if err := c.copyN(dst, n); err != nil {
			return err
		}
		if crlf, err := c.r.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errBadAnswer)
		}
	}
	for { // trailers, up to the empty line
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// closeIdle closes the idle connections.
func (rc *rawClient) closeIdle() {
	for {
		select {
		case c := <-rc.idle:
			c.c.Close()
		default:
			return
		}
	}
}
