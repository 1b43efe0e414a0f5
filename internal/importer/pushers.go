package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/stream"
)

// WriterPusher imports into a write path in this process: a stopped data
// directory opened for the import.
type WriterPusher struct {
	W *ingest.Writer
}

// PushFrom gives the events their origins and pushes them.
func (w WriterPusher) PushFrom(ctx context.Context, src *definition.Source, name string, first uint64, events []event.Event) (ingest.Result, error) {
	id := stream.StreamID(name)
	w.W.NameStream(id, name)
	for i := range events {
		events[i].Origin = event.Origin{Stream: id, Offset: first + uint64(i)}
	}
	return w.W.Push(ctx, src, events)
}

// HTTPPusher imports into a running server through its push API, naming
// each batch's origin in the query (origin, offset), which the push API
// takes for imports.
type HTTPPusher struct {
	// URL is the server's base URL, like http://127.0.0.1:7070.
	URL    string
	Client *http.Client
	// Token, if set, is sent as a bearer token (a push-scoped token of
	// the server's --token-file).
	Token string
	// MaxBatchBytes bounds one push's body; a batch that would encode
	// larger is split. Default 8 MiB (the server takes 16).
	MaxBatchBytes int

	buf []byte
}

// PushFrom encodes the events as a push and posts it, retrying a refusal
// for load (429, 503) with backoff: a repeated push of positions the
// server holds already is passed over, so retrying is safe.
func (h *HTTPPusher) PushFrom(ctx context.Context, src *definition.Source, name string, first uint64, events []event.Event) (ingest.Result, error) {
	if h.MaxBatchBytes <= 0 {
		h.MaxBatchBytes = 8 << 20
	}
	var total ingest.Result
	for len(events) > 0 {
		h.buf = append(h.buf[:0], `{"source":`...)
		h.buf = strconv.AppendQuote(h.buf, src.Name)
		h.buf = append(h.buf, `,"events":[`...)
		n := 0
		for n < len(events) && (n == 0 || len(h.buf) < h.MaxBatchBytes) && n < 10_000 {
			if n > 0 {
				h.buf = append(h.buf, ',')
			}
			h.buf = appendEvent(h.buf, src, &events[n])
			n++
		}
		h.buf = append(h.buf, "]}"...)
		res, err := h.post(ctx, name, first, h.buf)
		if err != nil {
			return total, err
		}
		total.Accepted += res.Accepted
		total.DroppedLate += res.DroppedLate
		events = events[n:]
		first += uint64(n)
	}
	return total, nil
}

func (h *HTTPPusher) post(ctx context.Context, name string, first uint64, body []byte) (ingest.Result, error) {
	u := strings.TrimRight(h.URL, "/") + "/v1/push?" + url.Values{"origin": {name}, "offset": {strconv.FormatUint(first, 10)}}.Encode()
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return ingest.Result{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		if h.Token != "" {
			req.Header.Set("Authorization", "Bearer "+h.Token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return ingest.Result{}, fmt.Errorf("pushing to %s: %w", h.URL, err)
		}
		out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return ingest.Result{}, err
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			var res ingest.Result
			if err := json.Unmarshal(out, &res); err != nil {
				return ingest.Result{}, fmt.Errorf("the server's answer to a push: %w", err)
			}
			return res, nil
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 8:
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ingest.Result{}, ctx.Err()
			}
			backoff *= 2
		default:
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(out, &e) != nil || e.Error == "" {
				e.Error = strings.TrimSpace(string(out))
			}
			return ingest.Result{}, fmt.Errorf("the server refused a push (HTTP %d): %s", resp.StatusCode, e.Error)
		}
	}
}

// appendEvent appends ev as a push API event object: its non-null fields
// and its event time in epoch milliseconds.
func appendEvent(dst []byte, src *definition.Source, ev *event.Event) []byte {
	dst = append(dst, '{')
	for i, v := range ev.Fields {
		if v.Kind == event.Null {
			continue
		}
		dst = strconv.AppendQuote(dst, src.Fields[i].Name)
		dst = append(dst, ':')
		switch v.Kind {
		case event.Int64:
			dst = strconv.AppendInt(dst, v.Int, 10)
		case event.Float64:
			dst = strconv.AppendFloat(dst, v.Float, 'g', -1, 64)
		case event.String:
			b, _ := json.Marshal(v.Str)
			dst = append(dst, b...)
		case event.Bool:
			dst = strconv.AppendBool(dst, v.Bool)
		}
		dst = append(dst, ',')
	}
	dst = strconv.AppendQuote(dst, src.EventTime)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, ev.TS, 10)
	return append(dst, '}')
}
