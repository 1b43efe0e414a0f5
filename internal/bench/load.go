package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/workload"
)

// Limits of the push API (docs/api.md) the loaders stay within.
const (
	maxPushEvents = 10_000
	pushTimeout   = 2 * time.Minute
	progressEvery = 10 * time.Second
	liveTick      = 20 * time.Millisecond
)

// pushEncoder writes RW1 events as the JSON of POST /v1/push.
type pushEncoder struct {
	source string
	keys   []string // `"user_id":` … per workload field, then the event time
}

func newPushEncoder(source, eventTime string) *pushEncoder {
	e := &pushEncoder{source: source}
	for _, name := range workload.FieldNames {
		e.keys = append(e.keys, strconv.Quote(name)+":")
	}
	e.keys = append(e.keys, strconv.Quote(eventTime)+":")
	return e
}

// begin starts a push body in b[:0].
func (e *pushEncoder) begin(b []byte) []byte {
	b = append(b[:0], `{"source":`...)
	b = strconv.AppendQuote(b, e.source)
	return append(b, `,"events":[`...)
}

// add appends one event; n is the number of events already in the body.
func (e *pushEncoder) add(b []byte, n int, ev *event.Event) []byte {
	if n > 0 {
		b = append(b, ',')
	}
	b = append(b, '{')
	for i, v := range ev.Fields {
		b = append(b, e.keys[i]...)
		switch v.Kind {
		case event.Int64:
			b = strconv.AppendInt(b, v.Int, 10)
		case event.Float64:
			b = strconv.AppendFloat(b, v.Float, 'g', -1, 64)
		case event.String:
			b = strconv.AppendQuote(b, v.Str)
		case event.Bool:
			b = strconv.AppendBool(b, v.Bool)
		default:
			b = append(b, "null"...)
		}
		b = append(b, ',')
	}
	b = append(b, e.keys[len(e.keys)-1]...)
	b = strconv.AppendInt(b, ev.TS, 10)
	return append(b, '}')
}

// end closes a push body.
func (e *pushEncoder) end(b []byte) []byte { return append(b, "]}"...) }

// pushAnswer is the answer of POST /v1/push.
type pushAnswer struct {
	Accepted    int64 `json:"accepted"`
	DroppedLate int64 `json:"dropped_late"`
}

// LoadResult describes the loading of the history.
type LoadResult struct {
	Events      int64   `json:"events"`
	Accepted    int64   `json:"accepted"`
	DroppedLate int64   `json:"dropped_late"`
	Pushes      int64   `json:"pushes"`
	Pushers     int     `json:"pushers"`
	BatchEvents int     `json:"batch_events"`
	Seconds     float64 `json:"seconds"`
	EventsPerS  float64 `json:"events_per_second"`
}

// loadHistory pushes gen's history to pushURL in batches of batch events,
// with pushers concurrent pushes. The generator encodes while the pushers
// wait for their answers; buffers are reused. The first failed push stops
// the load (pushes are at-least-once: retrying could count events twice).
func loadHistory(ctx context.Context, c *http.Client, pushURL string, gen *workload.Generator, enc *pushEncoder, pushers, batch int, progress io.Writer) (LoadResult, error) {
	res := LoadResult{Pushers: pushers, BatchEvents: batch}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	free := make(chan []byte, pushers+2)
	for range pushers + 2 {
		free <- make([]byte, 0, batch*110)
	}
	full := make(chan []byte, pushers)

	var mu sync.Mutex // guards res's counters
	var wg sync.WaitGroup
	for range pushers {
		wg.Go(func() {
			for body := range full {
				if ctx.Err() == nil {
					var ans pushAnswer
					pctx, pcancel := context.WithTimeout(ctx, pushTimeout)
					err := postJSON(pctx, c, pushURL, body, &ans)
					pcancel()
					if err != nil {
						cancel(fmt.Errorf("pushing history: %w", err))
					} else {
						mu.Lock()
						res.Accepted += ans.Accepted
						res.DroppedLate += ans.DroppedLate
						res.Pushes++
						mu.Unlock()
					}
				}
				free <- body[:0]
			}
		})
	}

	start := time.Now()
	lastReport := start
	var body []byte
	n := 0
	var total int64
	send := func() bool {
		body = enc.end(body)
		select {
		case full <- body:
		case <-ctx.Done():
			return false
		}
		body, n = nil, 0
		return true
	}
	gen.History(func(ev *event.Event) bool {
		if body == nil {
			select {
			case body = <-free:
			case <-ctx.Done():
				return false
			}
			body = enc.begin(body)
		}
		body = enc.add(body, n, ev)
		n++
		total++
		if n == batch {
			if !send() {
				return false
			}
			if now := time.Now(); now.Sub(lastReport) >= progressEvery {
				lastReport = now
				el := now.Sub(start).Seconds()
				fmt.Fprintf(progress, "kiln-bench: loaded %d of %d events (%.0f%%), %.0f events/s\n",
					total, gen.HistoryLen(), 100*float64(total)/float64(max(gen.HistoryLen(), 1)), float64(total)/el)
			}
		}
		return true
	})
	if n > 0 && ctx.Err() == nil {
		send()
	}
	close(full)
	wg.Wait()
	res.Events = total
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.EventsPerS = float64(res.Accepted+res.DroppedLate) / res.Seconds
	}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// LiveResult describes the live event stream kept up during measurement.
