package main

import (
	"context"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// archivedEvent is an archived event of the test sources, as comparable
// text: its fields and event time.
func archivedKey(src *definition.Source, ev archive.Archived) string {
	var b strings.Builder
	for i, f := range src.Fields {
		fmt.Fprintf(&b, "%s=%v ", f.Name, ev.Fields[i])
	}
	fmt.Fprintf(&b, "ts=%d", ev.Time)
	return b.String()
}

// msgKey is archivedKey of the event a good test message carries.
func msgKey(m streamMsg) string {
	return fmt.Sprintf("user_id=%d post_id=%d kind=%q dwell_ms=%v ts=%d", m.user, m.post, m.kind, event.FloatValue(m.dwell), m.ts)
}

// readArchive reads every archived event of a source of the project file
// at projectPath from the archive directory dir, as Scan yields them, and
// checks the files as another reader sees them: no origin is in two files
// unless one of them is a compaction's output whose inputs a crash left
// (Scan, and the next compaction, keep one).
func readArchive(t *testing.T, projectPath, dir, source string) (*definition.Source, []archive.Archived) {
	t.Helper()
	p, err := projectfile.Load(projectPath)
	if err != nil {
		t.Fatal(err)
	}
	src := p.Source(source)
	b, err := archive.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names, err := b.List(ctx, "source="+source+"/")
	if err != nil {
		t.Fatal(err)
	}
	in := map[archive.Origin][]string{}
	for _, o := range names {
		n := o.Name
		data, err := b.Get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := archive.ReadFile(src, n, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			in[ev.Origin] = append(in[ev.Origin], n)
		}
	}
	for o, files := range in {
		if len(files) < 2 {
			continue
		}
		compacted := false
		for _, f := range files {
			compacted = compacted || strings.HasPrefix(path.Base(f), "c-")
		}
		if !compacted {
			t.Errorf("origin %v is in %d batch files: %v", o, len(files), files)
		}
	}
	var out []archive.Archived
	err = archive.New(b).Scan(ctx, src, time.UnixMilli(0), time.Now().Add(24*time.Hour), func(ev archive.Archived) error {
		out = append(out, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return src, out
}

// checkArchiveHolds checks that the archive holds the good messages of
// msgs exactly once each, and nothing else, with origins in streams whose
// names start with streamPrefix.
func checkArchiveHolds(t *testing.T, projectPath, dir string, msgs []streamMsg, streamPrefix string) {
	t.Helper()
	src, evs := readArchive(t, projectPath, dir, "events")
	want := map[string]int{}
	good := 0
	for _, m := range msgs {
		if m.good {
			want[msgKey(m)]++
			good++
		}
	}
	extra := 0
	for _, ev := range evs {
		k := archivedKey(src, ev)
		if want[k] == 0 {
			if extra++; extra <= 5 {
				t.Errorf("archived an event no acknowledged message holds (or twice): %s origin %v", k, ev.Origin)
			}
			continue
		}
		want[k]--
		if !strings.HasPrefix(ev.Origin.Stream, streamPrefix) {
			t.Errorf("event %s archived with origin %v, want a stream %s…", k, ev.Origin, streamPrefix)
		}
	}
	missing := 0
	for k, n := range want {
		if n > 0 {
			if missing += n; missing <= 5 {
				t.Errorf("acknowledged event not archived: %s", k)
			}
		}
	}
	if missing+extra > 0 {
		t.Fatalf("the archive holds %d events: %d acknowledged ones missing, %d extra (of %d)", len(evs), missing, extra, good)
	}
	t.Logf("the archive holds each of the %d acknowledged events once", good)
}
