package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// startKafka starts franz-go's in-process Kafka (kfake): one broker on a
// loopback port the kernel picks, holding topic with the given number of
// partitions.
func startKafka(partitions int32, topic string) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topic),
		kfake.GroupMinSessionTimeout(time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("bench ingest: starting in-process Kafka (kfake): %w", err)
	}
	return c, nil
}

// kafkaProject writes the RW1 project with its source engagements read from
// topic ingestTopic at addr instead of pushed, and returns the file's path.
func (r *ingestRun) kafkaProject(addr string) (string, error) {
	b, err := KafkaFeedProject(addr, ingestTopic, ingestGroup)
	if err != nil {
		return "", err
	}
	path := filepath.Join(r.tmp, "kiln-kafka.yaml")
	return path, os.WriteFile(path, r.withStore(b), 0o644)
}

// KafkaFeedProject returns the RW1 project file (examples.FeedProject) with
// its source engagements turned into a kafka source reading topic from
// brokers addr in consumer group group, with the same fields and event
// time. It checks that the result parses as such.
func KafkaFeedProject(addr, topic, group string) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(examples.FeedProject))
	inSource, done := false, false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case !done && line == "  "+workload.SourceName+":":
			inSource = true
		case inSource && strings.HasPrefix(trimmed, "type:"):
			indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
			fmt.Fprintf(&out, "%stype: kafka\n%sbrokers: [%s]\n%stopic: %s\n%sgroup: %s\n", indent, indent, addr, indent, topic, indent, group)
			inSource, done = false, true
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if !done {
		return nil, fmt.Errorf("bench ingest: %s has no type line in source %s", examples.FeedProjectName, workload.SourceName)
	}
	p, err := projectfile.Parse("kafka variant of "+examples.FeedProjectName, out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("bench ingest: the kafka variant of %s: %w", examples.FeedProjectName, err)
	}
	if src := p.Source(workload.SourceName); src == nil || src.Type != definition.Kafka || src.Stream == nil || src.Stream.Topic != topic {
		return nil, fmt.Errorf("bench ingest: the kafka variant of %s does not read %s from Kafka", examples.FeedProjectName, workload.SourceName)
	}
	return out.Bytes(), nil
}

// nextRecord draws the live stream's next event at now into ev and returns
// it as a Kafka record: keyed by user, the JSON of one element of a push's
// events as its value, stamped with stamp.
func (r *ingestRun) nextRecord(live *workload.Live, ev *event.Event, now, stamp time.Time) *kgo.Record {
	live.Next(now, ev)
	return &kgo.Record{
		Key:       strconv.AppendInt(nil, ev.Fields[workload.FieldUserID].Int, 10),
		Value:     r.enc.add(make([]byte, 0, 112), 0, ev),
		Timestamp: stamp,
	}
}

// newProducer returns a Kafka producer of topic ingestTopic.
func newProducer(addr string, linger time.Duration) (*kgo.Client, error) {
	return kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(ingestTopic),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(200_000),
	)
}

// kafkaPhase is phase 2: produce the backlog, then start the server and
// time it until it has applied every message.
func (r *ingestRun) kafkaPhase(ctx context.Context, addr, projectFile string) (*KafkaPhase, error) {
	cfg := r.cfg
	k := &KafkaPhase{Partitions: cfg.KafkaPartitions}
	fmt.Fprintf(r.log, "kiln-bench ingest: kafka: producing %d RW1 events to %s (%d partitions, keyed by user)\n", cfg.KafkaEvents, ingestTopic, cfg.KafkaPartitions)
	cl, err := newProducer(addr, 5*time.Millisecond)
	if err != nil {
		return nil, err
	}
	var failed atomic.Int64
	var firstErr atomic.Value
	live := r.gen.Live(0)
	var ev event.Event
	t0 := time.Now()
	for i := range cfg.KafkaEvents {
		if i%10_000 == 0 && ctx.Err() != nil {
			break
		}
		now := time.Now()
		rec := r.nextRecord(live, &ev, now, now)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		})
	}
	ferr := cl.Flush(ctx)
	cl.Close()
	k.ProduceSeconds = time.Since(t0).Seconds()
	if err := errors.Join(ctx.Err(), ferr); err != nil {
		return nil, err
	}
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d of %d messages were not produced; first: %v", n, cfg.KafkaEvents, firstErr.Load())
	}
	k.Produced = int64(cfg.KafkaEvents)
	k.ProduceEventsPerS = ratio(float64(k.Produced), k.ProduceSeconds)
	fmt.Fprintf(r.log, "kiln-bench ingest: kafka: produced in %.1f s (%.0f events/s)\n", k.ProduceSeconds, k.ProduceEventsPerS)

	started := time.Now()
	if err := r.startServerOn(ctx, projectFile, filepath.Join(r.dataDir, "kafka")); err != nil {
		return nil, err
	}
	defer r.stopServer()
	first, err := markNow(ctx, r.srv, r.ctl)
	if err != nil {
		return nil, err
	}
	waitProfile := r.profile(ctx, PhaseKafka, cfg.Profile)
	defer waitProfile()
	deadline := first.at.Add(cfg.KafkaTimeout)
	var last mark
	var s1 serverStats
	for {
		if !sleepCtx(ctx, ingestPollInterval) {
			return nil, ctx.Err()
		}
		if last, err = markNow(ctx, r.srv, r.ctl); err != nil {
			return nil, err
		}
		s1 = last.stats
		if len(s1.Sources) > 0 && s1.Sources[0].Lag == 0 && s1.Sources[0].Messages >= k.Produced &&
			len(s1.Sources[0].Partitions) >= cfg.KafkaPartitions {
			break
		}
		if time.Now().After(deadline) {
			applied := int64(0)
			if len(s1.Sources) > 0 {
				applied = s1.Sources[0].Messages
			}
			return nil, fmt.Errorf("the server applied %d of %d messages within %v", applied, k.Produced, cfg.KafkaTimeout)
		}
	}
	k.FromStartSeconds = last.at.Sub(started).Seconds()
	var m0 int64
	if s0 := first.stats; len(s0.Sources) > 0 {
		m0 = s0.Sources[0].Messages
	}
	src := s1.Sources[0]
	k.Applied, k.DeadLetters = src.Messages, src.DeadLetters
	// The window runs from the first snapshot after the server was ready
	// to the first one that saw the backlog applied.
	k.Throughput = throughput(src.Messages-m0, first, last)
	fmt.Fprintf(r.log, "kiln-bench ingest: kafka: %d messages applied (%d before the first snapshot) in %.1f s = %.0f events/s; server %.2f CPU-s (%.2f cores) = %.0f events/s per core; %.1f s from process start\n",
		k.Applied, m0, k.Seconds, k.EventsPerS, k.ServerCPUSeconds, k.ServerCores, k.EventsPerCoreS, k.FromStartSeconds)
	if k.DeadLetters > 0 {
		return k, fmt.Errorf("%d messages went to the dead letters", k.DeadLetters)
	}
	return k, nil
}
