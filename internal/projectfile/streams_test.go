package projectfile_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// streamFile has a source of each type, with every key of kafka and nats
// sources set in clicks and orders and left to defaults in the others.
const streamFile = `project: feed
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: kafka
    event_time: ts
    max_future_skew: 5m
    fields: {user_id: int64, url: string}
    brokers: [kafka-1:9092, "kafka-2:9093", "[::1]:9094"]
    topic: web.clicks
    group: ranking-clicks
    format: json
    start: latest
    max_message_bytes: 512KiB
    dead_letter: {topic: web.clicks-dead}
  orders:
    type: nats
    event_time: ts
    fields: {user_id: int64, amount: float64}
    url: nats://nats-1:4222
    stream: ORDERS
    subject: orders.*.created
    durable: ranking-orders
    format: json
    start: earliest
    max_message_bytes: 2097152
    dead_letter: {subject: dead.orders}
  kafka_defaults:
    type: kafka
    event_time: ts
    fields: {user_id: int64}
    brokers:
      - 127.0.0.1:9092
    topic: defaults
  nats_defaults:
    type: nats
    event_time: ts
    fields: {user_id: int64}
    url: nats://127.0.0.1:4222
    stream: DEFAULTS
  to_files:
    type: nats
    event_time: ts
    fields: {user_id: int64}
    url: nats://127.0.0.1:4222
    stream: DEFAULTS
    durable: to_files
    subject: ">"
    max_message_bytes: 64MiB
    dead_letter:
      file: /var/lib/kiln/dead/to_files.jsonl
  pushed:
    type: push
    event_time: ts
    fields: {user_id: int64}
views:
  user_clicks:
    entity: user
    source: clicks
    features:
      clicks: {agg: count, windows: [1h]}
  user_orders:
    entity: user
    source: orders
    features:
      spend: {agg: sum, field: amount, windows: [1d]}
`

func TestStreamSources(t *testing.T) {
	p, err := projectfile.Parse("kiln.yaml", []byte(streamFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		source string
		typ    definition.SourceType
		skew   time.Duration
		stream *definition.Stream
	}{
		{"clicks", definition.Kafka, 5 * time.Minute, &definition.Stream{
			Brokers: []string{"kafka-1:9092", "kafka-2:9093", "[::1]:9094"}, Topic: "web.clicks", Group: "ranking-clicks",
			Format: "json", Start: "latest", MaxMessageBytes: 512 << 10,
			DeadLetter: definition.DeadLetter{Topic: "web.clicks-dead"},
		}},
		{"orders", definition.NATS, time.Minute, &definition.Stream{
			URL: "nats://nats-1:4222", Name: "ORDERS", Subject: "orders.*.created", Durable: "ranking-orders",
			Format: "json", Start: "earliest", MaxMessageBytes: 2 << 20,
			DeadLetter: definition.DeadLetter{Subject: "dead.orders"},
		}},
		{"kafka_defaults", definition.Kafka, time.Minute, &definition.Stream{
			Brokers: []string{"127.0.0.1:9092"}, Topic: "defaults", Group: "kiln-feed-kafka_defaults",
			Format: "json", Start: "earliest", MaxMessageBytes: definition.DefaultMaxMessageBytes,
		}},
		{"nats_defaults", definition.NATS, time.Minute, &definition.Stream{
			URL: "nats://127.0.0.1:4222", Name: "DEFAULTS", Durable: "kiln-feed-nats_defaults",
			Format: "json", Start: "earliest", MaxMessageBytes: definition.DefaultMaxMessageBytes,
		}},
		{"to_files", definition.NATS, time.Minute, &definition.Stream{
			URL: "nats://127.0.0.1:4222", Name: "DEFAULTS", Subject: ">", Durable: "to_files",
			Format: "json", Start: "earliest", MaxMessageBytes: projectfile.MaxMessageBytesMax,
			DeadLetter: definition.DeadLetter{File: "/var/lib/kiln/dead/to_files.jsonl"},
		}},
		{"pushed", definition.Push, time.Minute, nil},
	} {
		src := p.Source(tc.source)
		if src == nil {
			t.Fatalf("no source %q", tc.source)
		}
		if src.Type != tc.typ || src.EventTime != "ts" || src.MaxFutureSkew != tc.skew {
			t.Errorf("source %s: type %q event_time %q max_future_skew %v; want %s, ts, %v", tc.source, src.Type, src.EventTime, src.MaxFutureSkew, tc.typ, tc.skew)
		}
		if !reflect.DeepEqual(src.Stream, tc.stream) {
			t.Errorf("source %s: stream\n %+v\nwant\n %+v", tc.source, src.Stream, tc.stream)
		}
	}
	if got := fmt.Sprint(p.Source("orders").Fields); got != fmt.Sprint([]definition.Field{{Name: "user_id", Type: event.Int64}, {Name: "amount", Type: event.Float64}}) {
		t.Errorf("orders fields %s", got)
	}
	if p.View("user_orders").Source != p.Source("orders") {
		t.Errorf("view user_orders does not read source orders")
	}
	if p, err := projectfile.Parse("kiln.yaml", []byte(validFile)); err != nil || p.Source("engagements").Stream != nil {
		t.Errorf("a push source has a stream (err %v)", err)
	}
}

// sourceProject is a project whose only source, ev, has the given keys, one
// per line from line 6.
func sourceProject(keys ...string) string {
	var b strings.Builder
	b.WriteString("project: p\nentities:\n  user: {keys: [user_id]}\nsources:\n  ev:\n")
	for _, k := range keys {
		b.WriteString("    " + k + "\n")
	}
	b.WriteString("views:\n  v:\n    entity: user\n    source: ev\n    features:\n      n: {agg: count}\n")
	return b.String()
}

// kafkaProject and natsProject are projects with a valid kafka or nats
// source ev (lines 6 to 10) followed by the extra keys (from line 11).
func kafkaProject(extra ...string) string {
	return sourceProject(append([]string{"type: kafka", "event_time: ts", "fields: {user_id: int64}", "brokers: [kafka-1:9092]", "topic: engagements"}, extra...)...)
}

func natsProject(extra ...string) string {
	return sourceProject(append([]string{"type: nats", "event_time: ts", "fields: {user_id: int64}", "url: nats://127.0.0.1:4222", "stream: ENGAGEMENTS"}, extra...)...)
}

func TestMaxMessageBytes(t *testing.T) {
	for text, want := range map[string]int{
		"1": 1, "1000": 1000, "1048576": 1 << 20, "1KiB": 1 << 10, "512KiB": 512 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20, "67108864": 64 << 20,
	} {
		for _, project := range []string{kafkaProject("max_message_bytes: " + text), natsProject("max_message_bytes: " + text)} {
			p, err := projectfile.Parse("t.yaml", []byte(project))
			if err != nil {
				t.Errorf("%s: %v", text, err)
				continue
			}
			if got := p.Source("ev").Stream.MaxMessageBytes; got != want {
				t.Errorf("%s: MaxMessageBytes %d, want %d", text, got, want)
			}
		}
	}
}

func TestStreamDefaults(t *testing.T) {
	for _, project := range []string{kafkaProject(), natsProject()} {
		p, err := projectfile.Parse("t.yaml", []byte(project))
		if err != nil {
			t.Fatal(err)
		}
		st := p.Source("ev").Stream
		want := &definition.Stream{Format: "json", Start: "earliest", MaxMessageBytes: definition.DefaultMaxMessageBytes}
		if p.Source("ev").Type == definition.Kafka {
			want.Brokers, want.Topic, want.Group = []string{"kafka-1:9092"}, "engagements", "kiln-p-ev"
		} else {
			want.URL, want.Name, want.Durable = "nats://127.0.0.1:4222", "ENGAGEMENTS", "kiln-p-ev"
		}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("stream\n %+v\nwant\n %+v", st, want)
		}
	}
}

