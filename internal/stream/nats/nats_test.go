package nats

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
)

// projectYAML is the test project; %s are the server URL and the features
// of the view (an all-time count or not: with one, no event is too old).
const projectYAML = `
project: t
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: nats
    event_time: ts
    max_future_skew: 1m
    fields: {user_id: int64, kind: string, x: float64}
    url: %s
    stream: CLICKS
    subject: "clicks.>"
    durable: kiln-test
    max_message_bytes: 200
views:
  by_user:
    entity: user
    source: clicks
    features:
%s
`

const (
	allTimeFeatures = "      n: {agg: count, windows: [1h]}\n      total: {agg: count}\n"
	windowFeatures  = "      n: {agg: count, windows: [1h]}\n"
	deadSubject     = "dead.clicks"
	users           = 7
)

// now is the writer's clock.
var now = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// testStore is a store whose writes can be made to fail or to block.
type testStore struct {
	store.Store
	writes atomic.Int64

	mu      sync.Mutex
	failAt  int64         // fail the write of this number (counted from 1)
	holdAt  int64         // block the write of this number
	reached chan struct{} // closed when that write blocks
	release chan struct{} // closed to let it go on
}

func (s *testStore) Write(ctx context.Context, batch []store.KV) error {
	n := s.writes.Add(1)
	s.mu.Lock()
	hold, fail := s.holdAt == n, s.failAt == n
	reached, release := s.reached, s.release
	s.mu.Unlock()
	if hold {
		close(reached)
		<-release
	}
	if fail {
		return errors.New("test: write failed")
	}
	return s.Store.Write(ctx, batch)
}

// holdWrite makes the n-th write from now block until release is called;
// reached is closed when it blocks.
func (s *testStore) holdWrite(n int64) (reached chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdAt = s.writes.Load() + n
	s.reached, s.release = make(chan struct{}), make(chan struct{})
	return s.reached, sync.OnceFunc(func() { close(s.release) })
}

// failWrite makes the n-th write from now fail, and returns a function
// reporting whether it has.
func (s *testStore) failWrite(n int64) (failed func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt = s.writes.Load() + n
	at := s.failAt
	return func() bool { return s.writes.Load() >= at }
}

type fixture struct {
	t       *testing.T
	url     string
	project *definition.Project
	src     *definition.Source
	plans   map[*definition.View]*tile.Plan
	store   *testStore
	pl      *ingest.Writer
	dec     *eventjson.Decoder
	js      jetstream.JetStream

	allTime bool // the view has an all-time count
	// the reference: events per user in the last hour and of all time
	n1h, total map[int64]int64
	published  int
}

