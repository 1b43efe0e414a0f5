package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/bench"
)

// kiln-bench ingest end to end at a tiny size: the binary starts its own
// servers (--kiln), pushes, fills and drains an in-process Kafka, runs the
// freshness phase, and every figure it reports is there and consistent
// with what was sent.
func TestBenchIngest(t *testing.T) {
	benchBin, kilnBin := buildBinaries(t) // skips under -short
	out := t.TempDir()
	const kafkaEvents = 3000
	cmd := exec.Command(benchBin, "ingest", "--kiln", kilnBin, "--scale", "0.01",
		"--push-pool", "4000", "--push-duration", "1s", "--push-warmup", "200ms", "--push-conns", "2",
		"--kafka-events", "3000", "--kafka-partitions", "4", "--kafka-timeout", "60s",
		"--fresh-rate", "500", "--fresh-duration", "2s", "--fresh-warmup", "500ms", "--q2-rate", "5",
		"--out", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("kiln-bench ingest: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr.String())
	}
	for _, want := range []string{"events/s per core", "push (1000/batch, 2 conns)", "kafka (4 partitions)", "fresh p99 ms", "kafka + Q2"} {
		if !strings.Contains(string(stdout), want) {
			t.Errorf("the summary lacks %q:\n%s", want, stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.IngestReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	p, k, f := rep.Push, rep.Kafka, rep.Freshness
	if p == nil || k == nil || f == nil {
		t.Fatalf("results.json lacks a phase: push %v, kafka %v, freshness %v", p != nil, k != nil, f != nil)
	}
	if p.Events <= 0 || p.Events%1000 != 0 || p.Errors != 0 || !(p.ServerCPUSeconds > 0) || !(p.EventsPerCoreS > 0) || p.Writes <= 0 {
		t.Errorf("push: %d events (whole batches of 1000), %d errors, %v CPU-s, %v events/s per core, %d store writes",
			p.Events, p.Errors, p.ServerCPUSeconds, p.EventsPerCoreS, p.Writes)
	}
	if k.Produced != kafkaEvents || k.Applied != kafkaEvents || k.DeadLetters != 0 || !(k.EventsPerCoreS > 0) || k.Writes <= 0 {
		t.Errorf("kafka: produced %d, applied %d, %d dead letters, %v events/s per core, %d store writes; want %d applied",
			k.Produced, k.Applied, k.DeadLetters, k.EventsPerCoreS, k.Writes, kafkaEvents)
	}
	// 500/s for 2.5 s, every one applied on top of the probes, and each
	// counted once in the server's freshness histogram.
	if f.Produced != 1250 || f.Applied < f.Produced+f.Probes || f.Freshness.Count != f.Applied || !(f.Freshness.P50 > 0) || f.Freshness.Max < f.Freshness.P99 {
		t.Errorf("freshness: produced %d (want 1250), applied %d (probes %d), freshness %+v", f.Produced, f.Applied, f.Probes, f.Freshness)
	}
	if f.BrokerDelivered <= 0 || f.Q2 == nil || f.Q2.Requests <= 0 || !(f.Q2.Latency.P50 > 0) {
		t.Errorf("freshness: broker floor over %d messages, Q2 %+v", f.BrokerDelivered, f.Q2)
	}
}