func TestSessionTimeout(t *testing.T) {
	p, err := projectfile.Parse("t.yaml", []byte(kafkaProject("session_timeout: 6s")))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Source("ev").Stream.SessionTimeout; got != 6*time.Second {
		t.Fatalf("session_timeout 6s parsed as %v", got)
	}
	for _, bad := range []string{"0s", "500ms", "1h", "soon"} {
		if _, err := projectfile.Parse("t.yaml", []byte(kafkaProject("session_timeout: "+bad))); err == nil || !strings.Contains(err.Error(), "session_timeout") {
			t.Errorf("session_timeout: %s: err %v, want an error about session_timeout", bad, err)
		}
	}
	p, err = projectfile.Parse("t.yaml", []byte(natsProject("session_timeout: 3s")))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Source("ev").Stream.SessionTimeout; got != 3*time.Second {
		t.Fatalf("nats session_timeout 3s parsed as %v", got)
	}
}

// checkStream says what is wrong with the parsed stream of a source, or "".
func checkStream(src *definition.Source) string {
	st := src.Stream
	if src.Type == definition.Push {
		if st != nil {
			return "a push source has a stream"
		}
		return ""
	}
	if st == nil {
		return "no stream"
	}
	kafka := src.Type == definition.Kafka
	dl := st.DeadLetter
	set := 0
	for _, f := range []string{dl.Topic, dl.Subject, dl.File} {
		if f != "" {
			set++
		}
	}
	switch {
	case src.Type != definition.Kafka && src.Type != definition.NATS:
		return "unknown type " + src.Type.String()
	case kafka && (len(st.Brokers) == 0 || st.Topic == "" || st.Group == ""):
		return "kafka source without brokers, topic or group"
	case kafka && (st.URL != "" || st.Name != "" || st.Subject != "" || st.Durable != "" || dl.Subject != ""):
		return "kafka source with nats settings"
	case !kafka && (st.URL == "" || st.Name == "" || st.Durable == ""):
		return "nats source without url, stream or durable"
	case !kafka && (st.Brokers != nil || st.Topic != "" || st.Group != "" || dl.Topic != ""):
		return "nats source with kafka settings"
	case st.Format != "json" || st.Start != "earliest" && st.Start != "latest":
		return "bad format or start"
	case st.MaxMessageBytes < 1 || st.MaxMessageBytes > projectfile.MaxMessageBytesMax:
		return "max_message_bytes out of range"
	case set > 1:
		return "more than one dead-letter destination"
	}
	return ""
}