func newFixture(t *testing.T, features string) *fixture {
	t.Helper()
	_, url := brokertest.NATS(t)
	p, plans := kilntest.Compile(t, "test.yaml", fmt.Appendf(nil, projectYAML, url, features))
	st := &testStore{Store: kilntest.MemStore(t)}
	pl, err := ingest.New(p, plans, st, ingest.Options{Partitions: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	js := brokertest.JetStream(t, url, "CLICKS", "clicks.>")
	return &fixture{
		t: t, url: url, project: p, src: p.Source("clicks"), plans: plans, store: st, pl: pl,
		dec: eventjson.NewDecoder(p), js: js,
		n1h: map[int64]int64{}, total: map[int64]int64{}, allTime: features == allTimeFeatures,
	}
}

// applier returns an Applier of the source sending dead letters to a file
// in a temporary directory.
func (f *fixture) applier() *stream.Applier {
	t := f.t
	dead, err := stream.OpenFile(filepath.Join(t.TempDir(), "dead.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	return stream.NewApplier(f.src, f.dec, f.pl, dead, nil)
}

// run starts a consumer; stop cancels it and waits for Run to return.
func (f *fixture) run(opts Options, tweak ...func(*Consumer)) (c *Consumer, stop func()) {
	f.t.Helper()
	opts.Source = f.src
	if opts.Logger == nil && os.Getenv("NATS_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Applier == nil {
		opts.Applier = f.applier()
	}
	if opts.Retry == 0 {
		opts.Retry = 10 * time.Millisecond
	}
	c, err := New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fn := range tweak {
		fn(c)
	}
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	t.Cleanup(stop)
	return c, stop
}

// publishRaw publishes one message on the source's stream and returns its
// sequence.
func (f *fixture) publishRaw(subject string, data []byte) uint64 {
	f.t.Helper()
	ack, err := f.js.Publish(f.t.Context(), subject, data)
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

// publish publishes n valid events and adds them to the reference.
func (f *fixture) publish(n int) {
	f.t.Helper()
	for range n {
		i := f.published
		f.published++
		user := int64(i % users)
		age := time.Duration(i%50) * time.Minute
		if i%4 == 0 && f.allTime {
			age = 2 * time.Hour // all time only
		}
		f.publishRaw(fmt.Sprintf("clicks.%d", user), f.event(user, now.Add(-age)))
		if age < time.Hour {
			f.n1h[user]++
		}
		f.total[user]++
	}
}

// publishBurst publishes n valid events at once, without waiting for each
// to be stored before the next.
func (f *fixture) publishBurst(n int) {
	f.t.Helper()
	for range n {
		i := f.published
		f.published++
		user := int64(i % users)
		if _, err := f.js.PublishAsync(fmt.Sprintf("clicks.%d", user), f.event(user, now.Add(-time.Minute))); err != nil {
			f.t.Fatal(err)
		}
		f.n1h[user]++
		f.total[user]++
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		f.t.Fatal("publishing timed out")
	}
}

func (f *fixture) event(user int64, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"user_id": %d, "kind": "view", "x": 1.5, "ts": %d}`, user, ts.UnixMilli())
}

// read evaluates the row of a user at the clock.
func (f *fixture) read(user int64) map[string]int64 {
	f.t.Helper()
	v := f.project.View("by_user")
	plan := f.plans[v]
	row := plan.NewRow()
	found := false
	err := f.pl.Get(context.Background(), [][]byte{tile.AppendKey(nil, "by_user", []event.Value{event.IntValue(user)})},
		func(_ int, value []byte, ok bool) {
			if found = ok; ok {
				if err := plan.DecodeRow(value, row); err != nil {
					f.t.Error(err)
				}
			}
		})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int64{}
	if !found {
		return out
	}
	vals := make([]event.Value, len(plan.Outputs))
	plan.Eval(row, now.UnixMilli(), vals)
	for i, o := range plan.Outputs {
		out[o.Name] = vals[i].Int
	}
	return out
}

// counted reports whether every row holds the reference counts.
func (f *fixture) counted() (bool, string) {
	var diffs []string
	for u := range int64(users) {
		r := f.read(u)
		if r["by_user:n_1h"] != f.n1h[u] {
			diffs = append(diffs, fmt.Sprintf("user %d: n_1h %d, want %d", u, r["by_user:n_1h"], f.n1h[u]))
		}
		if f.allTime && r["by_user:total"] != f.total[u] {
			diffs = append(diffs, fmt.Sprintf("user %d: total %d, want %d", u, r["by_user:total"], f.total[u]))
		}
	}
	return len(diffs) == 0, strings.Join(diffs, "; ")
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCounted waits until the rows hold the reference counts, the durable
// has acked everything published, and a reports no lag.
func (f *fixture) waitCounted(what string, a *stream.Applier) {
	f.t.Helper()
	waitFor(f.t, what, func() (bool, string) {
		ok, diff := f.counted()
		cons, err := f.js.Consumer(f.t.Context(), "CLICKS", "kiln-test")
		if err != nil { // being deleted and created again
			return false, err.Error()
		}
		info := cons.CachedInfo()
		s := a.Stats()
		last := f.lastSeq()
		done := ok && info.AckFloor.Stream == last && info.NumAckPending == 0 && s.Lag == 0 &&
			(len(s.Partitions) == 0 || s.Partitions[0].Applied == int64(last))
		return done, fmt.Sprintf("%s; acked to %d (%d pending); stats %+v; stream at %d",
			diff, info.AckFloor.Stream, info.NumAckPending, s.Partitions, last)
	})
}

func (f *fixture) lastSeq() uint64 {
	str, err := f.js.Stream(f.t.Context(), "CLICKS")
	if err != nil {
		f.t.Fatal(err)
	}
	return str.CachedInfo().State.LastSeq
}

func (f *fixture) consumerInfo() *jetstream.ConsumerInfo {
	f.t.Helper()
	cons, err := f.js.Consumer(f.t.Context(), "CLICKS", "kiln-test")
	if err != nil {
		f.t.Fatal(err)
	}
	return cons.CachedInfo()
}

func TestAppliesPublishedEvents(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	f.publish(250) // before the durable exists: start earliest reads them
	a := f.applier()
	c, stop := f.run(Options{Applier: a, MaxBatch: 64})
	f.publish(250)
	f.waitCounted("every event applied", a)
	stop()
	if ok, diff := f.counted(); !ok {
		t.Fatalf("after stopping: %s", diff)
	}
	s := a.Stats()
	if s.Messages != 500 || s.DeadLetters != 0 || s.Lag != 0 || s.Partitions[0].Partition != "CLICKS" || s.Partitions[0].End != 501 {
		t.Fatalf("stats %+v", s)
	}
	if s.Freshness.Count != 500 {
		t.Fatalf("freshness of %d messages, want 500", s.Freshness.Count)
	}
	// One session throughout: no delivery came out of turn, nothing was reset.
	if c.resets.Load() != 0 || c.sessions.Load() != 1 {
		t.Fatalf("%d resets, %d sessions; want 0 and 1", c.resets.Load(), c.sessions.Load())
	}
	info := f.consumerInfo()
	if info.AckFloor.Stream != 500 || info.NumAckPending != 0 {
		t.Fatalf("consumer acked to %d with %d pending, want 500 and 0", info.AckFloor.Stream, info.NumAckPending)
	}
	if cfg := info.Config; cfg.AckPolicy != jetstream.AckAllPolicy || cfg.PriorityPolicy != jetstream.PriorityPolicyPinned ||
		cfg.FilterSubject != "clicks.>" || cfg.MaxAckPending < 64 || cfg.AckWait != ackWait {
		t.Fatalf("consumer config %+v", cfg)
	}
	if st := f.pl.Stats(); st.Replayed != 0 {
		t.Fatalf("%d row updates passed over, want none", st.Replayed)
	}
}

// TestRestartsCountEveryEventOnce stops, fails, crashes and disturbs
// consumers in every way a session can end, one phase after another on one
// stream and store, publishing between them, and checks after each that
// every event is counted exactly once.
func TestRestartsCountEveryEventOnce(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	const ttl = time.Second
	// run starts a consumer as a new process would: with a new Applier.
	run := func(tweak ...func(*Consumer)) (*Consumer, *stream.Applier, func()) {
		a := f.applier()
		c, stop := f.run(Options{Applier: a, MaxBatch: 10, PinnedTTL: ttl}, tweak...)
		return c, a, stop
	}
	// phase runs a subtest with the fixture reporting to it; what it
	// starts stops when it ends.
	phase := func(name string, fn func(t *testing.T)) {
		ok := t.Run(name, func(t *testing.T) {
			parent := f.t
			f.t = t
			defer func() { f.t = parent }()
			fn(t)
		})
		if !ok {
			t.FailNow()
		}
	}
	unpin := func(t *testing.T) {
		t.Helper()
		str, err := f.js.Stream(t.Context(), "CLICKS")
		if err != nil {
			t.Fatal(err)
		}
		if err := str.UnpinConsumer(t.Context(), "kiln-test", group); err != nil {
			t.Fatal(err)
		}
	}
	// fetchUnacked pulls n messages from the durable, as a process
	// killed mid-batch would have, and never acks them. It takes the pin.
	fetchUnacked := func(t *testing.T, n int) {
		t.Helper()
		cons, err := f.js.Consumer(t.Context(), "CLICKS", "kiln-test")
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(n, jetstream.FetchPriorityGroup(group), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for range batch.Messages() {
			got++
		}
		if err := batch.Error(); err != nil || got != n {
			t.Fatalf("fetched %d of %d messages: %v", got, n, err)
		}
		if info := f.consumerInfo(); info.NumAckPending < n || pinned(info) == "" {
			t.Fatalf("after the unacked fetch: %d pending, pin %q", info.NumAckPending, pinned(info))
		}
	}
	// blockApply holds the consumer's next batch in its write until
	// release, once the consumer has no pull request outstanding.
	blockApply := func(t *testing.T) (release func()) {
		t.Helper()
		reached, release := f.store.holdWrite(1)
		f.publish(1)
		select {
		case <-reached:
		case <-time.After(30 * time.Second):
			t.Fatal("the consumer did not apply")
		}
		waitFor(t, "the pull request answered", func() (bool, string) {
			info := f.consumerInfo()
			return info.NumWaiting == 0, fmt.Sprintf("%d waiting", info.NumWaiting)
		})
		return release
	}

	phase("stop mid-way and restart", func(t *testing.T) {
		f.publish(300)
		_, a, stop := run()
		waitFor(t, "some progress", func() (bool, string) { return a.Stats().Messages > 0, "" })
		stop()
		_, a, _ = run()
		f.waitCounted("the rest after a restart", a)
	})

	phase("apply fails with part of a batch written", func(t *testing.T) {
		c, a, _ := run()
		f.waitCounted("caught up", a)
		sessions, resets := c.sessions.Load(), c.resets.Load()
		// Fail the next write. Three partitions: a batch's push writes up
		// to three batches of rows; when the failed one is one of several,
		// the others land, and the session ends unacked. The next session
		// starts from the ack floor and passes over what landed. Which rows
		// a batch holds is up to timing: go on until a batch was partly
		// written.
		for round := 0; ; round++ {
			if round == 20 {
				t.Fatal("no failed batch was partly written in 20 rounds")
			}
			replayed := f.pl.Stats().Replayed
			failed := f.store.failWrite(1)
			f.publishBurst(30)
			f.waitCounted("every event once after a failed apply", a)
			if !failed() {
				t.Fatal("no write failed")
			}
			if f.pl.Stats().Replayed > replayed {
				break
			}
		}
		if c.sessions.Load() == sessions || c.resets.Load() == resets {
			t.Fatalf("%d sessions, %d resets: the failed batch did not end the session", c.sessions.Load(), c.resets.Load())
		}
	})

	phase("killed with deliveries unacked, pin lapsed", func(t *testing.T) {
		f.publish(50)
		fetchUnacked(t, 20)
		unpin(t) // as it would after PinnedTTL
		c, a, _ := run()
		f.publish(50)
		f.waitCounted("every event once after a crash", a)
		if c.resets.Load() != 1 || c.sessions.Load() != 1 {
			t.Fatalf("%d resets, %d sessions; want 1 reset, at the start", c.resets.Load(), c.sessions.Load())
		}
	})

	// A process killed with deliveries unacked keeps the pin for
	// PinnedTTL. With fewer unacked than MaxAckPending, the next process
	// gets the pin when it lapses, and starts again from the ack floor.
	// With MaxAckPending unacked, the consumer has nothing to deliver (so
	// no pin to give): the next process sees the pin lapse and starts
	// again from the ack floor.
	for _, unacked := range []int{5, 20} {
		phase(fmt.Sprintf("killed with %d deliveries unacked, pin held", unacked), func(t *testing.T) {
			f.publish(50)
			fetchUnacked(t, unacked)
			c, a, _ := run()
			f.publish(50)
			f.waitCounted("every event once after a crash", a)
			if c.resets.Load() != 1 || c.sessions.Load() != 2 {
				t.Fatalf("%d resets, %d sessions; want 1 reset, in the second session", c.resets.Load(), c.sessions.Load())
			}
		})
	}

	phase("another client pulls during a session", func(t *testing.T) {
		c, a, _ := run()
		f.waitCounted("caught up", a)
		sessions := c.sessions.Load()
		// Hold the consumer in a batch, take its pin away and let another
		// client take deliveries and keep them unacked: the session must
		// not apply what comes after them.
		release := blockApply(t)
		defer release()
		unpin(t)
		cons, err := f.js.Consumer(t.Context(), "CLICKS", "kiln-test")
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(5, jetstream.FetchPriorityGroup(group), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		f.publish(40)
		got := 0
		for range batch.Messages() {
			got++
		}
		if got != 5 {
			t.Fatalf("the other client got %d messages, want 5", got)
		}
		release()
		f.waitCounted("every event once after another client pulled", a)
		if c.sessions.Load() == sessions {
			t.Fatal("the session went on after deliveries it did not see")
		}
	})

	phase("without the reset API", func(t *testing.T) {
		f.publish(30)
		fetchUnacked(t, 10)
		unpin(t)
		c, a, _ := run(func(c *Consumer) { c.noResetAPI = true })
		f.publish(30)
		f.waitCounted("every event once after deleting and creating the consumer", a)
		info := f.consumerInfo()
		if info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || c.resets.Load() != 1 {
			t.Fatalf("deliver policy %v, %d resets; want by start sequence, 1", info.Config.DeliverPolicy, c.resets.Load())
		}
	})

	if ok, diff := f.counted(); !ok {
		t.Fatalf("at the end: %s", diff)
	}
}

// TestSecondProcessStaysIdle runs two consumers of one source, as two
// processes would: the pinned one applies everything, the other waits, and
// takes over when the first stops.
func TestSecondProcessStaysIdle(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	a1, a2 := f.applier(), f.applier()
	_, stop1 := f.run(Options{Applier: a1, MaxBatch: 16})
	_, stop2 := f.run(Options{Applier: a2, MaxBatch: 16})
	f.publish(200)
	waitFor(t, "every event applied", func() (bool, string) {
		ok, diff := f.counted()
		return ok && a1.Stats().Messages+a2.Stats().Messages >= 200, diff
	})
	m1, m2 := a1.Stats().Messages, a2.Stats().Messages
	if m1 != 0 && m2 != 0 {
		t.Fatalf("both consumers applied messages: %d and %d", m1, m2)
	}
	active, idle, stopActive := a1, a2, stop1
	if m1 == 0 {
		active, idle, stopActive = a2, a1, stop2
	}
	if s := active.Stats(); s.Messages != 200 {
		t.Fatalf("the active consumer applied %d messages, want 200", s.Messages)
	}
	stopActive()
	f.publish(100)
	f.waitCounted("the second consumer taking over", idle)
	if n := active.Stats().Messages; n != 200 {
		t.Fatalf("the stopped consumer applied %d messages after it stopped", n-200)
	}
}

// poison is a message that must become a dead letter, with a piece of its
// reason.
type poison struct {
	value  string
	reason string
}

func poisons() []poison {
	ts := now.Add(-time.Minute).UnixMilli()
	return []poison{
		{`{"user_id": 1, "kind": "view"`, "malformed JSON"},
		{``, "malformed JSON"},
		{fmt.Sprintf(`{"kind": "view", "x": 1, "ts": %d}`, ts), `missing: it is a key field`},
		{fmt.Sprintf(`{"user_id": "seven", "kind": "view", "x": 1, "ts": %d}`, ts), `"seven" is not an int64`},
		{fmt.Sprintf(`{"user_id": 1, "kind": "view", "x": "NaN", "ts": %d}`, ts), `"NaN" is not a float64`},
		{fmt.Sprintf(`{"user_id": 1, "kind": "view", "x": 1e999, "ts": %d}`, ts), `not a finite float64`},
		{fmt.Sprintf(`{"user_id": 1, "kind": "view", "x": 1, "ts": %d}`, now.Add(time.Hour).UnixMilli()), "ahead of the server clock"},
		{fmt.Sprintf(`{"user_id": 1, "kind": "view", "x": 1, "ts": %d}`, now.Add(-48*time.Hour).UnixMilli()), "older than the retention"},
		{fmt.Sprintf(`{"user_id": 1, "kind": "%s", "x": 1, "ts": %d}`, strings.Repeat("v", 300), ts), "larger than max_message_bytes (200)"},
	}
}

// deadLine is a dead letter as read back.
type deadLine struct {
	Source    string `json:"source"`
	Partition string `json:"partition"`
	Offset    uint64 `json:"offset"`
	Reason    string `json:"reason"`
	Value     string `json:"value"`
}

func TestPoisonMessagesGoToDeadLetters(t *testing.T) {
	for _, sink := range []string{"file", "subject"} {
		t.Run(sink, func(t *testing.T) {
			f := newFixture(t, windowFeatures)
			var dead stream.DeadLetters
			var readBack func() []deadLine
			if sink == "file" {
				path := filepath.Join(t.TempDir(), "dead", "clicks.jsonl")
				fd, err := stream.OpenFile(path)
				if err != nil {
					t.Fatal(err)
				}
				dead = fd
				readBack = func() []deadLine { return readFile(t, path) }
			} else {
				d, err := OpenDeadLetters(&definition.Stream{URL: f.url, DeadLetter: definition.DeadLetter{Subject: deadSubject}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				dead = d
				readBack = func() []deadLine { return readStream(t, f.js) }
			}
			t.Cleanup(func() { dead.Close() })
			a := stream.NewApplier(f.src, f.dec, f.pl, dead, nil)
			c, _ := f.run(Options{Applier: a, MaxBatch: 5})

			want := map[uint64]poison{}
			for i, p := range poisons() {
				f.publish(3)
				want[f.publishRaw(fmt.Sprintf("clicks.%d", i), []byte(p.value))] = p
			}
			f.publish(3)
			if sink == "subject" {
				// No stream captures the dead-letter subject yet: the
				// source must wait (and not ack) rather than drop a dead
				// letter.
				waitFor(t, "the source failing to send dead letters", func() (bool, string) {
					return c.sessions.Load() >= 3, fmt.Sprintf("%d sessions", c.sessions.Load())
				})
				if s := a.Stats(); s.DeadLetters != 0 {
					t.Fatalf("%d dead letters counted with no stream to keep them", s.DeadLetters)
				}
				if _, err := f.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "DEAD", Subjects: []string{deadSubject}}); err != nil {
					t.Fatal(err)
				}
			}
			f.waitCounted("the good messages applied", a)

			s := a.Stats()
			if len(s.Partitions) != 1 || s.Partitions[0].DeadLetters != int64(len(want)) || s.DeadLetters != int64(len(want)) {
				t.Fatalf("stats %+v, want %d dead letters", s, len(want))
			}
			if s.Messages != int64(f.lastSeq()) || s.Lag != 0 {
				t.Fatalf("stats %+v, want %d messages and no lag", s, f.lastSeq())
			}
			got := readBack()
			seen := map[uint64]bool{}
			for _, d := range got {
				p, ok := want[d.Offset]
				if !ok {
					t.Errorf("dead letter of offset %d, which was a good message: %+v", d.Offset, d)
					continue
				}
				seen[d.Offset] = true
				if d.Source != "clicks" || d.Partition != "CLICKS" || !strings.Contains(d.Reason, p.reason) || d.Value != p.value {
					t.Errorf("dead letter %+v, want reason with %q and value %q", d, p.reason, p.value)
				}
			}
			if len(seen) != len(want) {
				t.Fatalf("%d of %d poison messages in the dead letters: %+v", len(seen), len(want), got)
			}
		})
	}
}

func readFile(t *testing.T, path string) []deadLine {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	var out []deadLine
	sc := bufio.NewScanner(fd)
	for sc.Scan() {
		var d deadLine
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readStream reads the dead letters back from the stream that captures
// their subject.
func readStream(t *testing.T, js jetstream.JetStream) []deadLine {
	t.Helper()
	str, err := js.Stream(t.Context(), "DEAD")
	if err != nil {
		t.Fatal(err)
	}
	var out []deadLine
	for seq := uint64(1); seq <= str.CachedInfo().State.LastSeq; seq++ {
		m, err := str.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var d deadLine
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatalf("dead letter %q: %v", m.Data, err)
		}
		if id := m.Header.Get(natsgo.MsgIdHdr); id != fmt.Sprintf("clicks/CLICKS/%d", d.Offset) {
			t.Errorf("dead letter of offset %d has message id %q", d.Offset, id)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}

func TestLag(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	const n = 100
	f.publish(n)
	// Let the first batch through and hold the second one's write.
	reached, release := f.store.holdWrite(2)
	defer release()
	// One partition, so that a batch is one write.
	pl, err := ingest.New(f.project, f.plans, f.store, ingest.Options{Partitions: 1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	f.pl = pl
	a := f.applier()
	f.run(Options{Applier: a, MaxBatch: 10})
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the second batch was not written")
	}
	s := a.Stats()
	if len(s.Partitions) != 1 {
		t.Fatalf("stats %+v", s)
	}
	p := s.Partitions[0]
	if p.Messages < 1 || p.Messages > 10 || p.Applied != p.Messages || p.End != n+1 || s.Lag != n-p.Messages {
		t.Fatalf("after the first batch: %+v, lag %d; want lag %d", p, s.Lag, n-p.Messages)
	}
	release()
	f.waitCounted("every event applied", a)
	if s := a.Stats(); s.Lag != 0 || s.Partitions[0].End != n+1 || s.Partitions[0].Applied != n {
		t.Fatalf("at the end: %+v", s.Partitions)
	}
}

// TestExistingDurable runs the consumer on a durable made by someone else:
// one it can bring up to date, then one it must not use.
func TestExistingDurable(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	f.publish(40)
	if _, err := f.js.CreateConsumer(t.Context(), "CLICKS", jetstream.ConsumerConfig{
		Durable: "kiln-test", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 3, MaxDeliver: 2,
	}); err != nil {
		t.Fatal(err)
	}
	a := f.applier()
	_, stop := f.run(Options{Applier: a, MaxBatch: 8})
	f.waitCounted("every event applied", a)
	stop()
	cfg := f.consumerInfo().Config
	if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || cfg.FilterSubject != "clicks.>" || cfg.MaxAckPending != 16 ||
		cfg.MaxDeliver != -1 || cfg.AckWait != ackWait || cfg.PinnedTTL != 10*time.Second || cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Fatalf("the durable was not brought up to date: %+v", cfg)
	}

	if err := f.js.DeleteConsumer(t.Context(), "CLICKS", "kiln-test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.CreateConsumer(t.Context(), "CLICKS", jetstream.ConsumerConfig{
		Durable: "kiln-test", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Source: f.src, Applier: f.applier()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.session(t.Context()); err == nil || !strings.Contains(err.Error(), "AckAll") {
		t.Fatalf("a session on a durable acking explicitly: %v", err)
	}
}

// TestStartLatest reads only what is published after the durable is made.
func TestStartLatest(t *testing.T) {
	f := newFixture(t, allTimeFeatures)
	f.src.Stream.Start = "latest"
	for range 20 {
		f.publishRaw("clicks.1", f.event(1, now))
	}
	a := f.applier()
	f.run(Options{Applier: a})
	waitFor(t, "the durable", func() (bool, string) {
		_, err := f.js.Consumer(t.Context(), "CLICKS", "kiln-test")
		return err == nil, fmt.Sprint(err)
	})
	f.publish(30)
	f.waitCounted("what came after the durable", a)
	if s := a.Stats(); s.Messages != 30 {
		t.Fatalf("applied %d messages, want 30", s.Messages)
	}
}

func TestNewNeedsANATSSource(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a source succeeded")
	}
}
