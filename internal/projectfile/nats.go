package projectfile

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
)

func (l *loader) natsSource(src *definition.Source, st *definition.Stream, m map[string]keyValue, at *streamAt, what string) {
	if ue, ok := l.need(m, "url", at.at, what+" of type nats", " with the NATS server, like url: nats://127.0.0.1:4222"); ok {
		if u, up, ok := l.scalar(ue.val, ue.kpos, "url of "+what, "nats://127.0.0.1:4222"); ok {
			if shown, suggestion, ok := checkNATSURL(u); ok {
				if pu, err := url.Parse(u); err == nil && pu.User != nil {
					pu.User = nil
					l.errorf(up, "url of %s holds credentials (user:password@ or token@): a secret is never written in the project file; write url: %s, and user: with password: {env: NATS_PASSWORD}, or token: {env: NATS_TOKEN}", what, pu.String())
				} else {
					st.URL = u
				}
			} else {
				l.errorf(up, "url %q of %s: write nats://host:port, like %s", clip(shown), what, suggestion)
			}
		}
	}
	streamExample := strings.ToUpper(natsNameLike(src.Name))
	if se, ok := l.need(m, "stream", at.at, what+" of type nats", " with the name of the JetStream stream to read, like stream: "+streamExample); ok {
		if s, sp, ok := l.scalar(se.val, se.kpos, "stream of "+what, streamExample); ok && l.natsName(s, sp, "stream", what) {
			st.Name = s
		}
	}
	if se, ok := m["subject"]; ok {
		if s, sp, ok := l.subjectValue(se.val, se.kpos, "subject of "+what); ok {
			if problem := subjectProblem(s, true); problem != "" {
				l.errorf(sp, "subject %q of %s: %s", clip(s), what, problem)
			} else {
				st.Subject = s
			}
		}
	}
	if de, ok := m["durable"]; ok {
		if d, dp, ok := l.scalar(de.val, de.kpos, "durable of "+what, st.Durable); ok && l.natsName(d, dp, "durable", what) {
			st.Durable, at.consumerAt = d, dp
		}
	}
	l.natsAuth(st, m, what)
}

// natsAuth reads how a nats source authenticates: credentials (a .creds
// file), user and password, or token; at most one of the three.
func (l *loader) natsAuth(st *definition.Stream, m map[string]keyValue, what string) {
	a := &st.NATSAuth
	var ways []keyValue
	if ce, ok := m["credentials"]; ok {
		ways = append(ways, ce)
		if c, cp, ok := l.scalar(ce.val, ce.kpos, "credentials of "+what, "kiln.creds"); ok {
			path := l.relativeToFile(c)
			if f, err := os.Open(path); err != nil {
				l.errorf(cp, "credentials of %s: cannot read the file: %v: check the path (relative paths are from the project file's directory) and that kiln may read it", what, err)
			} else {
				f.Close()
				a.Credentials = path
			}
		}
	}
	ue, hasUser := m["user"]
	pe, hasPassword := m["password"]
	if hasUser {
		ways = append(ways, ue)
		if u, _, ok := l.scalar(ue.val, ue.kpos, "user of "+what, "kiln"); ok {
			a.User = u
		}
		if !hasPassword {
			l.errorf(ue.kpos, "user of %s has no password: add password: {env: NATS_PASSWORD}", what)
		}
	}
	if hasPassword {
		if !hasUser {
			l.errorf(pe.kpos, "password of %s has no user: add user: (the NATS user name), or use token: for a token", what)
		}
		if s, ok := l.secret(pe, "password of "+what, "NATS_PASSWORD"); ok {
			a.Password = s
		}
	}
	if te, ok := m["token"]; ok {
		ways = append(ways, te)
		if s, ok := l.secret(te, "token of "+what, "NATS_TOKEN"); ok {
			a.Token = s
		}
	}
	if len(ways) > 1 {
		slices.SortFunc(ways, func(x, y keyValue) int { return x.kpos.line - y.kpos.line })
		l.errorf(ways[1].kpos, "%s has both %s and %s: a NATS client authenticates one way, with credentials (a .creds file), user and password, or token: keep one", what, ways[0].key, ways[1].key)
	}
}

