package projectfile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// sources reads the sources: mapping. Every source has a type, an event
// time and fields; kafka and nats sources also say where they read from
// (Source.Stream).
func (l *loader) sources(p *definition.Project, e keyValue) {
	const example = "{engagements: {type: push, event_time: ts, fields: {user_id: int64}}}"
	entries, ok := l.filledMapping(e.val, e.kpos, "sources", example, "declare at least one source, like sources: "+example)
	if !ok {
		return
	}
	var streams []streamAt
	for _, se := range entries {
		src := &definition.Source{Name: se.key, MaxFutureSkew: definition.DefaultMaxFutureSkew, MinEventTime: definition.DefaultMinEventTime}
		p.Sources = append(p.Sources, src)
		what, kv, ok := l.declaration(se, "source", "{type: push, event_time: ts, fields: {user_id: int64}}")
		if !ok {
			continue
		}
		// The type says which keys the source takes, so it is read first.
		src.Type = l.sourceType(kv, se.kpos, what)
		m := l.sourceKeys(kv, src.Type, what)
		if src.Type.Streaming() {
			at := streamAt{src: src, at: se.kpos}
			src.Stream = l.stream(p, src, m, &at, what)
			streams = append(streams, at)
		}

		var etPos pos
		if ee, ok := l.need(m, "event_time", se.kpos, what, " with the name of the event-time field, like event_time: ts"); ok {
			if et, p, ok := l.nameValue(ee.val, ee.kpos, "event_time of "+what, "ts"); ok {
				src.EventTime, etPos = et, p
			}
		}

		if me, ok := m["max_future_skew"]; ok {
			if s, sp, ok := l.scalar(me.val, me.kpos, "max_future_skew of "+what, "1m"); ok {
				d, problem := parseDuration(s)
				switch {
				case problem != "":
					l.errorf(sp, "max_future_skew %q: %s", clip(s), problem)
				case d > MaxFutureSkewMax:
					l.errorf(sp, "max_future_skew %q is longer than the maximum, %s", clip(s), definition.FormatWindow(MaxFutureSkewMax))
				default:
					src.MaxFutureSkew = d
				}
			}
		}

		if me, ok := m["min_event_time"]; ok {
			if s, sp, ok := l.scalar(me.val, me.kpos, "min_event_time of "+what, "2000-01-01"); ok {
				if ms, problem := parseMinEventTime(s); problem != "" {
					l.errorf(sp, "min_event_time %q: %s", clip(s), problem)
				} else {
					src.MinEventTime = ms
				}
			}
		}

		if ae, ok := m["archive"]; ok {
			l.sourceArchive(src, ae, what)
		}

		fe, ok := l.need(m, "fields", se.kpos, what, " with the event schema, like fields: {user_id: int64, kind: string}")
		if !ok {
			continue
		}
		fields, ok := l.filledMapping(fe.val, fe.kpos, "fields of "+what, "{user_id: int64, kind: string}", "declare at least one field, like {user_id: int64}")
		if !ok {
			continue
		}
		typeNames := strings.Split(event.TypeNames, ", ")
		for _, f := range fields {
			l.name(f.key, f.kpos, "field name")
			if archiveColumns[f.key] {
				l.errorf(f.kpos, "field %q of %s has the name of a column the event archive adds to every event (event_time, arrival, origin_stream, origin_offset): rename the field", f.key, what)
				continue
			}
			if f.key == src.EventTime {
				l.errorf(f.kpos, "field %q is the event_time of %s (%v) and must not also be in fields: remove it from fields (its value becomes the event time)", f.key, what, etPos)
				continue
			}
			fwhat := fmt.Sprintf("type of field %q of %s", f.key, what)
			tn, tp, ok := l.scalar(f.val, f.kpos, fwhat, "int64")
			if !ok {
				l.markBroken(src, f.key)
				continue
			}
			t, ok := event.ParseType(tn)
			if !ok {
				l.errorf(tp, "unknown type %q of field %q in %s (%sallowed: %s)", clip(tn), f.key, what, didYouMean(tn, typeNames, typeAliases), event.TypeNames)
				l.markBroken(src, f.key)
				continue
			}
			src.Fields = append(src.Fields, definition.Field{Name: f.key, Type: t})
		}
	}
	l.checkStreams(streams)
}

// The keys of a source, by the types that take them.
var (
	pushSourceKeys   = []string{"type", "event_time", "max_future_skew", "min_event_time", "archive", "fields"}
	kafkaOnlyKeys    = []string{"brokers", "topic", "group", "sasl"}
	natsOnlyKeys     = []string{"url", "stream", "subject", "durable", "credentials", "user", "password", "token"}
	streamSourceKeys = []string{"format", "start", "max_message_bytes", "dead_letter", "session_timeout", "tls"}

	// kafkaEquivalent and natsEquivalent name the key of one streaming
	// type that does the job of a key of the other.
	kafkaEquivalent = map[string]string{"url": "brokers", "stream": "topic", "subject": "topic", "durable": "group",
		"credentials": "sasl", "user": "sasl", "password": "sasl", "token": "sasl"}
	natsEquivalent = map[string]string{"brokers": "url", "topic": "stream (or subject)", "group": "durable",
		"sasl": "credentials, user and password, or token"}
)

