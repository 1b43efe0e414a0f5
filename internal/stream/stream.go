// Package stream applies messages read from streaming sources (Kafka topics,
// NATS JetStream streams) to the write path. It is the part the sources
// share with each other and with the push API: each message is decoded and
// validated by the push API's decoder, a message that cannot be applied goes
// to a dead-letter destination with the reason, and the rest are pushed into
// the ingest writer carrying their origin (stream and offset), so that a
// row passes over what it has applied before. It also keeps each source
// partition's lag and freshness.
//
// The broker-specific consumers live in stream/kafka and stream/nats. Each
// reads a batch, hands it to Applier.Apply, and only when Apply returns nil
// commits its position (a Kafka offset commit, a JetStream ack). After an
// error it resumes from the last committed position: the replay is passed
// over row by row, so no event counts twice and none is lost. See
// docs/ingestion.md for the whole argument.
package stream

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/cespare/xxhash/v2"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
)

// Message is one message read from one partition of a source.
type Message struct {
	// Partition names the source partition, for stats and dead letters
	// ("topic/3"; the stream name for JetStream).
	Partition string
	// Stream identifies the partition in rows' positions: StreamID of a
	// name unique to it.
	Stream uint64
	// StreamName is the name Stream is the StreamID of ("kafka/<topic>/<partition>",
	// "nats/<stream>"); the event archive records it as the event's origin.
	StreamName string
	// Offset is the message's position in the partition; it grows along
	// the partition.
	Offset uint64
	// Value is the encoded event. It is not retained after Apply returns.
	Value []byte
	// Time is when the broker took the message (the produce time), for
	// freshness; zero if unknown.
	Time time.Time
}

// StreamID returns the stream id of a source partition named name (for
// example "kafka/<topic>/<partition>"): a 64-bit hash, never 0.
func StreamID(name string) uint64 {
	id := xxhash.Sum64String(name)
	if id == 0 {
		id = 1
	}
	return id
}

// Decoder turns one message value into an event of a source. The "json"
// format is *eventjson.Decoder (the push API's decoder, one event object per
// message); another format plugs in here. DecodeEvent resets ev (whose
// Fields have one slot per source field) and returns an error saying what is
// wrong with the message, which becomes its dead letter's reason.
type Decoder interface {
	DecodeEvent(src *definition.Source, raw []byte, now int64, ev *event.Event) error
}

// Formats are the message formats a streaming source may name, and the
// decoder each uses given the project's push decoder.
var Formats = map[string]func(*eventjson.Decoder) Decoder{
	"json": func(d *eventjson.Decoder) Decoder { return d },
}

// pusher is the part of ingest.Writer an Applier uses.
type pusher interface {
	Now() int64
	TooOld(src *definition.Source, ts int64) bool
	Push(ctx context.Context, src *definition.Source, events []event.Event) (ingest.Result, error)
	NameStream(id uint64, name string)
}

// Applier applies batches of messages of one source. One consumer goroutine
// calls Apply at a time; Stats may be called concurrently.
type Applier struct {
	src      *definition.Source
	dec      Decoder
	pl       pusher
	dead     DeadLetters
	maxBytes int
	now      func() time.Time

	events []event.Event
	fields []event.Value
	bad    []Dead
	named  map[uint64]bool // streams named to the pusher

	mu        sync.Mutex
	parts     map[string]*PartitionStats
	byStream  map[uint64]*PartitionStats
	freshness *hdrhistogram.Histogram // µs from Message.Time to durable
}

// NewApplier returns an Applier for the messages of src, pushing into pl and
// sending what it cannot apply to dead. now is the clock freshness is
// measured with (time.Now when nil).
func NewApplier(src *definition.Source, dec Decoder, pl *ingest.Writer, dead DeadLetters, now func() time.Time) *Applier {
	if now == nil {
		now = time.Now
	}
	maxBytes := definition.DefaultMaxMessageBytes
	if src.Stream != nil && src.Stream.MaxMessageBytes > 0 {
		maxBytes = src.Stream.MaxMessageBytes
	}
	return &Applier{
		src: src, dec: dec, pl: pl, dead: dead, maxBytes: maxBytes, now: now,
		named:     map[uint64]bool{},
		parts:     map[string]*PartitionStats{},
		byStream:  map[uint64]*PartitionStats{},
		freshness: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3),
	}
}

