package bench

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// The kafka variant of the RW1 project reads the same source, with the same
// fields and event time, from the given topic; everything else is the same.
func TestKafkaFeedProject(t *testing.T) {
	b, err := KafkaFeedProject("127.0.0.1:9092", "events", "g1")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := projectfile.Parse("kafka", b)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	ks, ps := kp.Source(workload.SourceName), pp.Source(workload.SourceName)
	if ks.Type != definition.Kafka || ks.Stream == nil {
		t.Fatalf("source type %q, stream %+v: want kafka", ks.Type, ks.Stream)
	}
	if st := ks.Stream; !reflect.DeepEqual(st.Brokers, []string{"127.0.0.1:9092"}) || st.Topic != "events" || st.Group != "g1" {
		t.Errorf("stream %+v: want brokers [127.0.0.1:9092], topic events, group g1", st)
	}
	if ks.EventTime != ps.EventTime || !reflect.DeepEqual(ks.Fields, ps.Fields) {
		t.Errorf("event time %q fields %+v; want %q %+v as in the push source", ks.EventTime, ks.Fields, ps.EventTime, ps.Fields)
	}
	if len(kp.Views) != len(pp.Views) || len(kp.Services) != len(pp.Services) {
		t.Errorf("%d views, %d services; want %d, %d", len(kp.Views), len(kp.Services), len(pp.Views), len(pp.Services))
	}
}

func TestIngestConfigChecked(t *testing.T) {
	if err := func() error { c := DefaultIngestConfig(); return c.Check() }(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for name, mod := range map[string]func(*IngestConfig){
		"freshness without kafka": func(c *IngestConfig) { c.Phases = []string{PhasePush, PhaseFreshness} },
		"unknown phase":           func(c *IngestConfig) { c.Phases = []string{"pull"} },
		"batch over the limit":    func(c *IngestConfig) { c.PushBatch = maxPushEvents + 1 },
		"no events":               func(c *IngestConfig) { c.KafkaEvents = 0 },
		"zero rate":               func(c *IngestConfig) { c.FreshRate = 0 },
	} {
		c := DefaultIngestConfig()
		mod(&c)
		if _, err := RunIngest(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}
