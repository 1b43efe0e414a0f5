// Package auth owns who may call Kiln's APIs: bearer tokens with scopes
// (read, push, admin) read from a token file that stores only their
// SHA-256 hashes, each token's rate limits, and the TLS certificates the
// listeners present (and, for mutual TLS, the CA their clients' certificates
// must chain to).
//
// The caller loads a Tokens with Load, asks Check once per request with
// the request's Authorization value and the scope its route needs, and
// calls Reload (on SIGHUP) to rotate tokens: a file that does not parse
// leaves the tokens in force and returns why. The HTTP middleware (package
// serve) and the gRPC interceptors (package grpcapi) turn a Check's
// Decision into 401/403/429 or UNAUTHENTICATED/PERMISSION_DENIED/
// RESOURCE_EXHAUSTED. Check allocates nothing: it hashes the presented
// token on the stack, compares it with every known hash in constant time
// (crypto/subtle) and takes from the limiter the token's entry was built
// with at load.
//
// Nothing here logs or keeps a token: only names and hashes.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limits of a token file.
const (
	// MaxTokens is the most tokens a file may list: Check compares a
	// presented token's hash with every one of them.
	MaxTokens = 1000
	// MaxFileBytes is the largest token file read.
	MaxFileBytes = 1 << 20
	// MaxTokenBytes is the longest token Check hashes; longer ones are
	// unknown without being hashed.
	MaxTokenBytes = 256
)

// TokenPrefix starts every token kiln token makes, so that one found in a
// log or a repository is recognisable.
const TokenPrefix = "kiln_"

// Scope is what a token may do.
type Scope uint8

// The scopes. Each is granted on its own: admin does not imply read.
const (
	// Read: features, metadata, training sets, Feast's get-online-features.
	Read Scope = 1 << iota
	// Push: pushing events and importing files, Feast's push.
	Push
	// Admin: the raw rows and the server's stats (/debug/*, gRPC
	// Diagnostics).
	Admin
)

var scopeNames = []struct {
	s    Scope
	name string
}{{Read, "read"}, {Push, "push"}, {Admin, "admin"}}

