// Package deploy holds what runs beside Kiln: the Grafana dashboard
// (grafana/kiln.json) and an example Prometheus configuration
// (prometheus.yml). Its test keeps the dashboard true to the metrics a
// real node serves.
package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/metrics/metricstest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// selector is a metric name in a query with the labels it matches
// exactly ({name="value"}).
var (
	selector = regexp.MustCompile(`\b((?:kiln|go|process)_[a-z0-9_]+)(\{[^}]*\})?`)
	matcher  = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// Every metric the dashboard queries, and every label value it selects
// exactly, is on a real node's /metrics: a node with a push source and a
// Kafka source that has applied messages, sent one to the dead letters,
// archived its journal and answered a read over HTTP.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/kiln.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/kiln.json: %v", err)
	}
	scrape := scrapeBusyNode(t)
	queries := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, m := range selector.FindAllStringSubmatch(tg.Expr, -1) {
				name, labels := family(scrape, m[1]), []string(nil)
				for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
					labels = append(labels, lm[1], lm[2])
				}
				if scrape[name] == nil {
					t.Errorf("panel %q queries %s: no such metric on /metrics", p.Title, m[1])
					continue
				}
				if _, ok := scrape.Value(name, labels...); !ok && !isQuantile(labels) {
					t.Errorf("panel %q queries %s%s: no sample has those labels", p.Title, m[1], m[2])
				}
			}
		}
	}
	if queries < 20 {
		t.Fatalf("%d queries in the dashboard: is it the dashboard?", queries)
	}
}

// family is the metric family of a series name: a histogram's _bucket,
// _sum and _count series belong to their histogram.
func family(s metricstest.Scrape, series string) string {
	if s[series] != nil {
		return series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(series, suffix); ok && s[f] != nil {
			return f
		}
	}
	return series
}

// isQuantile reports whether the labels select a summary's quantile,
// which Value does not look up (the summary itself was found).
func isQuantile(labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		if labels[i] == "quantile" {
			return true
		}
	}
	return false
}

const project = `
project: dash
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, ms: float64}
  events:
    type: kafka
    brokers: [%s]
    topic: events
    group: dash
    dead_letter: {file: %s}
    event_time: ts
    fields: {user_id: int64, ms: float64}
views:
  user_clicks:
    entity: user
    source: clicks
    features:
      clicks: {agg: count, windows: [1h]}
  user_events:
    entity: user
    source: events
    features:
      events: {agg: count, windows: [1h]}
services:
  all: {views: [user_clicks, user_events]}
`

// scrapeBusyNode starts a node, gives each of its parts something to
// count, and scrapes its /metrics.
func scrapeBusyNode(t *testing.T) metricstest.Scrape {
	t.Helper()
	_, broker := brokertest.Kafka(t, 2, "events")
	dir := t.TempDir()
	p, err := projectfile.Parse("dash.yaml", fmt.Appendf(nil, project, broker, filepath.Join(dir, "dead.jsonl")))
	if err != nil {
		t.Fatal(err)
	}
	arch, err := archive.NewDir(filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, DataDir: dir, Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Archive: archive.New(arch)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ts := time.Now().UnixMilli()
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Partition: int32(i % 2), Value: fmt.Appendf(nil, `{"user_id": %d, "ms": 1, "ts": %d}`, i, ts)})
	}
	recs = append(recs, &kgo.Record{Value: []byte(`{"user_id": "not a number"}`)})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	metricstest.Post(t, n.URL()+"/v1/push", fmt.Sprintf(`{"source": "clicks", "events": [{"user_id": 1, "ms": 2, "ts": %d}]}`, ts))
	metricstest.Post(t, n.URL()+"/v1/features", `{"service": "all", "entities": {"user": [{"user_id": 1}]}}`)

	// Wait (boundedly) until every message is applied or a dead letter.
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := metricstest.Get(t, n.AdminURL()+"/metrics")
		applied := s.Sum("kiln_stream_messages_total", "source", "events")
		if _, lagKnown := s.Value("kiln_stream_lag_messages", "source", "events"); applied >= float64(len(recs)) && lagKnown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Kafka source applied %v of %d messages within 30s", applied, len(recs))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if err := n.Journal.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return metricstest.Get(t, n.AdminURL()+"/metrics")
}
