package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/store/pebble"
	"github.com/kiln-dev/kiln/internal/tile"
)

const testProject = `
project: t
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: kafka
    brokers: [127.0.0.1:9092]
    topic: clicks
    max_message_bytes: 200
    event_time: ts
    fields: {user_id: int64, kind: string, x: float64}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n:  {agg: count, windows: [1h]}
      xs: {agg: sum, field: x, windows: [1h]}
`

type fixture struct {
	project *definition.Project
	plans   map[*definition.View]*tile.Plan
	st      *pebble.Store
	pl      *ingest.Writer
	a       *Applier
	dead    string
	now     time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	p, plans := kilntest.Compile(t, "t.yaml", []byte(testProject))
	st := kilntest.MemStore(t)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	pl, err := ingest.New(p, plans, st, ingest.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	dead := filepath.Join(t.TempDir(), "dl", "clicks.jsonl")
	f, err := OpenFile(dead)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	a := NewApplier(p.Source("clicks"), eventjson.NewDecoder(p), pl, f, func() time.Time { return now.Add(5 * time.Millisecond) })
	return &fixture{project: p, plans: plans, st: st, pl: pl, a: a, dead: dead, now: now}
}

func (f *fixture) count(t *testing.T, user int64) (int64, float64) {
	t.Helper()
	v := f.project.View("by_user")
	plan := f.plans[v]
	row := plan.NewRow()
	key := tile.AppendKey(nil, "by_user", []event.Value{event.IntValue(user)})
	if err := f.pl.Get(context.Background(), [][]byte{key}, func(_ int, value []byte, found bool) {
		if found {
			if err := plan.DecodeRow(value, row); err != nil {
				t.Fatal(err)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	out := make([]event.Value, len(plan.Outputs))
	plan.Eval(row, f.now.UnixMilli(), out)
	return out[0].Int, out[1].Float
}

func msg(part string, off uint64, at time.Time, value string) Message {
	return Message{Partition: part, Stream: StreamID("kafka/" + part), Offset: off, Value: []byte(value), Time: at}
}

func TestApplyDeadLettersPoisonAndAppliesTheRest(t *testing.T) {
	f := newFixture(t)
	ts := f.now.Add(-time.Minute).UnixMilli()
	good := func(u int, x float64) string {
		return fmt.Sprintf(`{"user_id": %d, "kind": "a", "x": %v, "ts": %d}`, u, x, ts)
	}
	poison := []struct{ value, reason string }{
		{`{"user_id": 1, "kind": `, "malformed JSON"},
		{fmt.Sprintf(`{"kind": "a", "ts": %d}`, ts), `"user_id"`},
		{fmt.Sprintf(`{"user_id": "one", "ts": %d}`, ts), `"user_id"`},
		{fmt.Sprintf(`{"user_id": 1, "x": "NaN", "ts": %d}`, ts), `"x"`},
		{fmt.Sprintf(`{"user_id": 1, "x": 1e999, "ts": %d}`, ts), `"x"`},
		{fmt.Sprintf(`{"user_id": 1, "ts": %d}`, f.now.Add(time.Hour).UnixMilli()), "ahead of the server clock"},
		{fmt.Sprintf(`{"user_id": 1, "ts": %d}`, f.now.Add(-3*time.Hour).UnixMilli()), "older than the retention"},
		{fmt.Sprintf(`{"user_id": 1, "kind": "%s", "ts": %d}`, strings.Repeat("k", 300), ts), "larger than max_message_bytes (200)"},
		{fmt.Sprintf(`{"user_id": 1, "ts": %d}`, ts/1000), fmt.Sprintf("it looks like seconds since 1970: send milliseconds (%d)", ts/1000*1000)},
		{`{"user_id": 1, "ts": 0}`, "before 2000-01-01 (min_event_time of source clicks)"},
	}
	var msgs []Message
	off := uint64(0)
	for i, p := range poison {
		msgs = append(msgs, msg("clicks/0", off, f.now, good(1, float64(i))))
		off++
		msgs = append(msgs, msg("clicks/0", off, f.now, p.value))
		off++
	}
	if err := f.a.Apply(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	wantXs := float64(len(poison) * (len(poison) - 1) / 2)
	if n, xs := f.count(t, 1); n != int64(len(poison)) || xs != wantXs {
		t.Fatalf("user 1: n %d xs %v, want %d and %v (the good events around the poison)", n, xs, len(poison), wantXs)
	}
	// Every poison message is a dead letter with its reason, partition and
	// offset, in order.
	file, err := os.Open(f.dead)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 1<<20)
	i := 0
	for ; sc.Scan(); i++ {
		var l deadLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if i >= len(poison) {
			t.Fatalf("extra dead letter %s", sc.Text())
		}
		if !strings.Contains(l.Reason, poison[i].reason) || l.Offset != uint64(2*i+1) || l.Partition != "clicks/0" ||
			l.Source != "clicks" || l.Value == nil || *l.Value != poison[i].value {
			t.Errorf("dead letter %d = %+v, want reason containing %q for %q", i, l, poison[i].reason, poison[i].value)
		}
	}
	if i != len(poison) {
		t.Fatalf("%d dead letters, want %d", i, len(poison))
	}
	s := f.a.Stats()
	if s.DeadLetters != int64(len(poison)) || s.Messages != int64(len(msgs)) || len(s.Partitions) != 1 || s.Partitions[0].Applied != int64(off-1) {
		t.Fatalf("stats %+v", s)
	}
	if s.Freshness.Count != int64(len(msgs)) || s.Freshness.P50 < 4.9 || s.Freshness.P50 > 5.1 {
		t.Fatalf("freshness %+v, want %d samples of 5ms", s.Freshness, len(msgs))
	}
}

func TestApplyReplayIsPassedOver(t *testing.T) {
	f := newFixture(t)
	ts := f.now.Add(-time.Minute).UnixMilli()
	batch := func(part string, from, n int) []Message {
		var out []Message
		for i := from; i < from+n; i++ {
			out = append(out, msg(part, uint64(i), f.now, fmt.Sprintf(`{"user_id": %d, "x": 1, "ts": %d}`, i%3, ts)))
		}
		return out
	}
	for _, b := range [][]Message{
		batch("clicks/0", 0, 30), batch("clicks/1", 0, 30),
		batch("clicks/0", 10, 30), // 10..29 again, 30..39 new
		batch("clicks/1", 0, 30),  // all again
	} {
		if err := f.a.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	total := int64(0)
	for u := range int64(3) {
		n, _ := f.count(t, u)
		total += n
	}
	if total != 70 {
		t.Fatalf("counted %d events, want 70 (40 + 30 distinct offsets)", total)
	}
}

func TestLag(t *testing.T) {
	f := newFixture(t)
	f.a.SetEnd("clicks/0", 100)
	ts := f.now.Add(-time.Minute).UnixMilli()
	if err := f.a.Apply(context.Background(), []Message{msg("clicks/0", 41, f.now, fmt.Sprintf(`{"user_id": 1, "ts": %d}`, ts))}); err != nil {
		t.Fatal(err)
	}
	s := f.a.Stats()
	if s.Lag != 58 || s.Partitions[0].Lag != 58 || s.Partitions[0].LastEventTime != ts {
		t.Fatalf("stats %+v, want lag 58 (offsets 42..99) and last event time %d", s, ts)
	}
}
