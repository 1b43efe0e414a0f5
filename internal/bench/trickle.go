package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// trickleDeclaredBytes is the Content-Length a trickling push announces:
// the push API's largest body (16 MiB, docs/api.md), which the server
// would hold whole if it reserved memory by what is announced.
const trickleDeclaredBytes = 16 << 20

// TrickleResult is what the trickling connections did during a run: slow
// clients each sending a push body one byte every Every, which the
// server's read timeout (kiln serve --http-read-timeout) must cut off.
type TrickleResult struct {
	Connections int    `json:"connections"`
	Every       string `json:"every"`
	// CutOff counts connections the server ended (each is replaced by a
	// new one); BytesSent the body bytes all of them sent.
	CutOff    int64 `json:"cut_off"`
	BytesSent int64 `json:"bytes_sent"`
	// PeakRSSBytes is the server's highest RSS seen while they ran,
	// sampled every second.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// trickle keeps Connections slow pushes open against a server.
type trickle struct {
	res    TrickleResult
	cancel context.CancelFunc
	wg     sync.WaitGroup
	cutOff atomic.Int64
	sent   atomic.Int64
	peak   atomic.Int64
}

// startTrickle opens conns connections to the server at base (a URL), each
// announcing a large push and sending its body one byte every every, and
// samples the server's RSS with stats until stop.
func startTrickle(ctx context.Context, base string, conns int, every time.Duration, stats func(context.Context) (serverStats, error)) (*trickle, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &trickle{res: TrickleResult{Connections: conns, Every: every.String()}, cancel: cancel}
	head := fmt.Appendf(nil, "POST /v1/push HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", u.Host, trickleDeclaredBytes)
	for i := range conns {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			// Spread the connections' bytes over the period.
			if !sleepCtx(ctx, every*time.Duration(i)/time.Duration(conns)) {
				return
			}
			for ctx.Err() == nil {
				t.slowPush(ctx, u.Host, head, every)
			}
		}()
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for sleepCtx(ctx, time.Second) {
			if s, err := stats(ctx); err == nil && s.RSSBytes > t.peak.Load() {
				t.peak.Store(s.RSSBytes)
			}
		}
	}()
	return t, nil
}

// slowPush sends one push's headers and then a byte of its body every
// every, until the server ends the connection or ctx ends.
func (t *trickle) slowPush(ctx context.Context, addr string, head []byte, every time.Duration) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		sleepCtx(ctx, every)
		return
	}
	defer conn.Close()
	ended := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // the server's answer (a 408), then its close
		close(ended)
	}()
	if _, err := conn.Write(head); err != nil {
		t.cutOff.Add(1)
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for sent := 1; sent < trickleDeclaredBytes; sent++ {
		select {
		case <-ctx.Done():
			return
		case <-ended:
			t.cutOff.Add(1)
			return
		case <-tick.C:
			if _, err := conn.Write([]byte{' '}); err != nil {
				t.cutOff.Add(1)
				return
			}
			t.sent.Add(1)
		}
	}
}

// stop closes the connections and returns what they did.
func (t *trickle) stop() TrickleResult {
	t.cancel()
	t.wg.Wait()
	t.res.CutOff, t.res.BytesSent, t.res.PeakRSSBytes = t.cutOff.Load(), t.sent.Load(), t.peak.Load()
	return t.res
}