// sourceType reads the type of a source: push, kafka or nats, or 0 when it
// is missing or not one of these (reported here).
func (l *loader) sourceType(kv []keyValue, at pos, what string) definition.SourceType {
	for _, e := range kv {
		if e.key != "type" {
			continue
		}
		t, tp, ok := l.scalar(e.val, e.kpos, "type of "+what, "push")
		if !ok {
			return 0
		}
		if st, ok := definition.ParseSourceType(t); ok {
			return st
		}
		l.errorf(tp, "unknown type %q of %s (%sallowed: %s)", clip(t), what, didYouMean(t, strings.Split(definition.SourceTypes, ", "), sourceTypeAliases), definition.SourceTypes)
		return 0
	}
	// Guess the type from the keys the source has.
	kafka, nats, stream := false, false, false
	for _, e := range kv {
		kafka = kafka || slices.Contains(kafkaOnlyKeys, e.key)
		nats = nats || slices.Contains(natsOnlyKeys, e.key)
		stream = stream || slices.Contains(streamSourceKeys, e.key)
	}
	switch {
	case kafka && !nats:
		l.errorf(at, "%s has no type: add type: kafka", what)
	case nats && !kafka:
		l.errorf(at, "%s has no type: add type: nats", what)
	case kafka || nats || stream:
		l.errorf(at, "%s has no type: add type: kafka or type: nats", what)
	default:
		l.errorf(at, "%s has no type: add type: push", what)
	}
	return 0
}

// sourceKeys checks the keys of a source of type typ and returns them by
// key. A key of another type says which type takes it; when typ is 0
// (missing or unknown) the keys of every type are accepted.
func (l *loader) sourceKeys(kv []keyValue, typ definition.SourceType, what string) map[string]keyValue {
	var allowed []string
	switch typ {
	case definition.Push:
		allowed = pushSourceKeys
	case definition.Kafka:
		allowed = slices.Concat(pushSourceKeys, kafkaOnlyKeys, streamSourceKeys)
	case definition.NATS:
		allowed = slices.Concat(pushSourceKeys, natsOnlyKeys, streamSourceKeys)
	default:
		return l.keys(kv, what, slices.Concat(pushSourceKeys, kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)...)
	}
	m := make(map[string]keyValue, len(kv))
	for _, e := range kv {
		k := e.key
		switch {
		case slices.Contains(allowed, k):
			m[k] = e
		case typ == definition.Push && slices.Contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type push: remove it, or set type: kafka", k, what)
		case typ == definition.Push && slices.Contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type push: remove it, or set type: nats", k, what)
		case typ == definition.Push && slices.Contains(streamSourceKeys, k):
			l.errorf(e.kpos, "key %q is for kafka and nats sources, but %s has type push (its events arrive through the push API): remove it, or set type: kafka or type: nats", k, what)
		case typ == definition.Kafka && slices.Contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type kafka: use %s instead (or set type: nats)", k, what, kafkaEquivalent[k])
		case typ == definition.NATS && slices.Contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type nats: use %s instead (or set type: kafka)", k, what, natsEquivalent[k])
		default:
			// A typo of a key of another type says so.
			if c := closest(k, slices.Concat(kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)); c != "" && c != closest(k, allowed) && !slices.Contains(allowed, c) {
				l.errorf(e.kpos, "unknown key %q in %s (did you mean %q? it is a key of %s sources; allowed for type %s: %s)", clip(k), what, c, streamTypesOf(c), typ, sortedList(allowed))
				continue
			}
			l.keys([]keyValue{e}, what, allowed...)
		}
	}
	return m
}

// streamTypesOf names the source types that take a streaming key.
func streamTypesOf(key string) string {
	switch {
	case slices.Contains(kafkaOnlyKeys, key):
		return "kafka"
	case slices.Contains(natsOnlyKeys, key):
		return "nats"
	}
	return "kafka and nats"
}

// parseMinEventTime reads min_event_time: a date (2000-01-01, midnight UTC)
// or an RFC 3339 time, from 1970 to 9999, in Unix ms; or a message saying
// what to write.
func parseMinEventTime(s string) (int64, string) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return 0, "write a date, like 2000-01-01 (midnight UTC), or an RFC 3339 time, like 2000-01-01T00:00:00Z"
		}
	}
	if t.Year() < 1970 || t.Year() > 9999 || t.UnixMilli() < 0 {
		return 0, "give a time from 1970-01-01 to 9999-12-31"
	}
	return t.UnixMilli(), ""
}

// archiveColumns are the columns the event archive adds to a source's
// fields (package archive); no field may take their names.
var archiveColumns = map[string]bool{"event_time": true, "arrival": true, "origin_stream": true, "origin_offset": true}

// sourceArchive reads a source's archive settings: {retain: 400d}.
func (l *loader) sourceArchive(src *definition.Source, ae keyValue, what string) {
	entries, ok := l.mapping(ae.val, ae.kpos, "archive of "+what, "{retain: 400d}")
	if !ok {
		return
	}
	for _, e := range entries {
		if e.key != "retain" {
			l.errorf(e.kpos, "unknown key %q in archive of %s (allowed: retain, like archive: {retain: 400d})", clip(e.key), what)
			continue
		}
		s, sp, ok := l.scalar(e.val, e.kpos, "retain of the archive of "+what, "400d")
		if !ok {
			continue
		}
		d, problem := parseDuration(s)
		switch {
		case problem != "":
			l.errorf(sp, "retain %q: %s", clip(s), problem)
		case d < 24*time.Hour:
			l.errorf(sp, "retain %q is shorter than a day, the archive's unit: keep at least 1d (leave archive out to keep every event)", clip(s))
		default:
			src.ArchiveRetain = d
		}
	}
}
