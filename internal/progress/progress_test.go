package progress

import (
	"bytes"
	"testing"
	"time"
)

// Off a terminal: a line as a phase starts, then at most one per interval,
// and one at the end of a phase; NewBar writes nothing.
func TestLines(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, 5*time.Second)
	at := time.Unix(0, 0)
	r.now = func() time.Time { return at }
	r.Update("importing", 0, 1000, true)
	r.Update("importing", 100, 1000, true)
	at = at.Add(2 * time.Second)
	r.Update("importing", 200, 1000, true)
	if buf.String() != "importing: 0% (0 B of 1000 B)\n" {
		t.Fatalf("want one line as the phase starts, none until an interval has passed: %q", buf.String())
	}
	at = at.Add(4 * time.Second)
	r.Update("importing", 2<<20, 4<<20, true)
	at = at.Add(time.Second)
	r.Update("importing", 3<<20, 4<<20, true)
	r.Update("importing", 4<<20, 4<<20, true)
	r.Update("rebuilding v", 3, 3, false)
	want := "importing: 0% (0 B of 1000 B)\nimporting: 50% (2.0 MiB of 4.0 MiB)\nimporting: 100% (4.0 MiB of 4.0 MiB)\nrebuilding v: 100% (3 of 3)\n"
	if buf.String() != want {
		t.Errorf("lines:\n%s\nwant:\n%s", buf.String(), want)
	}
	var quiet bytes.Buffer
	b := NewBar(&quiet)
	b.Update("x", 1, 1, false)
	b.Finish()
	if quiet.Len() != 0 {
		t.Errorf("NewBar off a terminal wrote %q", quiet.String())
	}
}
