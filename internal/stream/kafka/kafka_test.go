package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/kilntest"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
)

func project(t *testing.T, addr string) (*definition.Project, map[*definition.View]*tile.Plan) {
	t.Helper()
	return kilntest.Compile(t, "t.yaml", fmt.Appendf(nil, `
project: t
entities: {user: {keys: [user_id]}}
sources:
  clicks:
    type: kafka
    brokers: [%s]
    topic: clicks
    group: g
    dead_letter: {topic: clicks-dead}
    event_time: ts
    fields: {user_id: int64}
views:
  by_user:
    entity: user
    source: clicks
    features: {n: {agg: count, windows: [1h]}}
`, addr))
}

// TestConsumeDeadLetterAndResume consumes a topic, sends poison to a
// dead-letter topic, stops, and resumes from the committed offsets: every
// event is counted once.
func TestConsumeDeadLetterAndResume(t *testing.T) {
	_, addr := brokertest.Kafka(t, 3, "clicks", "clicks-dead")
	p, plans := project(t, addr)
	st := kilntest.MemStore(t)
	pl, err := ingest.New(p, plans, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	dead, err := OpenDeadLetters(p.Source("clicks").Stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	src := p.Source("clicks")
	a := stream.NewApplier(src, eventjson.NewDecoder(p), pl, dead, nil)

	producer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produce := func(from, n int) {
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			v := fmt.Sprintf(`{"user_id": %d, "ts": %d}`, i%4, time.Now().UnixMilli())
			if i%100 == 7 {
				v = `{"ts": "not a time"}`
			}
			recs = append(recs, &kgo.Record{Key: []byte{byte(i)}, Value: []byte(v)})
		}
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int64 {
		return kilntest.Total(t, ctx, pl, plans[p.View("by_user")], "by_user", pl.Now(), kilntest.Users(4)...)
	}
	run := func(want int64) {
		t.Helper()
		c, err := New(Options{Source: src, Applier: a})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(rctx) }()
		for total() < want && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := total(); got != want {
			t.Fatalf("counted %d events, want %d", got, want)
		}
	}
	produce(0, 1000)
	run(990)
	produce(1000, 1000) // read by a new member of the group, from the commits
	run(1980)
	if s := a.Stats(); s.DeadLetters != 20 || s.Lag != 0 {
		t.Fatalf("stats %+v: want 20 dead letters and no lag", s)
	}

	// The dead letters are in their topic with their reasons.
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("clicks-dead"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got int
	for got < 20 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			got++
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if string(r.Value) != `{"ts": "not a time"}` || h["kiln-source"] != "clicks" || h["kiln-reason"] == "" || h["kiln-offset"] == "" {
				t.Errorf("dead letter %q with headers %v", r.Value, h)
			}
		})
	}
	if got != 20 {
		t.Fatalf("%d dead letters in the topic, want 20", got)
	}
}