// String is the scope's name, or the names of a set joined by commas.
func (s Scope) String() string {
	var names []string
	for _, n := range scopeNames {
		if s&n.s != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseScopes reads a comma-separated list of scope names.
func ParseScopes(list string) (Scope, error) {
	var s Scope
	for name := range strings.SplitSeq(list, ",") {
		found := false
		for _, n := range scopeNames {
			if n.name == name {
				s |= n.s
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown scope %q: scopes are read, push and admin, separated by commas", name)
		}
	}
	return s, nil
}

// Limits are a token's rate limits, in requests per second; 0 is no limit.
// A token may spend up to one second's worth at once (at least one
// request).
type Limits struct {
	ReadRPS, PushRPS float64
}

// entry is one token of a file.
type entry struct {
	name   string
	hash   [sha256.Size]byte
	scopes Scope
	limits Limits
	// read and push are the token's limiters, nil without a limit; each
	// is shared by every request with the token, and kept over a reload
	// that leaves the token's name and limits as they were.
	read, push *rate.Limiter
}

// set is one version of the token file.
type set struct {
	entries []entry
	file    string
}

// Tokens are the tokens in force. It is safe for concurrent use.
type Tokens struct {
	file string
	cur  atomic.Pointer[set]
	now  func() time.Time
}

// Load reads a token file; an error names the line that is wrong and why.
func Load(file string) (*Tokens, error) {
	t := &Tokens{file: file, now: time.Now}
	s, err := readFile(file, nil)
	if err != nil {
		return nil, err
	}
	t.cur.Store(s)
	return t, nil
}

// Reload reads the token file again. When it is good, its tokens replace
// those in force (a token whose name and limits did not change keeps its
// limiters' state); when not, the tokens in force stay and the error says
// why. It returns the number of tokens now in force.
func (t *Tokens) Reload() (int, error) {
	old := t.cur.Load()
	s, err := readFile(t.file, old)
	if err != nil {
		return len(old.entries), err
	}
	t.cur.Store(s)
	return len(s.entries), nil
}

// Len is the number of tokens in force.
func (t *Tokens) Len() int { return len(t.cur.Load().entries) }

// Outcome is what a Check decided.
type Outcome uint8

// The outcomes of a Check.
const (
	// Allowed: the token is known, has the scope and is within its limit.
	Allowed Outcome = iota
	// Missing: no bearer token was presented (401).
	Missing
	// Unknown: the token is none of the file's (401).
	Unknown
	// Forbidden: the token lacks the scope (403).
	Forbidden
	// Limited: the token is over its rate limit for the scope (429).
	Limited
)

// Decision is a Check's answer.
type Decision struct {
	Outcome Outcome
	// Name is the token's name in the file (empty when Missing or Unknown).
	Name string
	// Scope is the scope asked for.
	Scope Scope
	// RPS is the limit exceeded, when Limited.
	RPS float64
}

// Message says what the decision means to the caller, naming the token by
// its name (never the token), the scope or the limit.
func (d Decision) Message() string {
	switch d.Outcome {
	case Missing:
		return "this server needs a bearer token: send Authorization: Bearer <token> (kiln token makes one; docs/security.md)"
	case Unknown:
		return "the bearer token is not one this server knows: check the token, or ask for one to be added to the server's token file"
	case Forbidden:
		return fmt.Sprintf("token %q may not %s: its scopes do not include %s", d.Name, scopeVerb(d.Scope), d.Scope)
	case Limited:
		return fmt.Sprintf("token %q is over its %s limit of %g requests/s: retry after the Retry-After seconds, or ask for a higher %s_rps", d.Name, d.Scope, d.RPS, d.Scope)
	}
	return "allowed"
}

func scopeVerb(s Scope) string {
	switch s {
	case Read:
		return "read"
	case Push:
		return "push events"
	}
	return "use the diagnostics routes"
}

// RetryAfter is how long a Limited caller should wait, in whole seconds
// (at least 1).
func (d Decision) RetryAfter() int {
	if d.RPS <= 0 {
		return 1
	}
	return max(1, int(math.Ceil(1/d.RPS)))
}

// Check decides on a request that needs scope, given its Authorization
// value ("Bearer <token>"). A rate-limited scope (read or push) takes one
// request from the token's limiter.
func (t *Tokens) Check(authorization string, scope Scope) Decision {
	return t.CheckToken(bearer(authorization), scope)
}

// bearer is the token of an Authorization value, or "" without one. The
// scheme is case-insensitive (RFC 9110).
func bearer(authorization string) string {
	const scheme = "bearer "
	if len(authorization) <= len(scheme) || !strings.EqualFold(authorization[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(authorization[len(scheme):])
}

// CheckToken is Check given the token itself.
func (t *Tokens) CheckToken(token string, scope Scope) Decision {
	d := Decision{Scope: scope}
	if token == "" {
		d.Outcome = Missing
		return d
	}
	s := t.cur.Load()
	e := s.find(token)
	if e == nil {
		d.Outcome = Unknown
		return d
	}
	d.Name = e.name
	if e.scopes&scope == 0 {
		d.Outcome = Forbidden
		return d
	}
	var l *rate.Limiter
	switch scope {
	case Read:
		l, d.RPS = e.read, e.limits.ReadRPS
	case Push:
		l, d.RPS = e.push, e.limits.PushRPS
	}
	if l != nil && !l.AllowN(t.now(), 1) {
		d.Outcome = Limited
	}
	return d
}

// find returns the entry whose hash is the token's, comparing with every
// entry in constant time so that the time taken says nothing of which
// hashes are near.
func (s *set) find(token string) *entry {
	if len(token) > MaxTokenBytes {
		return nil
	}
	var buf [MaxTokenBytes]byte
	sum := sha256.Sum256(append(buf[:0], token...))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(sum[:], s.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &s.entries[found]
}

// NewToken makes a random token: TokenPrefix and 32 random bytes in
// unpadded URL-safe base64.
func NewToken() string {
	var b [32]byte
	rand.Read(b[:])
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Hash is how a token file stores a token: "sha256:" and the hex SHA-256
// of the token.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Line is a token file's line for a token of that name, scopes and limits.
func Line(name, token string, scopes Scope, l Limits) string {
	line := name + " " + Hash(token) + " " + scopes.String()
	if l.ReadRPS > 0 {
		line += " read_rps=" + strconv.FormatFloat(l.ReadRPS, 'g', -1, 64)
	}
	if l.PushRPS > 0 {
		line += " push_rps=" + strconv.FormatFloat(l.PushRPS, 'g', -1, 64)
	}
	return line
}

// readFile reads and checks a token file; old, if set, lends its
// limiters to the tokens that kept their name and limits.
func readFile(file string, old *set) (*set, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if info.Size() > MaxFileBytes {
		return nil, fmt.Errorf("token file %s: %d bytes, over the %d-byte limit", file, info.Size(), MaxFileBytes)
	}
	buf := make([]byte, 0, info.Size())
	b := bytes.NewBuffer(buf)
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	entries, err := parse(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", file, err)
	}
	s := &set{entries: entries, file: file}
	for i := range s.entries {
		e := &s.entries[i]
		if o := old.byName(e.name); o != nil && o.limits == e.limits {
			e.read, e.push = o.read, o.push
			continue
		}
		e.read, e.push = limiter(e.limits.ReadRPS), limiter(e.limits.PushRPS)
	}
	return s, nil
}

func (s *set) byName(name string) *entry {
	if s == nil {
		return nil
	}
	for i := range s.entries {
		if s.entries[i].name == name {
			return &s.entries[i]
		}
	}
	return nil
}

func limiter(rps float64) *rate.Limiter {
	if rps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(rps), max(1, int(rps)))
}

// parse reads a token file's text: one token a line, as
//
//	NAME sha256:HEX SCOPES [read_rps=N] [push_rps=N]
//
// and, once at most, a line "default read_rps=N push_rps=N" giving the
// limits of the tokens that set none. Blank lines and lines starting with
// # are skipped. Errors name the line.
func parse(text []byte) ([]entry, error) {
	var entries []entry
	var def Limits
	defSeen := false
	// explicit says, per entry, which limits its line set.
	type given struct{ read, push bool }
	var explicit []given
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, MaxFileBytes)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
		}
		if fields[0] == "default" {
			if defSeen {
				return nil, fail("a second default line: give the default limits once")
			}
			defSeen = true
			var g given
			if err := parseLimits(fields[1:], &def, &g.read, &g.push); err != nil {
				return nil, fail("%v", err)
			}
			continue
		}
		if len(fields) < 3 {
			return nil, fail("write NAME sha256:HEX SCOPES [read_rps=N] [push_rps=N] (kiln token prints such a line)")
		}
		e := entry{name: fields[0]}
		if err := CheckName(e.name); err != nil {
			return nil, fail("%v", err)
		}
		hexHash, ok := strings.CutPrefix(fields[1], "sha256:")
		if !ok {
			if strings.HasPrefix(fields[1], TokenPrefix) {
				return nil, fail("token %s is written as it is: the file keeps hashes, never tokens; write its sha256:HEX (kiln token prints it) and make a new token, this one having been stored", e.name)
			}
			return nil, fail("token %s: the second field is the token's hash, sha256:HEX, not %q", e.name, fields[1])
		}
		if len(hexHash) != 2*sha256.Size {
			return nil, fail("token %s: sha256:%s is not 64 hex digits", e.name, hexHash)
		}
		if _, err := hex.Decode(e.hash[:], []byte(hexHash)); err != nil {
			return nil, fail("token %s: sha256:%s is not 64 hex digits", e.name, hexHash)
		}
		scopes, err := ParseScopes(fields[2])
		if err != nil {
			return nil, fail("token %s: %v", e.name, err)
		}
		e.scopes = scopes
		var g given
		if err := parseLimits(fields[3:], &e.limits, &g.read, &g.push); err != nil {
			return nil, fail("token %s: %v", e.name, err)
		}
		for i, o := range entries {
			if o.name == e.name {
				return nil, fail("token name %s is used twice (lines give names once)", e.name)
			}
			if o.hash == e.hash {
				return nil, fail("token %s has the same hash as token %s: make each token on its own", e.name, entries[i].name)
			}
		}
		if len(entries) == MaxTokens {
			return nil, fail("more than %d tokens", MaxTokens)
		}
		entries = append(entries, e)
		explicit = append(explicit, g)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	for i := range entries {
		if !explicit[i].read {
			entries[i].limits.ReadRPS = def.ReadRPS
		}
		if !explicit[i].push {
			entries[i].limits.PushRPS = def.PushRPS
		}
	}
	return entries, nil
}

// parseLimits reads read_rps=N and push_rps=N fields (0: no limit).
func parseLimits(fields []string, l *Limits, readSet, pushSet *bool) error {
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		var dst *float64
		var seen *bool
		switch {
		case ok && k == "read_rps":
			dst, seen = &l.ReadRPS, readSet
		case ok && k == "push_rps":
			dst, seen = &l.PushRPS, pushSet
		default:
			return fmt.Errorf("%q: the limits are read_rps=N and push_rps=N (requests per second, 0 for none)", f)
		}
		if *seen {
			return fmt.Errorf("%s is given twice", k)
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || n > 1e9 {
			return fmt.Errorf("%s=%s: give a number of requests per second from 0 (no limit) to 1e9", k, v)
		}
		*dst, *seen = n, true
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckName checks a token's name as a token file's line would.
func CheckName(name string) error {
	if !validName(name) {
		return fmt.Errorf("token name %q: use up to 64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}
