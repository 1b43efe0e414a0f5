package projectfile

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
)

// MaxMessageBytesMax bounds max_message_bytes.
const MaxMessageBytesMax = 64 << 20

const (
	// kafkaTopicMaxLen is the longest Kafka topic name.
	kafkaTopicMaxLen = 249
	// natsNameMaxLen is the longest JetStream stream or consumer name, and
	// the longest consumer group name Kiln accepts.
	natsNameMaxLen = 255
)

// streamAt remembers where a streaming source is declared, for the checks
// across sources.
type streamAt struct {
	src *definition.Source
	// at is the source's name; consumerAt its group or durable (at when
	// defaulted); fileAt its dead_letter file (at when defaulted).
	at, consumerAt, fileAt pos
}

// stream reads the keys of a kafka or nats source.
func (l *loader) stream(p *definition.Project, src *definition.Source, m map[string]keyValue, at *streamAt, what string) *definition.Stream {
	st := &definition.Stream{Format: "json", Start: "earliest", MaxMessageBytes: definition.DefaultMaxMessageBytes}
	at.consumerAt, at.fileAt = at.at, at.at
	consumer := "kiln-" + p.Name + "-" + src.Name
	if src.Type == definition.Kafka {
		st.Group = consumer
		l.kafkaSource(src, st, m, at, what)
	} else {
		st.Durable = consumer
		l.natsSource(src, st, m, at, what)
	}

	if fe, ok := m["format"]; ok {
		if f, fp, ok := l.scalar(fe.val, fe.kpos, "format of "+what, "json"); ok && f != "json" {
			l.errorf(fp, "unknown format %q of %s (%sallowed: json, one event object per message): write format: json, or leave format out", clip(f), what, didYouMean(f, []string{"json"}))
		}
	}
	if se, ok := m["session_timeout"]; ok {
		if v, vp, ok := l.scalar(se.val, se.kpos, "session_timeout of "+what, "10s"); ok {
			d, problem := parseDuration(v)
			switch {
			case problem != "":
				l.errorf(vp, "session_timeout %q of %s: %s", clip(v), what, problem)
			case d < time.Second || d > 30*time.Minute:
				l.errorf(vp, "session_timeout %q of %s is out of range: give 1s to 30m (Kafka brokers usually allow 6s to 30m), or leave it out for the default (45s for kafka, 10s for nats)", clip(v), what)
			default:
				st.SessionTimeout = d
			}
		}
	}
	if se, ok := m["start"]; ok {
		if s, sp, ok := l.scalar(se.val, se.kpos, "start of "+what, "earliest"); ok {
			switch s {
			case "earliest", "latest":
				st.Start = s
			default:
				holder := "topic"
				if src.Type == definition.NATS {
					holder = "stream"
				}
				l.errorf(sp, "unknown start %q of %s (%sallowed: earliest, to read all the %s still holds, or latest, to read only what arrives after Kiln starts)", clip(s), what, didYouMean(s, []string{"earliest", "latest"}, startAliases), holder)
			}
		}
	}
	if me, ok := m["max_message_bytes"]; ok {
		if n, ok := l.maxMessageBytes(me, what); ok {
			st.MaxMessageBytes = n
		}
	}
	if de, ok := m["dead_letter"]; ok {
		l.deadLetter(src, st, de, at, what)
	}
	if te, ok := m["tls"]; ok {
		st.TLS = l.tlsBlock(te, what)
	}
	return st
}

// maxMessageBytes reads max_message_bytes: a whole number of bytes, or a
// whole number followed by KiB or MiB.
func (l *loader) maxMessageBytes(me keyValue, what string) (int, bool) {
	s, sp, ok := l.scalar(me.val, me.kpos, "max_message_bytes of "+what, "1MiB")
	if !ok {
		return 0, false
	}
	n, syntaxOK := parseByteSize(s)
	switch {
	case strings.HasPrefix(s, "-") || syntaxOK && n == 0:
		l.errorf(sp, "max_message_bytes %q of %s must be positive: write the size of the largest message to accept, like 1MiB", clip(s), what)
	case !syntaxOK:
		l.errorf(sp, "max_message_bytes %q of %s: write a whole number of bytes, or a whole number followed by KiB or MiB, like %s", clip(s), what, suggestByteSize(s))
	case n > MaxMessageBytesMax:
		l.errorf(sp, "max_message_bytes %q of %s is more than the maximum, %s", clip(s), what, formatByteSize(MaxMessageBytesMax))
	default:
		return int(n), true
	}
	return 0, false
}

