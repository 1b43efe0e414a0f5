// Package definition owns the resolved model of a Kiln project: the
// entities, sources, feature views and feature services a project declares,
// with their references resolved (a View points at its Entity and Source),
// and the words a project file uses for them (aggregations, source and
// store types, window lengths).
//
// It also holds how to reach the project's backends (TLS, SASL, NATS
// credentials, when Redis acknowledges a write); a credential is a Secret,
// which prints only where it came from, never its value.
//
// Package projectfile reads a project file into this model. A Project is
// immutable once built and safe to share between goroutines.
package definition

import (
	"time"

	"github.com/kiln-dev/kiln/internal/event"
)

// Limits on a project.
const (
	// WindowMin and WindowMax bound the length of a window.
	WindowMin = time.Minute
	WindowMax = 400 * 24 * time.Hour
)

// DefaultMaxFutureSkew is Source.MaxFutureSkew when the project file does
// not set max_future_skew.
const DefaultMaxFutureSkew = time.Minute

// DefaultMinEventTime is Source.MinEventTime when the project file does
// not set min_event_time: 2000-01-01T00:00:00Z, in Unix milliseconds. An
// earlier event time is most often seconds sent for milliseconds, or 0.
const DefaultMinEventTime int64 = 946_684_800_000

// Project is a parsed and checked project file.
type Project struct {
	Name string
	// File is the path the project was read from, for messages.
	File string

	// OnlineStore says where rows live. The zero value is the embedded
	// store (pebble) in the server's data directory.
	OnlineStore OnlineStore

	// Entities, Sources, Views and Services are in the order the file
	// declares them.
	Entities []*Entity
	Sources  []*Source
	Views    []*View
	Services []*Service
}

// OnlineStore configures the online store.
type OnlineStore struct {
	// Type is Pebble (embedded, the default) or Redis (one Redis server or
	// a Redis Cluster: the same configuration serves both).
	Type StoreType
	// Addrs are the Redis addresses (host:port); a cluster needs only some
	// of its nodes, the client discovers the rest.
	Addrs []string
	// Timeout bounds every call to the store; 0 means the backend's
	// default (2s for Redis).
	Timeout time.Duration
	// MaxStaleness bounds how old a row a serving process may answer from
	// its cache when other processes write the store (Redis); 0 means the
	// default, 1s. The embedded store needs none: its writer updates the
	// cache on every commit.
	MaxStaleness time.Duration

	// Username (a Redis ACL user; empty: the default user) and Password
	// authenticate every connection; TLS, when set, encrypts them.
	Username string
	Password Secret
	TLS      *TLS
	// Durability says when a write is acknowledged; with
	// DurabilityReplicated, once Replicas replicas (default 1) confirmed
	// it within ReplicationTimeout (default 1s), or the write fails.
	Durability         Durability
	Replicas           int
	ReplicationTimeout time.Duration
}

// StoreType is the kind of online store.
type StoreType uint8

const (
	// Pebble is the embedded store in the server's data directory: the
	// zero value.
	Pebble StoreType = iota
	// Redis is one Redis server or a Redis Cluster, shared by processes.
	Redis
)

var storeTypeNames = [...]string{Pebble: "pebble", Redis: "redis"}

// OnlineStoreTypes lists the online-store types a project file may use.
const OnlineStoreTypes = "pebble, redis"

// ParseStoreType returns the StoreType a project file names s.
func ParseStoreType(s string) (StoreType, bool) {
	return parseName[StoreType](s, storeTypeNames[:])
}

// String returns the word a project file uses for t.
func (t StoreType) String() string {
	return nameOf(t, storeTypeNames[:], "store?")
}

