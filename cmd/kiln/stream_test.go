package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/redistest"
)

// The streaming tests of the Kafka and NATS sources: kiln serve runs as a subprocess consuming
// a topic (or a JetStream stream) while the test produces to it; it is
// killed with SIGKILL at random moments and restarted, and at the end every
// feature of every entity must equal a reference computed from the whole
// event set. Windows are long (24h, 7d) and every event is from the last
// ten minutes, so the reference does not depend on when it is read; dwell
// times are multiples of 1/4, so sums are exact in any order.

const streamViews = `event_time: ts
    fields: {user_id: int64, post_id: int64, kind: string, dwell_ms: float64}
views:
  by_user:
    entity: user
    source: events
    features:
      n:     {agg: count, windows: [24h]}
      views: {agg: count, where: {kind: view}, windows: [24h, 7d]}
      dwell: {agg: sum, field: dwell_ms, windows: [24h]}
      dmax:  {agg: max, field: dwell_ms, windows: [24h]}
  by_post:
    entity: post
    source: events
    features:
      n:     {agg: count, windows: [24h]}
      likes: {agg: count, where: {kind: like}, windows: [24h]}
      dwell: {agg: sum, field: dwell_ms, windows: [24h]}
services:
  all: {views: [by_user, by_post]}
`

const (
	streamUsers = 150
	streamPosts = 60
)

// streamMsg is one message of the test stream: a good event or poison.
type streamMsg struct {
	user, post int64
	kind       string
	dwell      float64
	ts         int64
	raw        []byte // the message; poison when good is false
	good       bool
}

// streamEvents returns n messages, every 997th poison of one kind or
// another, the rest RW1-like events of the last ten minutes before now.
func streamEvents(n int, seed uint64, now time.Time) []streamMsg {
	rng := rand.New(rand.NewPCG(seed, 5))
	kinds := []string{"view", "view", "view", "like", "share", "comment"}
	poison := []func(m streamMsg) string{
		func(streamMsg) string { return `{"user_id": 1, "post_id": ` }, // invalid JSON
		func(m streamMsg) string {
			return fmt.Sprintf(`{"post_id": %d, "kind": "view", "ts": %d}`, m.post, m.ts)
		},
		func(m streamMsg) string {
			return fmt.Sprintf(`{"user_id": "x%d", "post_id": %d, "kind": "view", "ts": %d}`, m.user, m.post, m.ts)
		},
		func(m streamMsg) string {
			return fmt.Sprintf(`{"user_id": %d, "post_id": %d, "dwell_ms": "NaN", "ts": %d}`, m.user, m.post, m.ts)
		},
		func(m streamMsg) string {
			return fmt.Sprintf(`{"user_id": %d, "post_id": %d, "ts": %d}`, m.user, m.post, now.Add(24*time.Hour).UnixMilli())
		},
		func(m streamMsg) string {
			return fmt.Sprintf(`{"user_id": %d, "post_id": %d, "ts": %d}`, m.user, m.post, now.Add(-30*24*time.Hour).UnixMilli())
		},
		func(m streamMsg) string {
			return `{"user_id": 1, "post_id": 2, "kind": "` + strings.Repeat("x", 5000) + `"}`
		},
	}
	out := make([]streamMsg, n)
	for i := range out {
		m := streamMsg{
			user: rng.Int64N(streamUsers), post: rng.Int64N(streamPosts),
			kind: kinds[rng.IntN(len(kinds))], dwell: float64(rng.IntN(40000)) / 4,
			ts: now.Add(-time.Duration(rng.Int64N(int64(10 * time.Minute)))).UnixMilli(),
		}
		if i%997 == 500 {
			m.raw = []byte(poison[(i/997)%len(poison)](m))
		} else {
			m.good = true
			m.raw = fmt.Appendf(nil, `{"user_id": %d, "post_id": %d, "kind": %q, "dwell_ms": %v, "ts": %d}`,
				m.user, m.post, m.kind, m.dwell, m.ts)
		}
		out[i] = m
	}
	return out
}

