// Package kafka reads a Kiln source from a Kafka topic as a member of a
// consumer group (github.com/twmb/franz-go) and applies it through
// package stream.
//
// The loop is: poll a batch, apply it (decode, dead-letter, push, durable),
// allow a rebalance, poll again; every CommitInterval, commit the offsets of
// what is durable. Offsets are committed only after their batch is durable,
// and the group cannot take a partition away while a batch is between poll
// and durable (franz-go's BlockRebalanceOnPoll); when it takes one, the
// revocation commits what was applied first, so a rebalance hands a
// partition over with its rows flushed and its offset committed. A consumer
// that fails a batch leaves the group and rejoins from the committed
// offsets, as does a process that restarts after a crash; rows pass over
// the events they already applied, by their positions.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/stream"
)

// Options configure a Consumer. Source and Applier are required.
type Options struct {
	Source  *definition.Source
	Applier *stream.Applier
	Logger  *slog.Logger
	// MaxPollRecords bounds a batch: the records one poll hands to the
	// Applier, applied and made durable together. A batch writes each row
	// it touches once, so while the consumer is behind (a backlog, a
	// restart) large batches write a hot row once for thousands of its
	// events; when it keeps up, polls return what has arrived and batches
	// stay small. Default 200,000 (about 0.6 s of work at 300,000 events/s,
	// and a few tens of MB of decoded events).
	MaxPollRecords int
	// Retry is the pause before rejoining after a failed batch or a lost
	// connection; it doubles up to a minute. Default 500ms.
	Retry time.Duration
	// SessionTimeout is the group session timeout: how long the group
	// waits for a member that stopped heartbeating (a killed process)
	// before giving its partitions to others. Default franz-go's, 45s.
	SessionTimeout time.Duration
	// CommitInterval is how often applied offsets are committed. A crash
	// replays at most about this much (passed over by the rows). Default 1s.
	CommitInterval time.Duration
}

// Consumer is one member of the source's consumer group.
type Consumer struct {
	opts Options
	st   *definition.Stream
	log  *slog.Logger
}

// New returns a consumer; Run starts it.
func New(opts Options) (*Consumer, error) {
	if opts.Source == nil || opts.Source.Stream == nil || opts.Applier == nil {
		return nil, errors.New("kafka: Options need a kafka Source and an Applier")
	}
	if opts.MaxPollRecords <= 0 {
		opts.MaxPollRecords = 200_000
	}
	if opts.Retry <= 0 {
		opts.Retry = 500 * time.Millisecond
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Consumer{opts: opts, st: opts.Source.Stream,
		log: opts.Logger.With("source", opts.Source.Name, "topic", opts.Source.Stream.Topic)}, nil
}

// Run consumes until ctx ends, rejoining the group after errors. It returns
// nil when ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	wait := c.opts.Retry
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("kafka consumer stopped; rejoining from the committed offsets", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// session is one membership of the group: it polls, applies and commits
// until ctx ends or a batch fails.
func (c *Consumer) session(ctx context.Context) error {
	start := kgo.NewOffset().AtStart()
	if c.st.Start == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	applied := &appliedOffsets{}
	opts, err := accessOpts(c.st, c.log)
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumerGroup(c.st.Group),
		kgo.ConsumeTopics(c.st.Topic),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			c.log.Info("partitions assigned", "partitions", m[c.st.Topic])
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// Rebalances wait for AllowRebalance, which comes once a batch
			// is durable: nothing is in flight. Commit it before the
			// partitions go.
			c.log.Info("partitions revoked", "partitions", m[c.st.Topic])
			applied.commit(ctx, cl, c.log)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			c.log.Warn("partitions lost (the group moved on without this member)", "partitions", m[c.st.Topic])
			applied.drop(m[c.st.Topic])
		}),
	)
	if c.opts.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(c.opts.SessionTimeout),
			kgo.HeartbeatInterval(max(c.opts.SessionTimeout/10, 100*time.Millisecond)))
	}
	if n := c.st.MaxMessageBytes; n > 0 {
		// Fetch at least one whole message of the largest size accepted.
		opts = append(opts, kgo.FetchMaxPartitionBytes(int32(max(n+1024, 1<<20))))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", c.st.Brokers, err)
	}
	if err := cl.Ping(ctx); err != nil && ctx.Err() == nil {
		cl.Close()
		if explained := accessError(err); explained != nil {
			return explained
		}
		return fmt.Errorf("reaching the brokers %v: %w%s", c.st.Brokers, err, hangUpHint(c.st, err))
	}
	defer func() {
		// Commit what is durable, then leave the group.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		applied.commit(ctx, cl, c.log)
		cancel()
		cl.Close()
	}()

	var msgs []stream.Message
	last := time.Now()
	names := map[int32]string{}
	ids := map[int32]uint64{}
	for {
		fetches := cl.PollRecords(ctx, c.opts.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			return ctx.Err()
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if explained := accessError(err); explained != nil {
				// Retrying at once will not help: end the session, and
				// try again after the pause, saying what to check.
				if fetchErr == nil {
					fetchErr = explained
				}
				return
			}
			c.log.Warn("kafka fetch error", "partition", p, "err", err)
			if fetchErr == nil && !kgoRetryable(err) {
				fetchErr = fmt.Errorf("fetching %s/%d: %w", topic, p, err)
			}
		})
		if fetchErr != nil {
			cl.AllowRebalance()
			return fetchErr
		}
		msgs = msgs[:0]
		var recs []*kgo.Record
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			name, ok := names[p.Partition]
			if !ok {
				name = c.st.Topic + "/" + strconv.Itoa(int(p.Partition))
				names[p.Partition] = name
				ids[p.Partition] = stream.StreamID("kafka/" + name)
			}
			c.opts.Applier.SetEnd(name, p.HighWatermark)
			for _, r := range p.Records {
				msgs = append(msgs, stream.Message{
					Partition: name, Stream: ids[p.Partition], StreamName: "kafka/" + name, Offset: uint64(r.Offset),
					Value: r.Value, Time: r.Timestamp,
				})
				recs = append(recs, r)
			}
		})
		if len(msgs) == 0 {
			cl.AllowRebalance()
			continue
		}
		if err := c.opts.Applier.Apply(ctx, msgs); err != nil {
			cl.AllowRebalance()
			return fmt.Errorf("applying %d messages: %w", len(msgs), err)
		}
		applied.add(recs)
		if time.Since(last) >= c.opts.CommitInterval {
			applied.commit(ctx, cl, c.log)
			last = time.Now()
		}
		cl.AllowRebalance()
	}
}

