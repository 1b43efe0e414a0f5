package projectfile

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/kiln-dev/kiln/internal/definition"
)

func (l *loader) kafkaSource(src *definition.Source, st *definition.Stream, m map[string]keyValue, at *streamAt, what string) {
	if be, ok := l.need(m, "brokers", at.at, what+" of type kafka", " with the host:port of some of the Kafka brokers, like brokers: [kafka-1:9092]"); ok {
		l.brokers(st, be, what)
	}
	if te, ok := l.need(m, "topic", at.at, what+" of type kafka", " with the Kafka topic to read, like topic: "+topicLike(src.Name)); ok {
		if t, tp, ok := l.scalar(te.val, te.kpos, "topic of "+what, topicLike(src.Name)); ok && l.kafkaTopic(t, tp, "topic", what) {
			st.Topic = t
		}
	}
	if se, ok := m["sasl"]; ok {
		l.sasl(st, se, what)
	}
	if ge, ok := m["group"]; ok {
		if g, gp, ok := l.scalar(ge.val, ge.kpos, "group of "+what, st.Group); ok {
			if problem := groupProblem(g); problem != "" {
				l.errorf(gp, "group %q of %s: %s: %s, or leave group out for the default, %s", clip(g), what, problem,
					nameFix(g, groupLike(g), natsNameMaxLen), st.Group)
			} else {
				st.Group, at.consumerAt = g, gp
			}
		}
	}
}

// sasl reads sasl: {mechanism: SCRAM-SHA-256, user: kiln, password: {env: KAFKA_PASSWORD}}.
func (l *loader) sasl(st *definition.Stream, se keyValue, what string) {
	const example = "{mechanism: SCRAM-SHA-256, user: kiln, password: {env: KAFKA_PASSWORD}}"
	swhat := "sasl of " + what
	entries, ok := l.mapping(se.val, se.kpos, swhat, example)
	if !ok {
		return
	}
	m := l.keys(entries, swhat, "mechanism", "user", "password")
	sasl := &definition.SASL{}
	complete := true
	if me, ok := l.need(m, "mechanism", se.kpos, swhat, " "+strings.ReplaceAll(definition.SASLMechanisms, ",", " or")); ok {
		if v, vp, ok := l.scalar(me.val, me.kpos, "mechanism of "+swhat, "SCRAM-SHA-256"); ok {
			mechs := strings.Split(definition.SASLMechanisms, ", ")
			if up := strings.ToUpper(v); slices.Contains(mechs, up) {
				sasl.Mechanism = up
			} else {
				l.errorf(vp, "unknown SASL mechanism %q of %s (%sallowed: %s)", clip(v), what, didYouMean(up, mechs), definition.SASLMechanisms)
				complete = false
			}
		}
	} else {
		complete = false
	}
	if ue, ok := l.need(m, "user", se.kpos, swhat, " with the SASL user name, like user: kiln"); ok {
		if u, _, ok := l.scalar(ue.val, ue.kpos, "user of "+swhat, "kiln"); ok {
			sasl.User = u
		}
	} else {
		complete = false
	}
	if pe, ok := l.need(m, "password", se.kpos, swhat, " {env: KAFKA_PASSWORD}"); ok {
		if p, ok := l.secret(pe, "password of "+swhat, "KAFKA_PASSWORD"); ok {
			sasl.Password = p
		}
	} else {
		complete = false
	}
	if complete {
		st.SASL = sasl
	}
}

// brokers reads the seed brokers of a kafka source.
func (l *loader) brokers(st *definition.Stream, be keyValue, what string) {
	const example = "[kafka-1:9092, kafka-2:9092]"
	items, ok := l.filledList(be.val, be.kpos, "brokers of "+what, example, "list the host:port of at least one Kafka broker, like brokers: "+example)
	if !ok {
		return
	}
	seen := map[string]pos{}
	for _, it := range items {
		a, ap, ok := l.hostPort(it, be.kpos, "broker of "+what, "kafka-1:9092")
		if !ok {
			continue
		}
		if !validHostPort(a) {
			l.errorf(ap, "broker %q of %s: write host:port, like %s", clip(a), what, suggestHostPort(a, "9092"))
			continue
		}
		if l.firstListing(seen, "broker", a, ap, what) {
			st.Brokers = append(st.Brokers, a)
		}
	}
}

// validHostPort reports whether a is host:port with a port from 1 to 65535.
func validHostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/@") || !isIntText(port) || port[0] == '+' || port[0] == '-' {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// suggestHostPort guesses the host:port a bad address means.
func suggestHostPort(a, defaultPort string) string {
	host := a
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.TrimRight(host, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[:i], ":") {
		host = host[:i]
	}
	host = strings.Trim(host, "[]")
	if host == "" || strings.ContainsAny(host, " \t/@") || len(host) > 80 {
		host = "kafka-1"
	}
	return net.JoinHostPort(host, defaultPort)
}

func topicChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// kafkaTopic checks a Kafka topic name; key is "topic" or "dead_letter
// topic", for messages.
func (l *loader) kafkaTopic(t string, p pos, key, what string) bool {
	if problem := topicProblem(t); problem != "" {
		l.errorf(p, "%s %q of %s: %s: %s", key, clip(t), what, problem, nameFix(t, topicLike(t), kafkaTopicMaxLen))
		return false
	}
	return true
}

// topicProblem says what is wrong with a Kafka topic name, or "".
func topicProblem(t string) string {
	problem := ""
	switch {
	case t == "":
		problem = "a Kafka topic name cannot be empty"
	case len(t) > kafkaTopicMaxLen:
		problem = fmt.Sprintf("a Kafka topic name has at most %d characters", kafkaTopicMaxLen)
	case t == "." || t == "..":
		problem = "a Kafka topic name cannot be . or .."
	default:
		for _, r := range t {
			if !topicChar(r) {
				problem = fmt.Sprintf("a Kafka topic name has only letters, digits, '.', '_' and '-', not %q", string(r))
				break
			}
		}
	}
	return problem
}

// topicLike turns s into a valid Kafka topic name, for suggestions.
func topicLike(s string) string {
	out := replaceRunes(s, func(r rune) bool { return !topicChar(r) }, '_', kafkaTopicMaxLen)
	if strings.Trim(out, "._") == "" {
		return "events"
	}
	return out
}

// groupProblem says what is wrong with a Kafka consumer group name, or "".
func groupProblem(g string) string {
	if g == "" {
		return "a consumer group name cannot be empty"
	}
	if len(g) > natsNameMaxLen {
		return fmt.Sprintf("a consumer group name has at most %d characters", natsNameMaxLen)
	}
	for _, r := range g {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "a consumer group name has no spaces or control characters"
		}
	}
	return ""
}

func groupLike(g string) string {
	out := replaceRunes(g, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }, '-', natsNameMaxLen)
	if strings.Trim(out, "-") == "" {
		return "kiln-consumers"
	}
	return out
}