// deadLetter reads dead_letter: exactly one of topic: (kafka), subject:
// (nats) or file:.
func (l *loader) deadLetter(src *definition.Source, st *definition.Stream, de keyValue, at *streamAt, what string) {
	dwhat := "dead_letter of " + what
	place, example := "topic", "{topic: "+topicLike(src.Name+"-dead")+"}"
	if src.Type == definition.NATS {
		place, example = "subject", "{subject: "+topicLike(src.Name+".dead")+"}"
	}
	entries, ok := l.filledMapping(de.val, de.kpos, dwhat, example, fmt.Sprintf("write one of %s: or file:, like dead_letter: %s, or remove dead_letter for the default file, dead-letter/%s.jsonl under the server's --data directory", place, example, src.Name))
	if !ok {
		return
	}
	var first *keyValue
	for i := range entries {
		e := &entries[i]
		switch {
		case e.key == "file" || e.key == place:
		case e.key == "subject":
			l.errorf(e.kpos, "key \"subject\" of %s is for nats sources: a kafka source sends its dead letters to a topic: or a file:", dwhat)
			continue
		case e.key == "topic":
			l.errorf(e.kpos, "key \"topic\" of %s is for kafka sources: a nats source sends its dead letters to a subject: or a file:", dwhat)
			continue
		default:
			l.keys([]keyValue{*e}, dwhat, place, "file")
			continue
		}
		if first != nil {
			l.errorf(e.kpos, "%s has both %s and %s: keep one of them (dead letters go to one place)", dwhat, first.key, e.key)
			continue
		}
		first = e
	}
	if first == nil {
		return
	}
	e := *first
	switch e.key {
	case "topic":
		t, tp, ok := l.scalar(e.val, e.kpos, "dead_letter topic of "+what, topicLike(src.Name+"-dead"))
		if !ok || !l.kafkaTopic(t, tp, "dead_letter topic", what) {
			return
		}
		if t == st.Topic {
			l.errorf(tp, "dead_letter topic %q of %s is the topic it reads: its dead letters would be read again; use another topic, like %s", clip(t), what, topicLike(t+"-dead"))
			return
		}
		st.DeadLetter.Topic = t
	case "subject":
		s, sp, ok := l.subjectValue(e.val, e.kpos, "dead_letter subject of "+what)
		if !ok {
			return
		}
		if problem := subjectProblem(s, false); problem != "" {
			l.errorf(sp, "dead_letter subject %q of %s: %s", clip(s), what, problem)
			return
		}
		if st.Subject != "" && subjectMatches(st.Subject, s) {
			l.errorf(sp, "dead_letter subject %q of %s matches its filter subject %q: its dead letters would be read again; use a subject the stream does not hold, or a file:", clip(s), what, st.Subject)
			return
		}
		st.DeadLetter.Subject = s
	case "file":
		f, fp, ok := l.scalar(e.val, e.kpos, "dead_letter file of "+what, "dead-letter/"+src.Name+".jsonl")
		if !ok {
			return
		}
		if strings.ContainsRune(f, 0) || strings.HasSuffix(f, "/") || filepath.Clean(f) == "." || filepath.Base(filepath.Clean(f)) == ".." {
			l.errorf(fp, "dead_letter file %q of %s is not a file name: write the path of a file, like dead-letter/%s.jsonl", clip(f), what, src.Name)
			return
		}
		st.DeadLetter.File, at.fileAt = f, fp
	}
}

// checkStreams checks what streaming sources must not share: a Kafka
// consumer group on one topic, a durable consumer on one stream, a
// dead-letter file written out.
func (l *loader) checkStreams(streams []streamAt) {
	consumers := map[string]streamAt{}
	files := map[string]streamAt{}
	for _, s := range streams {
		st := s.src.Stream
		key := ""
		switch {
		case s.src.Type == definition.Kafka && st.Topic != "":
			key = "kafka\x00" + st.Topic + "\x00" + st.Group
		case s.src.Type == definition.NATS && st.Name != "":
			key = "nats\x00" + st.Name + "\x00" + st.Durable
		}
		if first, dup := consumers[key]; key != "" && dup {
			if s.src.Type == definition.Kafka {
				l.errorf(s.consumerAt, "source %q reads topic %q in consumer group %q, as source %q does (%v): the two would share the topic's partitions and each see only part of its events; set another group: for one of them", s.src.Name, st.Topic, st.Group, first.src.Name, first.at)
			} else {
				l.errorf(s.consumerAt, "source %q reads stream %q with durable consumer %q, as source %q does (%v): the two would share its messages and each see only part of them; set another durable: for one of them", s.src.Name, st.Name, st.Durable, first.src.Name, first.at)
			}
		} else if key != "" {
			consumers[key] = s
		}
		// A relative file is relative to the server's working directory, and
		// the default files are under its data directory: only files written
		// out are compared.
		if f := st.DeadLetter.File; f != "" {
			f = filepath.Clean(f)
			if first, dup := files[f]; dup {
				l.errorf(s.fileAt, "dead_letter file %q of source %q is also the dead_letter file of source %q (%v): give each source its own file", clip(st.DeadLetter.File), s.src.Name, first.src.Name, first.fileAt)
			} else {
				files[f] = s
			}
		}
	}
}
