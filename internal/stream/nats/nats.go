// Package nats reads a Kiln source from a NATS JetStream stream through a
// durable pull consumer (github.com/nats-io/nats.go) and applies it through
// package stream.
//
// The stream is the source's one partition: a message's offset is its
// stream sequence, and rows record, per stream, the last sequence they
// applied (stream.StreamID("nats/<stream>")). That is only sound if the
// stream's messages reach stream.Applier.Apply in sequence order with none
// left out that was not applied before, so the consumer is built around
// that order:
//
//   - The durable consumer acknowledges with AckAll, and a batch is acked
//     (its last message) only after Apply returned nil. Its ack floor is
//     therefore always at or below what the rows hold.
//   - JetStream hands messages that were delivered but never acked (a
//     process killed mid-batch) out again only after AckWait, while new
//     pulls get later sequences first: applying those first would make rows
//     pass over the earlier ones when they come back, losing them. So each
//     session starts by looking at the consumer: if messages are delivered
//     but unacked, it is reset to its ack floor (the server's consumer reset
//     API; on a server without it, the consumer is deleted and created again
//     to start at the ack floor + 1, with the same configuration).
//   - Within a session every delivery must be the one after the previous
//     (the consumer's delivery sequence, which counts every delivery the
//     consumer makes). Pull requests name one inbox per session, so every
//     delivery to the session arrives there, in order; a jump means some
//     delivery did not reach this session — another client pulled, or the
//     messages were lost with a connection — so the session ends without
//     applying it and the next one starts from the ack floor.
//   - A message at or below the last one applied in the session (delivered
//     again after AckWait) is passed over; a failed Apply ends the session,
//     unacked.
//
// Only one process may consume a NATS source at a time: JetStream has no
// partitions to split, and two processes pulling from one durable would
// interleave sequences, breaking the order positions rely on. The consumer
// uses the pinned-client priority policy (nats-server 2.11 or later) so that
// a second process stays idle: the server delivers only to the pinned
// client, and pins another only after the pinned one sent no pull request
// for PinnedTTL. A process that stops cleanly unpins at once; one that was
// killed keeps the pin until PinnedTTL has passed, so its successor starts
// consuming up to PinnedTTL later. A session that starts while another
// client holds the pin and has deliveries unacked waits; when it gets the
// pin, or sees it lapse with the deliveries still unacked (they may be all
// the consumer can deliver: MaxAckPending), it starts again from the ack
// floor, as after a crash. Still, run one writing process per NATS source:
// with two, a pin that moves between them (a batch that takes longer than
// PinnedTTL) costs replays.
//
// Offsets are stream sequences, so deleting and recreating a stream (whose
// sequences start again at 1) makes rows pass over its messages up to the
// old stream's last sequence: give the new stream another name.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/stream"
)

// Options configure a Consumer. Source and Applier are required.
type Options struct {
	Source  *definition.Source
	Applier *stream.Applier
	Logger  *slog.Logger
	// MaxBatch bounds a batch (and a pull request). Default 1000, at most
	// 10,000.
	MaxBatch int
	// Retry is the pause before a new session after a failed batch or a
	// lost connection; it doubles up to a minute while sessions fail
	// without applying anything. Default 500ms.
	Retry time.Duration
	// PinnedTTL is how long the server keeps the consumer pinned to a
	// process that sends no pull request (a killed one) before it lets
	// another take over. Default 10s.
	PinnedTTL time.Duration
}

// Consumer settings Kiln relies on.
const (
	// group is the consumer's priority group; pull requests name it.
	group = "kiln"
	// ackWait is how long the server waits for the ack of a delivery
	// before delivering it again. Generous: a session never relies on it.
	ackWait = 5 * time.Minute
	// apiPrefix is the JetStream API subject prefix.
	apiPrefix = "$JS.API."
	// pullGrace is how long after its expiry a pull request may still be
	// answered before the client stops waiting for it.
	pullGrace = 5 * time.Second
)