// streamReference computes every served value from the good events, in the
// shape /v1/features answers: entity type → key → feature → value.
func streamReference(msgs []streamMsg) map[string]map[int64]map[string]any {
	type user struct {
		n, views    int64
		dwell, dmax float64
	}
	type post struct {
		n, likes int64
		dwell    float64
	}
	users, posts := map[int64]*user{}, map[int64]*post{}
	for _, m := range msgs {
		if !m.good {
			continue
		}
		u := users[m.user]
		if u == nil {
			u = &user{dmax: -1}
			users[m.user] = u
		}
		u.n++
		if m.kind == "view" {
			u.views++
		}
		u.dwell += m.dwell
		u.dmax = max(u.dmax, m.dwell)
		p := posts[m.post]
		if p == nil {
			p = &post{}
			posts[m.post] = p
		}
		p.n++
		if m.kind == "like" {
			p.likes++
		}
		p.dwell += m.dwell
	}
	ref := map[string]map[int64]map[string]any{"user": {}, "post": {}}
	for k, u := range users {
		ref["user"][k] = map[string]any{
			"by_user:n_24h": float64(u.n), "by_user:views_24h": float64(u.views), "by_user:views_7d": float64(u.views),
			"by_user:dwell_24h": u.dwell, "by_user:dmax_24h": u.dmax,
		}
	}
	for k, p := range posts {
		ref["post"][k] = map[string]any{"by_post:n_24h": float64(p.n), "by_post:likes_24h": float64(p.likes), "by_post:dwell_24h": p.dwell}
	}
	return ref
}

