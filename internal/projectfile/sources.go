package projectfile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// sources reads the sources: mapping. Every source has a type, an event
// time and fields; kafka and nats sources also say where they read from
// (Source.Stream).
func (l *loader) sources(p *definition.Project, e entry) {
	const example = "{engagements: {type: push, event_time: ts, fields: {user_id: int64}}}"
	entries, ok := l.mapping(e.val, e.kpos, "sources", example)
	if !ok {
		return
	}
	if len(entries) == 0 {
		l.errorf(e.kpos, "sources is empty: declare at least one source, like sources: %s", example)
		return
	}
	var streams []streamAt
	for _, se := range entries {
		l.name(se.key, se.kpos, "source name")
		what := fmt.Sprintf("source %q", clip(se.key))
		src := &definition.Source{Name: se.key, MaxFutureSkew: definition.DefaultMaxFutureSkew}
		p.Sources = append(p.Sources, src)
		kv, ok := l.mapping(se.val, se.kpos, what, "{type: push, event_time: ts, fields: {user_id: int64}}")
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
		if ee, ok := m["event_time"]; ok {
			if et, p, ok := l.nameValue(ee.val, ee.kpos, "event_time of "+what, "ts"); ok {
				src.EventTime, etPos = et, p
			}
		} else {
			l.errorf(se.kpos, "%s has no event_time: add event_time: with the name of the event-time field, like event_time: ts", what)
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

		fe, ok := m["fields"]
		if !ok {
			l.errorf(se.kpos, "%s has no fields: add fields: with the event schema, like fields: {user_id: int64, kind: string}", what)
			continue
		}
		fields, ok := l.mapping(fe.val, fe.kpos, "fields of "+what, "{user_id: int64, kind: string}")
		if !ok {
			continue
		}
		if len(fields) == 0 {
			l.errorf(fe.kpos, "fields of %s is empty: declare at least one field, like {user_id: int64}", what)
			continue
		}
		typeNames := strings.Split(event.TypeNames, ", ")
		for _, f := range fields {
			l.name(f.key, f.kpos, "field name")
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
	pushSourceKeys   = []string{"type", "event_time", "max_future_skew", "fields"}
	kafkaOnlyKeys    = []string{"brokers", "topic", "group"}
	natsOnlyKeys     = []string{"url", "stream", "subject", "durable"}
	streamSourceKeys = []string{"format", "start", "max_message_bytes", "dead_letter", "session_timeout"}

	// kafkaEquivalent and natsEquivalent name the key of one streaming
	// type that does the job of a key of the other.
	kafkaEquivalent = map[string]string{"url": "brokers", "stream": "topic", "subject": "topic", "durable": "group"}
	natsEquivalent  = map[string]string{"brokers": "url", "topic": "stream (or subject)", "group": "durable"}
)

// sourceType reads the type of a source: push, kafka or nats, or 0 when it
// is missing or not one of these (reported here).
func (l *loader) sourceType(kv []entry, at pos, what string) definition.SourceType {
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
		kafka = kafka || contains(kafkaOnlyKeys, e.key)
		nats = nats || contains(natsOnlyKeys, e.key)
		stream = stream || contains(streamSourceKeys, e.key)
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
func (l *loader) sourceKeys(kv []entry, typ definition.SourceType, what string) map[string]entry {
	var allowed []string
	switch typ {
	case definition.Push:
		allowed = pushSourceKeys
	case definition.Kafka:
		allowed = concat(pushSourceKeys, kafkaOnlyKeys, streamSourceKeys)
	case definition.NATS:
		allowed = concat(pushSourceKeys, natsOnlyKeys, streamSourceKeys)
	default:
		return l.keys(kv, what, concat(pushSourceKeys, kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)...)
	}
	m := make(map[string]entry, len(kv))
	for _, e := range kv {
		k := e.key
		switch {
		case contains(allowed, k):
			m[k] = e
		case typ == definition.Push && contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type push: remove it, or set type: kafka", k, what)
		case typ == definition.Push && contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type push: remove it, or set type: nats", k, what)
		case typ == definition.Push && contains(streamSourceKeys, k):
			l.errorf(e.kpos, "key %q is for kafka and nats sources, but %s has type push (its events arrive through the push API): remove it, or set type: kafka or type: nats", k, what)
		case typ == definition.Kafka && contains(natsOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for nats sources, but %s has type kafka: use %s instead (or set type: nats)", k, what, kafkaEquivalent[k])
		case typ == definition.NATS && contains(kafkaOnlyKeys, k):
			l.errorf(e.kpos, "key %q is for kafka sources, but %s has type nats: use %s instead (or set type: kafka)", k, what, natsEquivalent[k])
		default:
			// A typo of a key of another type says so.
			if c := closest(k, concat(kafkaOnlyKeys, natsOnlyKeys, streamSourceKeys)); c != "" && c != closest(k, allowed) && !contains(allowed, c) {
				sorted := append([]string(nil), allowed...)
				sort.Strings(sorted)
				l.errorf(e.kpos, "unknown key %q in %s (did you mean %q? it is a key of %s sources; allowed for type %s: %s)", clip(k), what, c, streamTypesOf(c), typ, strings.Join(sorted, ", "))
				continue
			}
			l.keys([]entry{e}, what, allowed...)
		}
	}
	return m
}

// streamTypesOf names the source types that take a streaming key.
func streamTypesOf(key string) string {
	switch {
	case contains(kafkaOnlyKeys, key):
		return "kafka"
	case contains(natsOnlyKeys, key):
		return "nats"
	}
	return "kafka and nats"
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