type LiveResult struct {
	Offered     float64 `json:"offered_events_per_second"`
	Sent        int64   `json:"sent"`
	Accepted    int64   `json:"accepted"`
	DroppedLate int64   `json:"dropped_late"`
	Failed      int64   `json:"failed"` // events of pushes that failed
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	Achieved    float64 `json:"achieved_events_per_second"`
	Pushes      int64   `json:"pushes"`
	// PushLatency is the latency of each push (it is answered after its
	// events are durable).
	PushLatency Percentiles `json:"push_latency_ms"`
}

// liveStream pushes live events at a steady rate until stopped.
type liveStream struct {
	cancel context.CancelFunc
	done   chan struct{}
	res    LiveResult
}

// startLive pushes rate events per second to pushURL, every liveTick the
// events due since the last push, stamped with the wall clock. It stops
// on stop (or when ctx ends).
func startLive(ctx context.Context, c *http.Client, pushURL string, gen *workload.Generator, enc *pushEncoder, rate float64) *liveStream {
	ctx, cancel := context.WithCancel(ctx)
	l := &liveStream{cancel: cancel, done: make(chan struct{}), res: LiveResult{Offered: rate}}
	go func() {
		defer close(l.done)
		live := gen.Live(rate)
		hist := NewHistogram()
		var ev event.Event
		var body []byte
		start := time.Now()
		ticker := time.NewTicker(liveTick)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				l.res.Seconds = time.Since(start).Seconds()
				if l.res.Seconds > 0 {
					l.res.Achieved = float64(l.res.Accepted) / l.res.Seconds
				}
				l.res.PushLatency = percentilesOf(hist)
				return
			case <-ticker.C:
			}
			due := int64(math.Floor(time.Since(start).Seconds()*rate)) - l.res.Sent
			if due <= 0 {
				continue
			}
			due = min(due, maxPushEvents)
			body = enc.begin(body)
			now := time.Now()
			for i := range int(due) {
				live.Next(now, &ev)
				body = enc.add(body, i, &ev)
			}
			body = enc.end(body)
			l.res.Sent += due
			var ans pushAnswer
			pctx, pcancel := context.WithTimeout(ctx, pushTimeout)
			t0 := time.Now()
			err := postJSON(pctx, c, pushURL, body, &ans)
			pcancel()
			if err != nil {
				if ctx.Err() != nil {
					l.res.Sent -= due // cut short by stop: not a failure
					continue
				}
				l.res.Failed += due
				if l.res.FirstError == "" {
					l.res.FirstError = err.Error()
				}
				continue
			}
			record(hist, time.Since(t0))
			l.res.Pushes++
			l.res.Accepted += ans.Accepted
			l.res.DroppedLate += ans.DroppedLate
		}
	}()
	return l
}

// stop ends the stream and returns what it did.
func (l *liveStream) stop() LiveResult {
	l.cancel() // the push in flight, if any, ends with the context
	<-l.done
	return l.res
}