// readAll reads every user's and post's features from a kiln process.
func readAll(url string) (map[string]map[int64]map[string]any, error) {
	var us, ps []string
	for u := range streamUsers {
		us = append(us, fmt.Sprintf(`{"user_id": %d}`, u))
	}
	for p := range streamPosts {
		ps = append(ps, fmt.Sprintf(`{"post_id": %d}`, p))
	}
	body := fmt.Sprintf(`{"service": "all", "entities": {"user": [%s], "post": [%s]}}`, strings.Join(us, ","), strings.Join(ps, ","))
	resp, err := http.Post(url+"/v1/features", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("features: status %d", resp.StatusCode)
	}
	var ans struct {
		Entities map[string][]struct {
			Key      map[string]int64 `json:"key"`
			Status   string           `json:"status"`
			Features map[string]any   `json:"features"`
		} `json:"entities"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return nil, err
	}
	got := map[string]map[int64]map[string]any{"user": {}, "post": {}}
	for typ, list := range ans.Entities {
		for _, e := range list {
			if e.Status == "present" {
				got[typ][e.Key[typ+"_id"]] = e.Features
			}
		}
	}
	return got, nil
}

// waitForReference polls url until it serves exactly ref, failing with the
// first differences after the deadline.
func waitForReference(t *testing.T, url string, ref map[string]map[int64]map[string]any, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got map[string]map[int64]map[string]any
	var err error
	for time.Now().Before(deadline) {
		if got, err = readAll(url); err == nil && reflect.DeepEqual(got, ref) {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	if err != nil {
		t.Fatalf("reading features: %v", err)
	}
	n := 0
	for typ, keys := range ref {
		for k, want := range keys {
			if !reflect.DeepEqual(got[typ][k], want) && n < 5 {
				t.Errorf("%s %d: got %v, want %v", typ, k, got[typ][k], want)
				n++
			}
		}
		for k := range got[typ] {
			if _, ok := keys[k]; !ok && n < 5 {
				t.Errorf("%s %d is served but had no event", typ, k)
				n++
			}
		}
	}
	t.Fatalf("features did not equal the reference within %v", within)
}

// sourceStats is the part of /debug/stats the tests read.
type sourceStats struct {
	Sources []struct {
		Messages    int64 `json:"messages"`
		DeadLetters int64 `json:"dead_letters"`
		Lag         int64 `json:"lag"`
	} `json:"sources"`
	Ingest struct {
		Replayed  int64
		Conflicts int64
	} `json:"ingest"`
}

// statsOf reads /debug/stats from the admin listener at admin.
func statsOf(admin string) (sourceStats, error) {
	var s sourceStats
	resp, err := http.Get(admin + "/debug/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// feeder produces a fixed message set a little at a time, so that a test
// can wait for a process to apply some of it without the process finding
// the whole set applied before it started: each process that holds
// partitions has something left to read.
type feeder struct {
	msgs    []streamMsg
	next    int
	produce func(t *testing.T, batch []streamMsg)
}

// feed produces the next n messages (fewer at the end).
func (f *feeder) feed(t *testing.T, n int) {
	end := min(f.next+n, len(f.msgs))
	f.produce(t, f.msgs[f.next:end])
	f.next = end
}

// until produces 200 messages at a time until the kiln process at url has
// applied at least want messages, and fails after a minute. Beyond the
// first want messages it produces quickly only while the process has
// applied some and caught up; otherwise (it may still be joining the group,
// or hold none of the partitions yet) 200 every 250 ms. It keeps the last
// 5,000 for the end. So the set is not used up before the last process
// starts, whatever the size of the process's batches.
func (f *feeder) until(t *testing.T, admin string, want int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	start := f.next
	var last time.Time
	for time.Now().Before(deadline) {
		s, err := statsOf(admin)
		if err == nil && len(s.Sources) > 0 && s.Sources[0].Messages >= want {
			return
		}
		caughtUp := err == nil && len(s.Sources) > 0 && s.Sources[0].Messages > 0 && s.Sources[0].Lag == 0
		if (f.next-start < int(want) || caughtUp || time.Since(last) >= 250*time.Millisecond) && f.next < len(f.msgs)-5_000 {
			f.feed(t, 200)
			last = time.Now()
		} else {
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	s, err := statsOf(admin)
	t.Fatalf("kiln did not apply %d messages within 60s (stats %+v, %v)", want, s, err)
}

// killAndRestart runs kiln serve, SIGKILLs it after a random amount of
// progress, kills times, then produces the rest of the messages and returns
// the last (running) process and its URL.
func killAndRestart(t *testing.T, bin string, args []string, kills int, rng *rand.Rand, f *feeder) (*process, string) {
	t.Helper()
	f.feed(t, 5_000)
	for i := 0; ; i++ {
		p := start(t, bin, args...)
		url, admin := p.urls(t)
		if i == kills {
			f.feed(t, len(f.msgs))
			return p, url
		}
		f.until(t, admin, 200+rng.Int64N(3000))
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.cmd.Wait()
	}
}

func writeProject(t *testing.T, dir, source string) string {
	t.Helper()
	path := filepath.Join(dir, "kiln.yaml")
	cfg := "project: st\nentities: {user: {keys: [user_id]}, post: {keys: [post_id]}}\nsources:\n  events:\n" +
		source + "max_message_bytes: 4096\n    " + streamViews
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// produceKafka produces msgs to topic, keyed by user, in batches.
func produceKafka(t *testing.T, addr, topic string, msgs []streamMsg) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < len(msgs); i += 500 {
		var recs []*kgo.Record
		for _, m := range msgs[i:min(i+500, len(msgs))] {
			recs = append(recs, &kgo.Record{Key: strconv.AppendInt(nil, m.user, 10), Value: m.raw})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Error(err)
			return
		}
	}
}

func countDead(msgs []streamMsg) int {
	n := 0
	for _, m := range msgs {
		if !m.good {
			n++
		}
	}
	return n
}

// deadLetterLines counts the lines of a dead-letter file: at least one per
// poison message (a crash may send some twice).
func deadLetterLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestKafkaSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kiln subprocesses against in-process Kafka")
	}
	_, addr := brokertest.Kafka(t, 4, "events")
	bin := buildKiln(t)
	dir := t.TempDir()
	project := writeProject(t, dir, fmt.Sprintf("    type: kafka\n    brokers: [%s]\n    topic: events\n    group: kiln-st\n    session_timeout: 2s\n    ", addr))
	msgs := streamEvents(40_000, 1, time.Now())
	f := &feeder{msgs: msgs, produce: func(t *testing.T, b []streamMsg) { produceKafka(t, addr, "events", b) }}
	args := []string{"serve", "-c", project, "--data", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn",
		"--archive-flush-interval", "20ms"}
	p, url := killAndRestart(t, bin, args, 5, rand.New(rand.NewPCG(7, 7)), f)
	waitForReference(t, url, streamReference(msgs), 60*time.Second)
	if got, want := deadLetterLines(t, filepath.Join(dir, "data", "dead-letter", "events.jsonl")), countDead(msgs); got < want {
		t.Errorf("%d dead letters, want at least %d", got, want)
	}
	p.stop(t)
	checkArchiveHolds(t, project, filepath.Join(dir, "data", "archive"), msgs, "kafka/events/")
}

func TestNATSSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kiln subprocesses against an embedded NATS server")
	}
	_, url := brokertest.NATS(t)
	js := brokertest.JetStream(t, url, "EVENTS", "events.>")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildKiln(t)
	dir := t.TempDir()
	project := writeProject(t, dir, fmt.Sprintf("    type: nats\n    url: %s\n    stream: EVENTS\n    durable: kiln-st\n    session_timeout: 2s\n    ", url))
	msgs := streamEvents(30_000, 2, time.Now())
	f := &feeder{msgs: msgs, produce: func(t *testing.T, b []streamMsg) {
		for _, m := range b {
			// A busy machine acks slowly: wait for room in the publisher's
			// window (backpressure) rather than fail after its default 200 ms.
			if _, err := js.PublishAsync("events."+strconv.FormatInt(m.user, 10), m.raw, jetstream.WithStallWait(time.Minute)); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("publishing timed out")
		}
	}}
	args := []string{"serve", "-c", project, "--data", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn",
		"--archive-flush-interval", "20ms"}
	p, kurl := killAndRestart(t, bin, args, 5, rand.New(rand.NewPCG(8, 8)), f)
	waitForReference(t, kurl, streamReference(msgs), 60*time.Second)
	if got, want := deadLetterLines(t, filepath.Join(dir, "data", "dead-letter", "events.jsonl")), countDead(msgs); got < want {
		t.Errorf("%d dead letters, want at least %d", got, want)
	}
	p.stop(t)
	checkArchiveHolds(t, project, filepath.Join(dir, "data", "archive"), msgs, "nats/EVENTS")
}

// TestKafkaRebalance runs two kiln processes in one consumer group over one
// Redis server: the second joins while the first consumes (a rebalance
// splits the partitions; both write the post rows every partition feeds),
// the second is killed and restarted (its partitions move to the first
// after the session timeout, and back), then the first stops cleanly (it
// leaves the group, the second takes everything).
func TestKafkaRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kiln subprocesses against in-process Kafka and Redis")
	}
	_, addr := brokertest.Kafka(t, 6, "events")
	redisAddr := redistest.Standalone(t)
	bin := buildKiln(t)
	dir := t.TempDir()
	project := filepath.Join(dir, "kiln.yaml")
	writeProject(t, dir, fmt.Sprintf("    type: kafka\n    brokers: [%s]\n    topic: events\n    group: kiln-st\n    session_timeout: 2s\n    dead_letter: {file: %s}\n    ",
		addr, filepath.Join(dir, "dead.jsonl")))
	b, _ := os.ReadFile(project)
	os.WriteFile(project, append([]byte(fmt.Sprintf("online_store: {type: redis, addrs: [%s]}\n", redisAddr)), b...), 0o644)

	// Messages are produced a little at a time (feeder), so that both
	// processes consume at once.
	msgs := streamEvents(40_000, 3, time.Now())
	f := &feeder{msgs: msgs, produce: func(t *testing.T, b []streamMsg) { produceKafka(t, addr, "events", b) }}
	args := []string{"serve", "-c", project, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn"}
	run := func() (*process, string, string) {
		p := start(t, bin, args...)
		url, admin := p.urls(t)
		return p, url, admin
	}
	logStats := func(who, admin string) {
		if s, err := statsOf(admin); err == nil {
			t.Logf("%s: %d messages, replayed %d row updates, %d write conflicts", who, s.Sources[0].Messages, s.Ingest.Replayed, s.Ingest.Conflicts)
		}
	}
	f.feed(t, 10_000)
	a, _, adminA := run()
	f.until(t, adminA, 2000)
	bp, _, adminB := run()
	f.until(t, adminB, 1000) // B holds partitions: the group rebalanced
	logStats("B before SIGKILL", adminB)
	bp.cmd.Process.Signal(syscall.SIGKILL)
	bp.cmd.Wait()
	bp, urlB, adminB := run()
	f.until(t, adminB, 500)
	logStats("A before it leaves", adminA)
	a.stop(t) // leaves the group: B takes every partition
	f.feed(t, len(msgs))
	waitForReference(t, urlB, streamReference(msgs), 90*time.Second)
	s, err := statsOf(adminB)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last process: replayed %d row updates, %d write conflicts", s.Ingest.Replayed, s.Ingest.Conflicts)
}

// TestPushSurvivesKills checks that an acknowledged push survives a crash of
// the embedded store's write path, which writes rows behind: it logs each
// commit's events and writes rows back at checkpoints (here every 50 ms, so
// kills land before, during and after them). kiln serve is SIGKILLed after
// a random number of acknowledged pushes, five times, and restarted; at the
// end every feature equals the reference of all pushed events: none lost,
// none counted twice.
//
// The archive is checked too. Its journal is flushed every 20 ms, so kills
// land before, during and after flushes; and while the pushes of the views'
// source are acknowledged before each kill, pushes to a second source that
// feeds no view run until the kill, so kills land during pushes. At the end
// the archive holds every acknowledged event once, and of each push the kill
// interrupted, all of its events once or none.
func TestPushSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kiln subprocesses")
	}
	bin := buildKiln(t)
	dir := t.TempDir()
	project := filepath.Join(dir, "kiln.yaml")
	cfg := "project: st\nentities: {user: {keys: [user_id]}, post: {keys: [post_id]}}\nsources:\n" +
		"  side:\n    type: push\n    event_time: ts\n    fields: {user_id: int64, post_id: int64, kind: string, dwell_ms: float64}\n" +
		"  events:\n    type: push\n    " + streamViews
	if err := os.WriteFile(project, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var msgs []streamMsg
	for _, m := range streamEvents(20_000, 3, time.Now()) {
		if m.good {
			msgs = append(msgs, m)
		}
	}
	args := []string{"serve", "-c", project, "--data", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0", "--grpc-addr", "", "--admin-addr", "127.0.0.1:0",
		"--checkpoint-interval", "50ms", "--archive-flush-interval", "20ms", "--log-level", "warn"}
	rng := rand.New(rand.NewPCG(3, 3))
	body := func(source string, batch []streamMsg) []byte {
		b := []byte(`{"source": "` + source + `", "events": [`)
		for i, m := range batch {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, m.raw...)
		}
		return append(b, "]}"...)
	}
	push := func(url string, batch []streamMsg) {
		t.Helper()
		resp, err := http.Post(url+"/v1/push", "application/json", bytes.NewReader(body("events", batch)))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("push: %d %s", resp.StatusCode, out)
		}
	}
	// Side pushes: batches of distinct events (user_id numbers them), each
	// acknowledged or, at a kill, unknown.
	var sideAcked, sideUnknown [][]streamMsg
	sideNext := int64(0)
	sideRng := rand.New(rand.NewPCG(4, 4)) // the side pusher's own: it runs beside the main pushes
	sidePusher := func(url string, stop <-chan struct{}) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				batch := make([]streamMsg, 1+sideRng.IntN(200))
				for i := range batch {
					m := streamMsg{user: sideNext, post: 1, kind: "side", dwell: 0.25, ts: time.Now().UnixMilli(), good: true}
					m.raw = fmt.Appendf(nil, `{"user_id": %d, "post_id": 1, "kind": "side", "dwell_ms": 0.25, "ts": %d}`, m.user, m.ts)
					batch[i] = m
					sideNext++
				}
				resp, err := http.Post(url+"/v1/push", "application/json", bytes.NewReader(body("side", batch)))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					sideUnknown = append(sideUnknown, batch)
					return
				}
				sideAcked = append(sideAcked, batch)
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		return done
	}
	next := 0
	for kill := 0; ; kill++ {
		p := start(t, bin, args...)
		url := p.expect(t, `serving project st from .* on (http://\S+)`)[1]
		end := len(msgs)
		if kill < 5 {
			end = min(next+500+rng.IntN(3000), len(msgs))
		}
		stopSide := make(chan struct{})
		sideDone := sidePusher(url, stopSide)
		for next < end {
			n := min(1+rng.IntN(300), end-next)
			push(url, msgs[next:next+n])
			next += n
		}
		if kill == 5 {
			close(stopSide)
			<-sideDone
			waitForReference(t, url, streamReference(msgs), 10*time.Second)
			p.stop(t)
			break
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.cmd.Wait()
		<-sideDone
	}
	archiveDir := filepath.Join(dir, "data", "archive")
	checkArchiveHolds(t, project, archiveDir, msgs, "push/")
	// The side source: acknowledged batches once; interrupted ones whole or not at all.
	src, evs := readArchive(t, project, archiveDir, "side")
	seen := map[int64]int{}
	for _, ev := range evs {
		seen[ev.Fields[src.FieldIndex("user_id")].Int]++
	}
	for _, b := range sideAcked {
		for _, m := range b {
			if seen[m.user] != 1 {
				t.Fatalf("acknowledged side event %d archived %d times", m.user, seen[m.user])
			}
			delete(seen, m.user)
		}
	}
	interrupted := 0
	for _, b := range sideUnknown {
		n := 0
		for _, m := range b {
			n += seen[m.user]
			delete(seen, m.user)
		}
		if n != 0 && n != len(b) {
			t.Errorf("an interrupted push of %d events is archived in part: %d of them", len(b), n)
		}
		if n == len(b) {
			interrupted++
		}
	}
	if len(seen) != 0 {
		t.Errorf("%d side events archived that no push sent", len(seen))
	}
	t.Logf("side pushes: %d acknowledged, %d interrupted by a kill (%d of those archived whole)", len(sideAcked), len(sideUnknown), interrupted)
}