// MarshalText encodes t as its String, so JSON shows the project file's
// word.
func (t StoreType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Entity is a kind of key, made of one or more key fields.
type Entity struct {
	Name string
	Keys []string
}

// Source is where events come from, with their schema.
type Source struct {
	Name string
	// Type is the kind of source: Push (the HTTP push API), Kafka (a Kafka
	// topic read by a consumer group) or NATS (a NATS JetStream stream read
	// by a durable consumer).
	Type SourceType
	// EventTime names the event-time field. It is not one of Fields: its
	// value is the event's Event.TS.
	EventTime string
	// Fields is the schema in declaration order; an event.Event's Fields
	// are indexed the same way.
	Fields []Field
	// MaxFutureSkew is how far ahead of the server's clock an event time
	// may be before the event is refused. projectfile.Parse sets it
	// to DefaultMaxFutureSkew (one minute) when the file leaves max_future_skew
	// out, so zero means what the file says: max_future_skew: 0s refuses
	// every event time ahead of the clock.
	MaxFutureSkew time.Duration
	// MinEventTime is the earliest event time accepted, in Unix
	// milliseconds: an event stamped before it is refused. projectfile.Parse
	// sets it to DefaultMinEventTime (2000-01-01) when the file leaves
	// min_event_time out; zero accepts every time from 1970 on.
	MinEventTime int64
	// ArchiveRetain is how long the event archive keeps the source's
	// events, by event time; zero keeps them all.
	ArchiveRetain time.Duration
	// Stream says where a kafka or nats source reads from; nil for push.
	Stream *Stream
}

// Stream configures a streaming source (type kafka or nats).
type Stream struct {
	// Kafka: seed brokers (host:port), the topic, and the consumer group
	// whose committed offsets say where reading resumes.
	Brokers []string
	Topic   string
	Group   string

	// NATS: the server URL (nats://host:port), the JetStream stream, an
	// optional filter subject, and the durable consumer's name.
	URL     string
	Name    string // the JetStream stream
	Subject string
	Durable string

	// Format is the encoding of each message's value: "json" (one event
	// object per message, the shape of one element of a push's events).
	Format string
	// Start is where a new consumer group (or durable) begins: "earliest"
	// (the default: everything the topic or stream still holds) or
	// "latest" (only what arrives after it starts).
	Start string
	// MaxMessageBytes is the largest message value decoded; larger ones go
	// to the dead letters. Default 1 MiB.
	MaxMessageBytes int
	// DeadLetter is where messages that cannot be applied go.
	DeadLetter DeadLetter
	// SessionTimeout is how long a process that stopped without leaving (a
	// killed one) keeps what it reads before another process takes it
	// over: the Kafka group session timeout (0: franz-go's default, 45s), or
	// how long a NATS consumer stays pinned to it (0: 10s).
	SessionTimeout time.Duration

	// TLS, when set, encrypts the connections to the brokers (Kafka) or
	// server (NATS).
	TLS *TLS
	// SASL, when set, authenticates a Kafka client.
	SASL *SASL
	// NATSAuth authenticates a NATS client; the zero value sends nothing.
	NATSAuth NATSAuth
}

// DeadLetter is where a streaming source sends the messages it cannot apply
// (undecodable, invalid, too far in the future, older than retention, too
// large), each with the reason. At most one field is set; none means the
// default: a file, dead-letter/<source>.jsonl under the server's data
// directory.
type DeadLetter struct {
	Topic   string // a Kafka topic (kafka sources only)
	Subject string // a NATS subject (nats sources only)
	File    string // a local file of JSON lines
}

// SourceType is the kind of a source. The zero value is no type: a loader
// uses it for a source whose type is missing or unknown.
type SourceType uint8

const (
	// Push sources take events through the HTTP push API.
	Push SourceType = iota + 1
	// Kafka sources read a Kafka topic in a consumer group.
	Kafka
	// NATS sources read a NATS JetStream stream with a durable consumer.
	NATS
)

var sourceTypeNames = [...]string{Push: "push", Kafka: "kafka", NATS: "nats"}

// SourceTypes lists the source types a project file may use.
const SourceTypes = "push, kafka, nats"

// ParseSourceType returns the SourceType a project file names s.
func ParseSourceType(s string) (SourceType, bool) {
	return parseName[SourceType](s, sourceTypeNames[:])
}

// String returns the word a project file uses for t.
func (t SourceType) String() string {
	return nameOf(t, sourceTypeNames[:], "source?")
}

// MarshalText encodes t as its String, so JSON shows the project file's
// word.
func (t SourceType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Streaming reports whether a source of type t reads a stream (kafka or
// nats) and so has a Stream.
func (t SourceType) Streaming() bool { return t == Kafka || t == NATS }

// DefaultMaxMessageBytes is the default Stream.MaxMessageBytes.
const DefaultMaxMessageBytes = 1 << 20

// Field is one typed field of a source schema.
type Field struct {
	Name string
	Type event.Type
}

// FieldIndex returns the index of the named field in s.Fields, or -1.
func (s *Source) FieldIndex(name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// View is a set of features over one entity computed from one source.
type View struct {
	Name     string
	Entity   *Entity
	Source   *Source
	Features []*Feature
}

// Agg is an aggregation.
type Agg uint8

const (
	Count Agg = iota + 1
	Sum
	Mean
	Min
	Max
	Last
)

// AggNames lists the aggregation names a project file may use.
const AggNames = "count, sum, mean, min, max, last"

var aggNames = [...]string{Count: "count", Sum: "sum", Mean: "mean", Min: "min", Max: "max", Last: "last"}

// ParseAgg returns the Agg named s.
func ParseAgg(s string) (Agg, bool) {
	return parseName[Agg](s, aggNames[:])
}

func (a Agg) String() string {
	return nameOf(a, aggNames[:], "agg?")
}

// Feature is one aggregation of a view, over zero or more windows. Without
// windows it covers all time.
type Feature struct {
	Name string
	Agg  Agg
	// Field is the aggregated field; empty for count.
	Field string
	// Where holds the filters an event must pass, all of them, to count.
	Where []Filter
	// Windows are the window lengths, distinct, in the order the file gives
	// them; nil means all time.
	Windows []time.Duration
	// WindowNames are the windows as the file spells them ("24h", "7d"),
	// parallel to Windows; they name the served values (views_24h).
	WindowNames []string
}

// Filter keeps events whose Field equals one of Values. Values have the
// type of the field.
type Filter struct {
	Field  string
	Values []event.Value
}

// Service is the named list of features one model needs.
type Service struct {
	Name     string
	Features []FeatureRef
}

// FeatureRef names one served value: a feature of a view, and one of its
// windows (0 when the feature has no windows).
type FeatureRef struct {
	View    *View
	Feature *Feature
	Window  time.Duration
	// WindowName is the window as the file spells it; empty with Window 0.
	WindowName string
}

// Name returns the served name: "view:feature_window" or "view:feature".
func (r FeatureRef) Name() string {
	if r.Window == 0 {
		return r.View.Name + ":" + r.Feature.Name
	}
	return r.View.Name + ":" + r.Feature.Name + "_" + r.WindowName
}

// Outputs returns the served values of a view in declaration order: each
// feature once per window, or once if it has none.
func (v *View) Outputs() []FeatureRef {
	var refs []FeatureRef
	for _, f := range v.Features {
		if len(f.Windows) == 0 {
			refs = append(refs, FeatureRef{View: v, Feature: f})
			continue
		}
		for i, w := range f.Windows {
			refs = append(refs, FeatureRef{View: v, Feature: f, Window: w, WindowName: f.WindowNames[i]})
		}
	}
	return refs
}

// Entity returns the named entity or nil.
func (p *Project) Entity(name string) *Entity {
	for _, e := range p.Entities {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Source returns the named source or nil.
func (p *Project) Source(name string) *Source {
	for _, s := range p.Sources {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// View returns the named view or nil.
func (p *Project) View(name string) *View {
	for _, v := range p.Views {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Service returns the named service or nil.
func (p *Project) Service(name string) *Service {
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// FormatWindow writes a window length in the largest unit that divides it
// exactly: 30d, 24h is written 1d, 90m, 45s.
func FormatWindow(d time.Duration) string {
	units := []struct {
		suffix string
		size   time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	for _, u := range units {
		if d%u.size == 0 {
			return itoa(int64(d/u.size)) + u.suffix
		}
	}
	return d.String()
}

// parseName returns the index of s in names, for the enums above; the
// empty string is never a name.
func parseName[T ~uint8](s string, names []string) (T, bool) {
	if s == "" {
		return 0, false
	}
	for i, n := range names {
		if n == s {
			return T(i), true
		}
	}
	return 0, false
}

// nameOf returns names[t], or unknown when t has no name.
func nameOf[T ~uint8](t T, names []string, unknown string) string {
	if int(t) < len(names) && names[t] != "" {
		return names[t]
	}
	return unknown
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