// Consumer reads one NATS source.
type Consumer struct {
	opts Options
	st   *definition.Stream
	log  *slog.Logger
	id   uint64 // the stream's id in rows' positions
	// idle is how long an idle pull request waits for a message.
	idle time.Duration

	applied bool // a batch has been applied by this Consumer

	// For tests: how many sessions ran and how many times the consumer
	// was reset, and a switch that makes it use the delete-and-create
	// fallback instead.
	sessions   atomic.Int64
	resets     atomic.Int64
	noResetAPI bool
}

// New returns a consumer; Run starts it.
func New(opts Options) (*Consumer, error) {
	if opts.Source == nil || opts.Source.Stream == nil || opts.Source.Stream.Name == "" || opts.Applier == nil {
		return nil, errors.New("nats: Options need a nats Source and an Applier")
	}
	st := opts.Source.Stream
	if st.URL == "" || st.Durable == "" {
		return nil, fmt.Errorf("nats: source %s needs a url and a durable", opts.Source.Name)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	opts.MaxBatch = min(opts.MaxBatch, 10_000)
	if opts.Retry <= 0 {
		opts.Retry = 500 * time.Millisecond
	}
	if opts.PinnedTTL <= 0 {
		opts.PinnedTTL = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Consumer{
		opts: opts, st: st,
		log: opts.Logger.With("source", opts.Source.Name, "stream", st.Name, "durable", st.Durable),
		id:  stream.StreamID("nats/" + st.Name),
		// Pull again well within PinnedTTL, so an idle process keeps its pin.
		idle: max(min(5*time.Second, opts.PinnedTTL/3), 10*time.Millisecond),
	}, nil
}

// restart is a session end that is part of normal operation: the session
// found deliveries it must not build on, and the next one starts from the
// ack floor.
type restart struct{ why string }

func (r *restart) Error() string { return r.why }

// Run consumes until ctx ends, starting a new session after errors. It
// returns nil when ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	wait := c.opts.Retry
	for {
		c.sessions.Add(1)
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			wait = c.opts.Retry
		}
		pause := wait
		var r *restart
		if errors.As(err, &r) {
			c.log.Info("nats consumer restarting from the ack floor", "why", r.why)
			pause = c.opts.Retry
		} else {
			c.log.Warn("nats consumer stopped; restarting from the ack floor", "err", err, "in", wait)
			wait = min(2*wait, time.Minute)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

// session connects, readies the durable consumer and applies what it pulls
// until ctx ends or something fails. progressed says whether it applied a
// batch.
func (c *Consumer) session(ctx context.Context) (progressed bool, err error) {
	access, err := accessOpts(c.st, c.log)
	if err != nil {
		return false, err
	}
	nc, err := natsgo.Connect(c.st.URL, append(access,
		natsgo.Name("kiln source "+c.opts.Source.Name),
		natsgo.MaxReconnects(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				c.log.Warn("nats connection lost", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { c.log.Info("nats connection restored") }),
	)...)
	if err != nil {
		return false, connectError(c.st, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	str, err := js.Stream(ctx, c.st.Name)
	if err != nil {
		return false, fmt.Errorf("JetStream stream %s: %w", c.st.Name, err)
	}
	info, err := c.ready(ctx, str)
	if err != nil {
		return false, err
	}
	// Deliveries can be built on only from a point where none is unacked.
	fromFloor := true
	if unacked(info) {
		if pinned(info) != "" {
			// Another client holds the pin: another process (consuming,
			// so leave it alone) or a killed one (whose pin lapses after
			// PinnedTTL). Wait for the pin; whoever left messages unacked,
			// the session then starts again from the ack floor.
			fromFloor = false
			c.log.Info("the durable has unacked deliveries and is pinned to another client; waiting for the pin",
				"ack_floor", info.AckFloor.Stream, "delivered", info.Delivered.Stream)
		} else if info, err = c.reset(ctx, str); err != nil {
			return false, err
		}
	}
	p, err := newPuller(nc, c.st.Name, c.st.Durable)
	if err != nil {
		return false, err
	}
	defer c.unpin(ctx, str, p)

	next := info.Delivered.Consumer + 1 // the delivery sequence of the next delivery
	var last uint64                     // the last stream sequence applied in this session
	var msgs []stream.Message
	checked := time.Now()
	for {
		batch, err := p.next(ctx, c.opts.MaxBatch, c.idle)
		if err != nil {
			return progressed, err
		}
		if len(batch) == 0 {
			// Nothing to deliver, or nothing for this session. If the
			// consumer has deliveries unacked and no one holds the pin,
			// their holder is gone; they may be all the consumer can
			// deliver (MaxAckPending), so no pin would come this way.
			// Start again from the ack floor.
			if time.Since(checked) >= c.idle {
				checked = time.Now()
				cons, err := str.Consumer(ctx, c.st.Durable)
				if err != nil {
					return progressed, fmt.Errorf("looking up durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
				}
				if info := cons.CachedInfo(); unacked(info) && pinned(info) == "" {
					return progressed, &restart{"the durable has deliveries unacked by a client that no longer holds the pin"}
				}
			}
			continue
		}
		if !fromFloor {
			return progressed, &restart{"this process now holds the pin; the previous holder left deliveries unacked"}
		}
		msgs = msgs[:0]
		var top *natsgo.Msg // the message of the highest stream sequence
		var topMeta *natsgo.MsgMetadata
		for _, m := range batch {
			md, err := m.Metadata()
			if err != nil {
				return progressed, fmt.Errorf("message on %s without JetStream metadata: %w", m.Subject, err)
			}
			if md.Sequence.Consumer != next {
				return progressed, &restart{fmt.Sprintf("delivery %d (stream sequence %d) came where %d was expected: deliveries in between did not reach this session",
					md.Sequence.Consumer, md.Sequence.Stream, next)}
			}
			next++
			if topMeta == nil || md.Sequence.Stream > topMeta.Sequence.Stream {
				top, topMeta = m, md
			}
			if md.Sequence.Stream <= last {
				continue // delivered again after AckWait; applied in this session
			}
			msgs = append(msgs, stream.Message{
				Partition: c.st.Name, Stream: c.id, StreamName: "nats/" + c.st.Name, Offset: md.Sequence.Stream,
				Value: m.Data, Time: md.Timestamp,
			})
		}
		// End: the sequence after the last one pending for the consumer,
		// so that lag is what the consumer has yet to deliver.
		end := int64(topMeta.Sequence.Stream + topMeta.NumPending + 1)
		if len(msgs) > 0 {
			if c.applied {
				c.opts.Applier.SetEnd(c.st.Name, end)
			}
			if err := c.opts.Applier.Apply(ctx, msgs); err != nil {
				return progressed, fmt.Errorf("applying %d messages: %w", len(msgs), err)
			}
			last = msgs[len(msgs)-1].Offset
			progressed, c.applied = true, true
		}
		c.opts.Applier.SetEnd(c.st.Name, end)
		if err := ack(ctx, nc, top); err != nil {
			// Not fatal: the next ack covers this one, and what is
			// delivered again is passed over.
			c.log.Warn("acknowledging failed; the messages may be delivered again and passed over", "seq", topMeta.Sequence.Stream, "err", err)
		}
	}
}

// config returns the consumer configuration Kiln creates.
func (c *Consumer) config() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       c.st.Durable,
		Description:   "Kiln source " + c.opts.Source.Name,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
	if c.st.Start == "latest" {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	c.settings(&cfg)
	return cfg
}

// settings sets what Kiln relies on in a consumer's configuration, and
// reports whether that changed cfg.
func (c *Consumer) settings(cfg *jetstream.ConsumerConfig) bool {
	old := *cfg
	cfg.AckPolicy = jetstream.AckAllPolicy
	cfg.AckWait = ackWait
	cfg.MaxDeliver = -1
	cfg.MaxAckPending = 2 * c.opts.MaxBatch
	cfg.FilterSubject, cfg.FilterSubjects = c.st.Subject, nil
	cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
	cfg.PinnedTTL = c.opts.PinnedTTL
	cfg.PriorityGroups = []string{group}
	return cfg.AckPolicy != old.AckPolicy || cfg.AckWait != old.AckWait || cfg.MaxDeliver != old.MaxDeliver ||
		cfg.MaxAckPending != old.MaxAckPending || cfg.FilterSubject != old.FilterSubject || len(old.FilterSubjects) > 0 ||
		cfg.PriorityPolicy != old.PriorityPolicy || cfg.PinnedTTL != old.PinnedTTL ||
		len(old.PriorityGroups) != 1 || old.PriorityGroups[0] != group
}

// ready looks up the durable consumer, creating it (at the configured
// start) if it does not exist and bringing the settings Kiln relies on up
// to date if it does, and returns its info.
func (c *Consumer) ready(ctx context.Context, str jetstream.Stream) (*jetstream.ConsumerInfo, error) {
	cons, err := str.Consumer(ctx, c.st.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = str.CreateConsumer(ctx, c.config())
		if err != nil {
			return nil, fmt.Errorf("creating durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
		}
		c.log.Info("created the durable consumer", "start", c.st.Start)
		return cons.CachedInfo(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
	}
	info := cons.CachedInfo()
	cfg := info.Config
	if cfg.DeliverSubject != "" || cfg.AckPolicy != jetstream.AckAllPolicy {
		return nil, fmt.Errorf("consumer %s of stream %s exists, but is not a pull consumer acknowledging with AckAll (ack policy %s): delete it, or give the source another durable",
			c.st.Durable, c.st.Name, cfg.AckPolicy)
	}
	if c.settings(&cfg) {
		if cons, err = str.UpdateConsumer(ctx, cfg); err != nil {
			return nil, fmt.Errorf("updating durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
		}
		c.log.Info("updated the durable consumer's settings")
		info = cons.CachedInfo()
	}
	return info, nil
}

// reset makes the consumer deliver again from its ack floor + 1, forgetting
// what it delivered past it, and returns its info.
func (c *Consumer) reset(ctx context.Context, str jetstream.Stream) (*jetstream.ConsumerInfo, error) {
	c.resets.Add(1)
	if !c.noResetAPI {
		r, err := str.ResetConsumer(ctx, c.st.Durable)
		if err == nil && r.ConsumerInfo != nil {
			c.log.Info("reset the durable consumer to its ack floor", "from", r.ResetSeq)
			return r.ConsumerInfo, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.log.Warn("the consumer reset API failed (a server before it?); deleting the durable consumer and creating it at its ack floor", "err", err)
	}
	cons, err := str.Consumer(ctx, c.st.Durable)
	if err != nil {
		return nil, fmt.Errorf("looking up durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
	}
	info := cons.CachedInfo()
	cfg := info.Config
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1, nil
	if err := str.DeleteConsumer(ctx, c.st.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("deleting durable consumer %s on stream %s: %w", c.st.Durable, c.st.Name, err)
	}
	if cons, err = str.CreateConsumer(ctx, cfg); err != nil {
		return nil, fmt.Errorf("creating durable consumer %s on stream %s at sequence %d: %w", c.st.Durable, c.st.Name, cfg.OptStartSeq, err)
	}
	c.log.Info("created the durable consumer again at its ack floor", "from", cfg.OptStartSeq)
	return cons.CachedInfo(), nil
}

// unpin releases the pin if this session holds it, so that the next
// session (or another process) need not wait for PinnedTTL.
func (c *Consumer) unpin(ctx context.Context, str jetstream.Stream, p *puller) {
	if p.pin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	cons, err := str.Consumer(ctx, c.st.Durable)
	if err != nil || pinned(cons.CachedInfo()) != p.pin {
		return
	}
	if err := str.UnpinConsumer(ctx, c.st.Durable, group); err != nil {
		c.log.Warn("unpinning the durable consumer failed; another process may take over only after PinnedTTL", "err", err)
	}
}

// unacked reports whether the consumer has delivered messages that are not
// acknowledged.
func unacked(info *jetstream.ConsumerInfo) bool {
	return info.Delivered.Stream > info.AckFloor.Stream || info.NumAckPending > 0
}

// pinned returns the id of the client the consumer is pinned to, or "".
func pinned(info *jetstream.ConsumerInfo) string {
	for _, g := range info.PriorityGroups {
		if g.Group == group {
			return g.PinnedClientID
		}
	}
	return ""
}

// ack acknowledges m and, the consumer acking all, every message before it;
// it waits for the server to confirm. It goes on after ctx ends, briefly:
// the batch is applied, and an ack saves replaying it.
func ack(ctx context.Context, nc *natsgo.Conn, m *natsgo.Msg) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := nc.RequestWithContext(ctx, m.Reply, []byte("+ACK"))
	return err
}

// puller pulls from a consumer on one inbox, a request at a time (a new one
// when the last is fulfilled, expired or given up on), so that every
// delivery comes to the inbox in order and none is made to an inbox no one
// reads.
//
// It speaks the pull protocol itself: nats.go's Fetch takes a new inbox for
// each request and stops reading it on a timer of its own (deliveries after
// that are lost to the session), and FetchNoWait cannot name a priority
// group. A request asks for a whole batch and waits up to idle; next returns
// as soon as messages arrive, taking what has arrived, while the request
// goes on filling the inbox.
type puller struct {
	nc      *natsgo.Conn
	sub     *natsgo.Subscription
	subject string // the consumer's next-message API subject
	inbox   string
	pin     string // the pin id the server gave this session, if any

	open     bool      // a request is outstanding
	left     int       // messages it may still deliver
	deadline time.Time // when to stop waiting for it
	msgs     []*natsgo.Msg
}

// pullRequest is the body of a pull request.
type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires,omitempty"`
	Group   string        `json:"group,omitempty"`
	ID      string        `json:"id,omitempty"`
}

func newPuller(nc *natsgo.Conn, streamName, durable string) (*puller, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	// A batch is held in memory anyway: never drop one of its messages.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	return &puller{nc: nc, sub: sub, inbox: inbox,
		subject: apiPrefix + "CONSUMER.MSG.NEXT." + streamName + "." + durable}, nil
}

// next returns the next messages, at most n: it waits for one (at most
// about idle, when it returns none), then takes those that have arrived
// too. It returns an error when the session cannot go on.
func (p *puller) next(ctx context.Context, n int, idle time.Duration) ([]*natsgo.Msg, error) {
	p.msgs = p.msgs[:0]
	if !p.open {
		body, _ := json.Marshal(pullRequest{Batch: n, Expires: idle, Group: group, ID: p.pin})
		if err := p.nc.PublishRequest(p.subject, p.inbox, body); err != nil {
			return nil, fmt.Errorf("pull request: %w", err)
		}
		p.open, p.left, p.deadline = true, n, time.Now().Add(idle+pullGrace)
	}
	for len(p.msgs) < n {
		var m *natsgo.Msg
		var err error
		if len(p.msgs) == 0 {
			wctx, cancel := context.WithDeadline(ctx, p.deadline)
			m, err = p.sub.NextMsgWithContext(wctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if errors.Is(err, context.DeadlineExceeded) {
					// No answer (a lost connection?): ask again. What
					// the old request may still deliver comes to this
					// inbox too, in order; what the connection lost
					// shows as a gap in the delivery sequence.
					p.open = false
					return nil, nil
				}
				return nil, fmt.Errorf("pulling: %w", err)
			}
		} else if m, err = p.sub.NextMsg(0); err != nil {
			if errors.Is(err, natsgo.ErrTimeout) {
				break // nothing more has arrived
			}
			return nil, fmt.Errorf("pulling: %w", err)
		}
		if m.Reply == "" { // not a delivery (they have an ack subject): a status
			if err := p.status(m.Header.Get("Status"), m.Header.Get("Description")); err != nil {
				return nil, err
			}
			if !p.open {
				break
			}
			continue
		}
		if id := m.Header.Get("Nats-Pin-Id"); id != "" {
			p.pin = id
		}
		p.msgs = append(p.msgs, m)
		if p.left--; p.left == 0 {
			p.open = false
			break
		}
	}
	return p.msgs, nil
}

// status handles a status message about the outstanding request.
func (p *puller) status(code, desc string) error {
	switch code {
	case "100", "": // an idle heartbeat or flow control: not asked for
		return nil
	case "404", "408": // no messages; the request expired
		p.open = false
		return nil
	case "423": // the pin went to another client
		p.open, p.pin = false, ""
		return nil
	case "409":
		if d := strings.ToLower(desc); strings.Contains(d, "batch completed") || strings.Contains(d, "leadership change") {
			p.open = false
			return nil
		}
	}
	return fmt.Errorf("pull request answered %s %s", code, desc)
}

// redact returns url without a password.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = "***@" + rest[at+1:]
	}
	return scheme + "://" + rest
}

// DeadLetters publishes dead letters to a subject through JetStream, one
// message per dead letter: its stream.Line (source, partition, offset,
// reason, broker time and the value, cut at stream.MaxDeadValueBytes). A
// stream must capture the subject: Send fails until one does, and the
// source waits (a dead letter is never dropped). Each message carries a
// Nats-Msg-Id made of source, partition and offset, so a stream's duplicate
// window drops a dead letter sent again after a crash.
type DeadLetters struct {
	nc      *natsgo.Conn
	js      jetstream.JetStream
	subject string
}

// OpenDeadLetters returns a dead-letter sink publishing to the source's
// dead-letter subject on its server, with its credentials and TLS.
func OpenDeadLetters(st *definition.Stream, log *slog.Logger) (*DeadLetters, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	access, err := accessOpts(st, log)
	if err != nil {
		return nil, fmt.Errorf("nats dead letters: %w", err)
	}
	nc, err := natsgo.Connect(st.URL, append(access, natsgo.Name("kiln dead letters"), natsgo.MaxReconnects(-1))...)
	if err != nil {
		return nil, fmt.Errorf("nats dead letters: %w", connectError(st, err))
	}
	subject := st.DeadLetter.Subject
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats dead letters: %w", err)
	}
	return &DeadLetters{nc: nc, js: js, subject: subject}, nil
}

// Send publishes the dead letters and waits for the stream to store them.
func (d *DeadLetters) Send(ctx context.Context, dead []stream.Dead) error {
	const inFlight = 256
	futures := make([]jetstream.PubAckFuture, 0, min(len(dead), inFlight))
	for len(dead) > 0 {
		futures = futures[:0]
		for _, x := range dead[:min(len(dead), inFlight)] {
			m := natsgo.NewMsg(d.subject)
			m.Data = stream.Line(x)
			m.Header.Set(natsgo.MsgIdHdr, x.Source+"/"+x.Partition+"/"+strconv.FormatUint(x.Offset, 10))
			f, err := d.js.PublishMsgAsync(m)
			if err != nil {
				return fmt.Errorf("publishing dead letters to %s: %w", d.subject, err)
			}
			futures = append(futures, f)
		}
		dead = dead[len(futures):]
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("publishing dead letters to %s: %w", d.subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// Close closes the connection.
func (d *DeadLetters) Close() error {
	d.nc.Close()
	return nil
}
