package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheck(t *testing.T) {
	reader, pusher, admin := NewToken(), NewToken(), NewToken()
	file := writeFile(t, "# tokens\n\n"+
		Line("reader", reader, Read, Limits{})+"\n"+
		Line("pusher", pusher, Push|Read, Limits{})+"\n"+
		Line("ops", admin, Admin, Limits{})+"\n")
	tokens, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	f := func(authz string, scope Scope, want Outcome, name string) {
		t.Helper()
		d := tokens.Check(authz, scope)
		if d.Outcome != want || d.Name != name {
			t.Errorf("Check(%.20q, %s) = %v %q, want %v %q", authz, scope, d.Outcome, d.Name, want, name)
		}
		if strings.Contains(d.Message(), "kiln_") {
			t.Errorf("message names a token: %s", d.Message())
		}
	}
	f("Bearer "+reader, Read, Allowed, "reader")
	f("bearer "+reader, Read, Allowed, "reader")
	f("Bearer "+reader, Push, Forbidden, "reader")
	f("Bearer "+reader, Admin, Forbidden, "reader")
	f("Bearer "+pusher, Push, Allowed, "pusher")
	f("Bearer "+pusher, Read, Allowed, "pusher")
	f("Bearer "+admin, Admin, Allowed, "ops")
	f("Bearer "+admin, Read, Forbidden, "ops")
	f("", Read, Missing, "")
	f("Basic dXNlcjpwYXNz", Read, Missing, "")
	f("Bearer ", Read, Missing, "")
	f("Bearer "+reader+"x", Read, Unknown, "")
	f("Bearer "+strings.Repeat("x", 10000), Read, Unknown, "")
	if got := tokens.Check("Bearer "+reader, Push).Message(); !strings.Contains(got, `token "reader" may not push events`) {
		t.Errorf("forbidden message: %s", got)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	tok := NewToken()
	good := Line("a", tok, Read, Limits{})
	for _, c := range []struct{ text, want string }{
		{good + "\nb sha256:abc read\n", "line 2: token b: sha256:abc is not 64 hex digits"},
		{"b " + tok + " read\n", "line 1: token b is written as it is: the file keeps hashes, never tokens"},
		{"\n\n" + strings.Replace(good, "read", "write", 1), `line 3: token a: unknown scope "write"`},
		{good + "\n" + good, "line 2: token name a is used twice"},
		{good + "\n" + strings.Replace(good, "a ", "b ", 1), "line 2: token b has the same hash as token a"},
		{good + " read_rps=-1", "line 1: token a: read_rps=-1: give a number"},
		{good + " burst=3", `line 1: token a: "burst=3": the limits are read_rps=N and push_rps=N`},
		{"a", "line 1: write NAME sha256:HEX SCOPES"},
		{"default read_rps=1\ndefault push_rps=1", "line 2: a second default line"},
		{strings.Replace(good, "a ", "a/b ", 1), `line 1: token name "a/b"`},
	} {
		_, err := parse([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parse(%q) = %v, want %q", c.text, err, c.want)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	a, b := NewToken(), NewToken()
	entries, err := parse([]byte("default read_rps=100 push_rps=10\n" + Line("a", a, Read, Limits{}) + "\n" + Line("b", b, Read, Limits{ReadRPS: 5}) + " push_rps=0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := entries[0].limits; got != (Limits{ReadRPS: 100, PushRPS: 10}) {
		t.Errorf("a's limits %+v, want the default", got)
	}
	if got := entries[1].limits; got != (Limits{ReadRPS: 5}) {
		t.Errorf("b's limits %+v, want its own (push_rps=0: none)", got)
	}
}

// TestReload: a good file replaces the tokens, a bad one changes nothing.
func TestReload(t *testing.T) {
	a, b := NewToken(), NewToken()
	file := writeFile(t, Line("a", a, Read, Limits{}))
	tokens, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, []byte(Line("b", b, Read, Limits{})), 0o600)
	if n, err := tokens.Reload(); err != nil || n != 1 {
		t.Fatalf("Reload = %d, %v", n, err)
	}
	if tokens.CheckToken(a, Read).Outcome != Unknown || tokens.CheckToken(b, Read).Outcome != Allowed {
		t.Fatal("after a reload, the old token is still known or the new one is not")
	}
	os.WriteFile(file, []byte(Line("a", a, Read, Limits{})+"\nbroken line here sha256:00\n"), 0o600)
	n, err := tokens.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 2") || n != 1 {
		t.Fatalf("Reload of a bad file = %d, %v; want the line named and 1 token kept", n, err)
	}
	if tokens.CheckToken(b, Read).Outcome != Allowed || tokens.CheckToken(a, Read).Outcome != Unknown {
		t.Fatal("a bad file changed the tokens in force")
	}
	os.Remove(file)
	if _, err := tokens.Reload(); err == nil || tokens.CheckToken(b, Read).Outcome != Allowed {
		t.Fatal("a missing file changed the tokens in force")
	}
	if _, err := Load(file); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

// TestLimitsPerToken: a token over its limit is refused while another
// token is served, and the limit refills with time.
func TestLimitsPerToken(t *testing.T) {
	a, b := NewToken(), NewToken()
	file := writeFile(t, Line("a", a, Read|Push, Limits{ReadRPS: 2, PushRPS: 1})+"\n"+Line("b", b, Read, Limits{ReadRPS: 2}))
	tokens, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	tokens.now = func() time.Time { return now }
	for i := range 2 {
		if d := tokens.CheckToken(a, Read); d.Outcome != Allowed {
			t.Fatalf("read %d: %v", i, d.Message())
		}
	}
	d := tokens.CheckToken(a, Read)
	if d.Outcome != Limited || d.RetryAfter() != 1 || !strings.Contains(d.Message(), `token "a" is over its read limit of 2 requests/s`) {
		t.Fatalf("third read in the same instant: %v %q retry %d", d.Outcome, d.Message(), d.RetryAfter())
	}
	// Pushes have their own bucket, and b its own.
	if d := tokens.CheckToken(a, Push); d.Outcome != Allowed {
		t.Fatalf("push after reads: %v", d.Message())
	}
	if d := tokens.CheckToken(b, Read); d.Outcome != Allowed {
		t.Fatalf("b refused while a is limited: %v", d.Message())
	}
	now = now.Add(500 * time.Millisecond)
	if d := tokens.CheckToken(a, Read); d.Outcome != Allowed {
		t.Fatalf("after half a second at 2/s: %v", d.Message())
	}
	// A reload that leaves a's limits keeps its bucket (empty now).
	if _, err := tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := tokens.CheckToken(a, Read); d.Outcome != Limited {
		t.Fatalf("a reload refilled a's bucket: %v", d.Outcome)
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	tok := NewToken()
	tokens, err := Load(writeFile(t, Line("a", tok, Read, Limits{ReadRPS: 1e9})))
	if err != nil {
		t.Fatal(err)
	}
	authz := "Bearer " + tok
	if n := testing.AllocsPerRun(100, func() { tokens.Check(authz, Read) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
}

func TestCertsNeedBothFiles(t *testing.T) {
	if _, err := LoadCerts("", "key", ""); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("LoadCerts without a certificate: %v", err)
	}
	if _, err := LoadCerts("nope.pem", "nope-key.pem", ""); err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("LoadCerts of missing files: %v", err)
	}
}

// BenchmarkCheck is a read's cost of authentication and its rate limit,
// with 100 tokens in the file.
func BenchmarkCheck(b *testing.B) {
	var text strings.Builder
	var last string
	for i := range 100 {
		last = NewToken()
		text.WriteString(Line("t"+string(rune('a'+i%26))+strings.Repeat("x", i/26), last, Read, Limits{ReadRPS: 1e9}) + "\n")
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "tokens")
	os.WriteFile(file, []byte(text.String()), 0o600)
	tokens, err := Load(file)
	if err != nil {
		b.Fatal(err)
	}
	authz := "Bearer " + last
	b.ReportAllocs()
	for b.Loop() {
		if tokens.Check(authz, Read).Outcome != Allowed {
			b.Fatal("refused")
		}
	}
}