// appliedOffsets holds the last durable record of each partition, not yet
// committed.
type appliedOffsets struct {
	mu   sync.Mutex
	last map[int32]*kgo.Record
}

func (a *appliedOffsets) add(recs []*kgo.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[int32]*kgo.Record{}
	}
	for _, r := range recs {
		if prev := a.last[r.Partition]; prev == nil || r.Offset > prev.Offset {
			a.last[r.Partition] = r
		}
	}
}

// commit commits the held offsets. A failure is not fatal: the rows hold
// their positions, so whoever reads these offsets again passes over them.
func (a *appliedOffsets) commit(ctx context.Context, cl *kgo.Client, log *slog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.last) == 0 {
		return
	}
	recs := make([]*kgo.Record, 0, len(a.last))
	for _, r := range a.last {
		recs = append(recs, r)
	}
	if err := cl.CommitRecords(ctx, recs...); err != nil {
		log.Warn("committing offsets failed; they will be read again and passed over", "err", err)
	}
	clear(a.last)
}

// drop forgets the held offsets of partitions that were lost: committing
// them now could move back offsets the new owner committed.
func (a *appliedOffsets) drop(partitions []int32) {
	a.mu.Lock()
	for _, p := range partitions {
		delete(a.last, p)
	}
	a.mu.Unlock()
}

// kgoRetryable reports whether the session can go on after a fetch error:
// franz-go retries connection problems and retriable broker errors itself;
// a broker error it cannot retry (such as not being authorized for the
// topic) ends the session.
func kgoRetryable(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return true
}

// DeadLetters sends dead letters to a Kafka topic: the message value as read
// (cut at stream.MaxDeadValueBytes), with headers kiln-source,
// kiln-partition, kiln-offset and kiln-reason.
type DeadLetters struct {
	cl    *kgo.Client
	topic string
}

// OpenDeadLetters returns a dead-letter sink producing to the source's
// dead-letter topic, through its brokers, TLS and SASL.
func OpenDeadLetters(st *definition.Stream, log *slog.Logger) (*DeadLetters, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := accessOpts(st, log)
	if err != nil {
		return nil, fmt.Errorf("kafka dead-letter producer: %w", err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation(), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka dead-letter producer for %v: %w", st.Brokers, err)
	}
	return &DeadLetters{cl: cl, topic: st.DeadLetter.Topic}, nil
}

// Send produces the dead letters and waits for the broker to take them.
func (d *DeadLetters) Send(ctx context.Context, dead []stream.Dead) error {
	recs := make([]*kgo.Record, len(dead))
	for i, x := range dead {
		v := x.Value
		hs := []kgo.RecordHeader{
			{Key: "kiln-source", Value: []byte(x.Source)},
			{Key: "kiln-partition", Value: []byte(x.Partition)},
			{Key: "kiln-offset", Value: strconv.AppendUint(nil, x.Offset, 10)},
			{Key: "kiln-reason", Value: []byte(x.Reason)},
		}
		if len(v) > stream.MaxDeadValueBytes {
			v = v[:stream.MaxDeadValueBytes]
			hs = append(hs, kgo.RecordHeader{Key: "kiln-truncated-from", Value: strconv.AppendInt(nil, int64(len(x.Value)), 10)})
		}
		recs[i] = &kgo.Record{Topic: d.topic, Value: append([]byte(nil), v...), Headers: hs}
	}
	if err := d.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing to dead-letter topic %s: %w", d.topic, err)
	}
	return nil
}

// Close closes the producer.
func (d *DeadLetters) Close() error { d.cl.Close(); return nil }