// Apply decodes msgs, sends those that cannot be applied to the dead
// letters, and pushes the rest; it returns once all of it is durable. Each
// partition's messages must be in offset order, and a partition's batches
// must come in order too.
//
// On nil, every message of the batch is either applied or a dead letter, and
// the caller may commit past the batch. On an error, any part of it may have
// been applied: the caller must not commit, and must resume from its last
// committed position.
func (a *Applier) Apply(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	nf := len(a.src.Fields)
	if cap(a.fields) < len(msgs)*nf {
		a.fields = make([]event.Value, len(msgs)*nf)
	}
	a.fields = a.fields[:len(msgs)*nf]
	a.events = a.events[:0]
	clear(a.bad)
	a.bad = a.bad[:0]
	now := a.pl.Now()
	for i := range msgs {
		m := &msgs[i]
		if !a.named[m.Stream] && m.StreamName != "" {
			a.pl.NameStream(m.Stream, m.StreamName)
			a.named[m.Stream] = true
		}
		if len(m.Value) > a.maxBytes {
			a.reject(m, fmt.Sprintf("message of %d bytes is larger than max_message_bytes (%d) of source %s", len(m.Value), a.maxBytes, a.src.Name))
			continue
		}
		a.events = append(a.events, event.Event{Fields: a.fields[len(a.events)*nf : (len(a.events)+1)*nf : (len(a.events)+1)*nf]})
		ev := &a.events[len(a.events)-1]
		if err := a.dec.DecodeEvent(a.src, m.Value, now, ev); err != nil {
			a.events = a.events[:len(a.events)-1]
			a.reject(m, reason(err))
			continue
		}
		if a.pl.TooOld(a.src, ev.TS) {
			a.events = a.events[:len(a.events)-1]
			a.reject(m, fmt.Sprintf("event time %s is older than the retention of every view source %s feeds: no window can count it any more",
				time.UnixMilli(ev.TS).UTC().Format(time.RFC3339Nano), a.src.Name))
			continue
		}
		ev.Origin = event.Origin{Stream: m.Stream, Offset: m.Offset}
	}
	// Dead letters first: once the batch is committed past, a message that
	// is in neither a row nor the dead letters would be lost.
	if len(a.bad) > 0 {
		if err := a.dead.Send(ctx, a.bad); err != nil {
			return fmt.Errorf("sending %d dead letters of source %s: %w", len(a.bad), a.src.Name, err)
		}
	}
	if len(a.events) > 0 {
		if _, err := a.pl.Push(ctx, a.src, a.events); err != nil {
			return err
		}
	}
	a.record(msgs)
	return nil
}

// reason words a decoding error for a dead letter: the problems of the
// message, without the push API's "event 0" (a message is one event).
func reason(err error) string {
	var re *eventjson.RequestError
	if !errors.As(err, &re) || len(re.Details) == 0 {
		return err.Error()
	}
	parts := make([]string, len(re.Details))
	for i, d := range re.Details {
		parts[i] = d.Message
		if d.Field != "" {
			parts[i] = fmt.Sprintf("field %q: %s", d.Field, d.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// reject adds m to the batch's dead letters.
func (a *Applier) reject(m *Message, reason string) {
	a.bad = append(a.bad, Dead{
		Source: a.src.Name, Partition: m.Partition, Offset: m.Offset, Reason: reason,
		Value: m.Value, Time: m.Time,
	})
}

// record updates the partitions' stats after a batch is durable.
func (a *Applier) record(msgs []Message) {
	done := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range msgs {
		m := &msgs[i]
		ps := a.partition(m.Partition)
		a.byStream[m.Stream] = ps
		ps.Applied = int64(m.Offset)
		ps.Messages++
		ps.LastApply = done
		if !m.Time.IsZero() {
			_ = a.freshness.RecordValue(max(done.Sub(m.Time).Microseconds(), 1))
		}
	}
	for _, d := range a.bad {
		a.partition(d.Partition).DeadLetters++
	}
	for i := range a.events {
		ev := &a.events[i]
		if ps := a.byStream[ev.Origin.Stream]; ps != nil && ev.TS > ps.LastEventTime {
			ps.LastEventTime = ev.TS
		}
	}
}

func (a *Applier) partition(name string) *PartitionStats {
	ps := a.parts[name]
	if ps == nil {
		ps = &PartitionStats{Partition: name, Applied: -1, End: -1}
		a.parts[name] = ps
	}
	return ps
}

// SetEnd records the end of a partition as the broker last reported it: the
// offset the next message produced will get (a Kafka high watermark; for
// JetStream, the last sequence + 1). Lag is measured against it.
func (a *Applier) SetEnd(partition string, end int64) {
	a.mu.Lock()
	a.partition(partition).End = end
	a.mu.Unlock()
}

// PartitionStats describe how far one source partition has been applied.
type PartitionStats struct {
	Partition string `json:"partition"`
	// Applied is the offset of the last message applied (or sent to the
	// dead letters) by this process; -1 before the first.
	Applied int64 `json:"applied_offset"`
	// End is the partition's end as last reported by the broker; -1 if
	// unknown.
	End int64 `json:"end_offset"`
	// Lag is how many messages are in the partition past Applied: End −
	// Applied − 1, or -1 when either is unknown (as until this process has
	// applied a message of the partition: where its group had committed is
	// not known to it).
	Lag int64 `json:"lag"`
	// LastEventTime is the newest event time (Unix ms) applied.
	LastEventTime int64     `json:"last_event_time_ms"`
	LastApply     time.Time `json:"last_apply"`
	Messages      int64     `json:"messages"`
	DeadLetters   int64     `json:"dead_letters"`
}

// Stats describe a source.
type Stats struct {
	Source     string           `json:"source"`
	Partitions []PartitionStats `json:"partitions"`
	// Lag is the sum of the partitions' known lags.
	Lag         int64 `json:"lag"`
	Messages    int64 `json:"messages"`
	DeadLetters int64 `json:"dead_letters"`
	// Freshness is the time from the broker taking a message to its event
	// being durable and visible to reads, over every message applied.
	Freshness Percentiles `json:"freshness_ms"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// Stats returns the source's stats, partitions sorted by name.
func (a *Applier) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Stats{Source: a.src.Name}
	for _, ps := range a.parts {
		p := *ps
		p.Lag = -1
		if p.End >= 0 && p.Applied >= 0 {
			p.Lag = max(p.End-p.Applied-1, 0)
			s.Lag += p.Lag
		}
		s.Messages += p.Messages
		s.DeadLetters += p.DeadLetters
		s.Partitions = append(s.Partitions, p)
	}
	sort.Slice(s.Partitions, func(i, j int) bool { return s.Partitions[i].Partition < s.Partitions[j].Partition })
	h := a.freshness
	ms := func(us int64) float64 { return float64(us) / 1000 }
	s.Freshness = Percentiles{
		Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
	return s
}