// checkNATSURL checks a NATS server URL. When it is not valid it returns
// the URL to show in a message (without a password) and one to write.
func checkNATSURL(s string) (shown, suggestion string, ok bool) {
	rest, hasScheme := strings.CutPrefix(s, "nats://")
	if !hasScheme {
		if i := strings.Index(s, "://"); i >= 0 {
			rest = s[i+3:]
		}
	}
	shown = s
	u, err := url.Parse("nats://" + rest)
	if err != nil {
		return shown, "nats://127.0.0.1:4222", false
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			shown = u.Redacted()
		}
	}
	port := u.Port()
	portOK := isIntText(port) && port[0] != '+' && port[0] != '-'
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		portOK = false
	}
	host := u.Hostname()
	if hasScheme && host != "" && portOK && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery && !strings.ContainsAny(host, " \t") {
		return "", "", true
	}
	if host == "" || strings.ContainsAny(host, " \t/") || len(host) > 80 {
		host = "127.0.0.1"
	}
	if !portOK {
		port = "4222"
	}
	return shown, "nats://" + net.JoinHostPort(host, port), false
}

func badNATSNameRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/\\", r)
}

// natsName checks the name of a JetStream stream or durable consumer; key
// is "stream" or "durable", for messages.
func (l *loader) natsName(s string, p pos, key, what string) bool {
	if problem := natsNameProblem(s); problem != "" {
		l.errorf(p, "%s %q of %s: %s: %s", key, clip(s), what, problem, nameFix(s, natsNameLike(s), natsNameMaxLen))
		return false
	}
	return true
}

// natsNameProblem says what is wrong with a JetStream stream or consumer
// name, or "".
func natsNameProblem(s string) string {
	problem := ""
	switch {
	case s == "":
		problem = "a JetStream name cannot be empty"
	case len(s) > natsNameMaxLen:
		problem = fmt.Sprintf("a JetStream name has at most %d characters", natsNameMaxLen)
	default:
		for _, r := range s {
			if badNATSNameRune(r) {
				problem = fmt.Sprintf("a JetStream name has no spaces, '.', '*', '>', '/' or '\\', and %q is one", string(r))
				break
			}
		}
	}
	return problem
}

func natsNameLike(s string) string {
	out := replaceRunes(s, badNATSNameRune, '_', natsNameMaxLen)
	if strings.Trim(out, "_") == "" {
		return "EVENTS"
	}
	return out
}

// subjectValue reads a NATS subject, explaining the quotes a subject that
// starts with * or > needs in YAML.
func (l *loader) subjectValue(n ast.Node, at pos, what string) (string, pos, bool) {
	switch n.(type) {
	case *ast.AliasNode:
		l.errorf(posOf(n), "%s: YAML reads a value that starts with * as an alias: quote the subject, like \"*.engagements\"", what)
		return "", posOf(n), false
	case *ast.LiteralNode:
		l.errorf(posOf(n), "%s: YAML reads a value that starts with > or | as a block of text: quote the subject, like \">\"", what)
		return "", posOf(n), false
	}
	return l.scalar(n, at, what, "engagements.>")
}

// subjectProblem says what is wrong with a NATS subject, or "". A filter
// subject may hold the wildcards * (one token) and > (the rest); a subject
// to publish to may not.
func subjectProblem(s string, wildcards bool) string {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "a subject has no spaces or control characters"
		}
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return "a subject is tokens separated by single dots, like engagements.web: no empty token, leading, trailing or double dot"
		case !strings.ContainsAny(t, "*>"):
		case !wildcards:
			return "dead letters are published to this subject, so it cannot hold the wildcards * or >: write a plain subject, like engagements.dead"
		case t == "*":
		case t == ">" && i == len(tokens)-1:
		case t == ">":
			return "> matches the rest of a subject and must be its last token, like engagements.>"
		default:
			return "a wildcard is a whole token: write engagements.* or engagements.>, not engagements*"
		}
	}
	return ""
}

// subjectMatches reports whether subject (without wildcards) matches the
// filter subject filter.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || t != "*" && t != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}
