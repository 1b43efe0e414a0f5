package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
}

func testProject() *definition.Project {
	src := &definition.Source{Name: "clicks", Type: definition.Push, EventTime: "ts", Fields: []definition.Field{
		{Name: "user_id", Type: event.Int64}, {Name: "kind", Type: event.String},
		{Name: "dwell", Type: event.Float64}, {Name: "paid", Type: event.Bool},
	}}
	return &definition.Project{Name: "p", Sources: []*definition.Source{src}}
}

func open(t tb, dir string, a *archive.Archive, p *definition.Project) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, Archive: a, Project: p, FlushInterval: time.Hour, MaintainInterval: time.Hour,
		Now: func() time.Time { return day0.Add(48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mkEvent returns an event of the test source; stream 0 is a push.
func mkEvent(i int, stream, offset uint64) event.Event {
	return event.Event{
		TS:     day0.Add(time.Duration(i%50) * time.Hour).UnixMilli(),
		Fields: []event.Value{event.IntValue(int64(i)), event.StringValue(fmt.Sprint("k", i%3)), event.FloatValue(float64(i) / 4), {}},
		Origin: event.Origin{Stream: stream, Offset: offset},
	}
}

func appendWait(t tb, s *Spool, src *definition.Source, arrival int64, evs []event.Event) {
	t.Helper()
	if err := s.Append(src, arrival, evs)(); err != nil {
		t.Fatal(err)
	}
}

// scanAll returns every archived event of src, in Scan's order.
func scanAll(t tb, a *archive.Archive, src *definition.Source) []archive.Archived {
	t.Helper()
	var out []archive.Archived
	err := a.Scan(context.Background(), src, time.UnixMilli(0), time.UnixMilli(253402300799999), func(ev archive.Archived) error {
		ev.Fields = slices.Clone(ev.Fields)
		out = append(out, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawOrigins counts every origin over every file of src, duplicates
// included, as a reader of the files sees them.
func rawOrigins(t tb, b archive.Bucket, src *definition.Source) map[archive.Origin]int {
	t.Helper()
	ctx := context.Background()
	names, err := b.List(ctx, "source="+src.Name+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[archive.Origin]int{}
	for _, o := range names {
		data, err := b.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := archive.ReadFile(src, o.Name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			out[ev.Origin]++
		}
	}
	return out
}

func TestEventsReachTheArchive(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	b := archive.NewMem()
	a := archive.New(b)
	s := open(t, t.TempDir(), a, p)
	s.NameStream(7, "kafka/clicks/0")
	arrival := day0.Add(50 * time.Hour).UnixMilli()
	var pushed []event.Event
	for i := range 5 {
		pushed = append(pushed, mkEvent(i, 0, 0))
	}
	appendWait(t, s, src, arrival, pushed[:3])
	appendWait(t, s, src, arrival+1, pushed[3:])
	streamed := []event.Event{mkEvent(10, 7, 100), mkEvent(11, 7, 101), mkEvent(12, 9, 5)}
	appendWait(t, s, src, arrival+2, streamed)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := scanAll(t, a, src)
	want := map[archive.Origin]int64{ // origin → user_id
		{Stream: "push/" + s.ID(), Offset: 0}: 0, {Stream: "push/" + s.ID(), Offset: 1}: 1, {Stream: "push/" + s.ID(), Offset: 2}: 2,
		{Stream: "push/" + s.ID(), Offset: 3}: 3, {Stream: "push/" + s.ID(), Offset: 4}: 4,
		{Stream: "kafka/clicks/0", Offset: 100}: 10, {Stream: "kafka/clicks/0", Offset: 101}: 11,
		{Stream: fmt.Sprintf("stream-%016x", 9), Offset: 5}: 12,
	}
	if len(got) != len(want) {
		t.Fatalf("archived %d events, want %d: %v", len(got), len(want), got)
	}
	for _, ev := range got {
		id, ok := want[ev.Origin]
		if !ok || ev.Fields[0].Int != id {
			t.Errorf("archived %+v: unexpected origin or fields", ev)
		}
		orig := mkEvent(int(id), 0, 0)
		if ev.Time != orig.TS || !ev.Fields[1].Equal(orig.Fields[1]) || !ev.Fields[2].Equal(orig.Fields[2]) || ev.Fields[3].Kind != event.Null {
			t.Errorf("archived %+v, want the fields of %v", ev, orig)
		}
		wantArrival := arrival
		switch {
		case id >= 10:
			wantArrival = arrival + 2
		case id >= 3:
			wantArrival = arrival + 1
		}
		if ev.Arrival != wantArrival {
			t.Errorf("event %d arrival %d, want %d", id, ev.Arrival, wantArrival)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(src, arrival, pushed)(); !errors.Is(err, ErrClosed) {
		t.Errorf("append after Close: %v, want ErrClosed", err)
	}
}

func TestStreamReplayIsJournaledOnce(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	b := archive.NewMem()
	a := archive.New(b)
	dir := t.TempDir()
	batch := func(from, to uint64) []event.Event {
		var evs []event.Event
		for o := from; o <= to; o++ {
			evs = append(evs, mkEvent(int(o), 3, o))
		}
		return evs
	}
	s := open(t, dir, a, p)
	s.NameStream(3, "nats/clicks")
	appendWait(t, s, src, 1, batch(0, 9))
	appendWait(t, s, src, 2, batch(5, 14)) // a replay from offset 5
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A restart, and the stream replayed from before where it was.
	s = open(t, dir, a, p)
	s.NameStream(3, "nats/clicks")
	appendWait(t, s, src, 3, batch(12, 20))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	counts := rawOrigins(t, b, src)
	if len(counts) != 21 {
		names, _ := b.List(context.Background(), "")
		t.Errorf("archived %d offsets, want 21 (0..20): %v in %v", len(counts), counts, names)
	}
	for o, n := range counts {
		if n != 1 || o.Stream != "nats/clicks" || o.Offset > 20 {
			t.Errorf("origin %v in the files %d times", o, n)
		}
	}
	for _, ev := range scanAll(t, a, src) {
		want := int64(1)
		switch {
		case ev.Origin.Offset >= 15:
			want = 3
		case ev.Origin.Offset >= 10:
			want = 2
		}
		if ev.Arrival != want {
			t.Errorf("offset %d arrival %d, want %d (its first journaling)", ev.Origin.Offset, ev.Arrival, want)
		}
	}
}

func TestCrashLeavesAcknowledgedEventsToTheNextStart(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	b := archive.NewMem()
	a := archive.New(b)
	dir := t.TempDir()
	s := open(t, dir, a, p)
	var evs []event.Event
	for i := range 20 {
		evs = append(evs, mkEvent(i, 0, 0))
	}
	appendWait(t, s, src, 1, evs[:10])
	appendWait(t, s, src, 2, evs[10:])
	id := s.ID()
	s.crash()
	if n := len(rawOrigins(t, b, src)); n != 0 {
		t.Fatalf("%d events archived before the crash; the test wants them all in the journal", n)
	}
	// The crash tore a third record, never acknowledged.
	segs, err := s.segments()
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	torn := appendRecord(nil, src.Name, schemaOf(src).hash, 3, []string{"push/x"}, []event.Event{mkEvent(99, 0, 0)}, []int{0}, []uint64{20})
	f, err := os.OpenFile(filepath.Join(dir, segName(segs[0])), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn[:len(torn)-3])
	f.Close()

	s = open(t, dir, a, p)
	if s.ID() != id {
		t.Errorf("journal id %s after restart, was %s", s.ID(), id)
	}
	got := rawOrigins(t, b, src)
	if len(got) != 20 {
		t.Errorf("after restart %d events archived, want the 20 acknowledged", len(got))
	}
	for o, n := range got {
		if n != 1 || o.Stream != "push/"+id || o.Offset >= 20 {
			t.Errorf("origin %v archived %d times", o, n)
		}
	}
	// Push numbers are never reused.
	appendWait(t, s, src, 4, []event.Event{mkEvent(50, 0, 0)})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := rawOrigins(t, b, src)[archive.Origin{Stream: "push/" + id, Offset: 20}]; n != 1 {
		t.Errorf("the first push after the restart is not push number 20 (%d copies)", n)
	}
}

func TestDamagedSegmentStopsTheStart(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	dir := t.TempDir()
	a := archive.New(archive.NewMem())
	s := open(t, dir, a, p)
	appendWait(t, s, src, 1, []event.Event{mkEvent(1, 0, 0)})
	s.crash()
	// An older, closed segment damaged in the middle: it may hold
	// acknowledged events, so the start refuses.
	rec := appendRecord(nil, src.Name, schemaOf(src).hash, 3, []string{"push/x"}, []event.Event{mkEvent(2, 0, 0)}, []int{0}, []uint64{7})
	rec[len(rec)-2] ^= 0xff
	rec = append(rec, appendRecord(nil, src.Name, schemaOf(src).hash, 3, []string{"push/x"}, []event.Event{mkEvent(3, 0, 0)}, []int{0}, []uint64{8})...)
	if err := os.Rename(filepath.Join(dir, segName(0)), filepath.Join(dir, segName(1))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segName(0)), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir, Archive: a, Project: p})
	if err == nil || !strings.Contains(err.Error(), "move the file aside") {
		t.Fatalf("Open over a damaged segment: %v", err)
	}
	// A project that lost the source cannot archive its events either.
	p2 := testProject()
	p2.Sources[0].Name = "views"
	if err := os.Remove(filepath.Join(dir, segName(0))); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir, Archive: a, Project: p2})
	if err == nil || !strings.Contains(err.Error(), `source "clicks", which the project does not declare`) {
		t.Fatalf("Open with the source gone: %v", err)
	}
	p3 := testProject()
	p3.Sources[0].Fields[1].Name = "sort"
	_, err = Open(Options{Dir: dir, Archive: a, Project: p3})
	if err == nil || !strings.Contains(err.Error(), "other fields than the project declares") {
		t.Fatalf("Open with the fields changed: %v", err)
	}
}

func TestConcurrentAppendsShareWrites(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	b := archive.NewMem()
	a := archive.New(b)
	s, err := Open(Options{Dir: t.TempDir(), Archive: a, Project: p, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				appendWait(t, s, src, int64(g), []event.Event{mkEvent(g*1000+i, 0, 0), mkEvent(g*1000+i, uint64(100+g), uint64(i))})
			}
		}()
	}
	wg.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	counts := rawOrigins(t, b, src)
	if len(counts) != 800 {
		t.Errorf("archived %d events, want 800", len(counts))
	}
	for o, n := range counts {
		if n != 1 {
			t.Errorf("origin %v archived %d times", o, n)
		}
	}
}

func TestRetentionAndCompaction(t *testing.T) {
	p := testProject()
	src := p.Sources[0]
	src.ArchiveRetain = 24 * time.Hour
	b := archive.NewMem()
	a := archive.New(b)
	s := open(t, t.TempDir(), a, p) // its clock: day0 + 48h
	for i := range 60 {
		appendWait(t, s, src, 1, []event.Event{mkEvent(i, 0, 0)}) // event times day0 .. day0+49h
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s.maintainNow(context.Background())
	dates, err := a.Dates(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	// Kept: every event at or after day0+24h, so the dates day0+1 and day0+2.
	if len(dates) != 2 || !dates[0].Equal(day0.Add(24*time.Hour)) {
		t.Fatalf("dates after retention %v", dates)
	}
	for _, d := range dates {
		files, _ := a.Files(context.Background(), src, d)
		if len(files) != 1 {
			t.Errorf("date %s has %d files after compaction, want 1", d.Format(time.DateOnly), len(files))
		}
	}
	for _, ev := range scanAll(t, a, src) {
		if ev.Time < day0.Add(24*time.Hour).UnixMilli() {
			t.Errorf("event at %v kept past retention", time.UnixMilli(ev.Time).UTC())
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestProperty drives a journal through random pushes, stream batches
// with replays, flushes, and crashes (of the process, and of the archive's
// store part way through a flush), and checks that in the end the archive
// holds every acknowledged event exactly once, as Scan and as the files.
func TestProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		p := testProject()
		src := p.Sources[0]
		mem := archive.NewMem()
		fb := &failBucket{b: mem, k: -1}
		a := archive.New(fb)
		dir, err := os.MkdirTemp("", "spool-prop")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		s := open(rt, dir, a, p)
		s.NameStream(5, "kafka/t/0")
		want := map[archive.Origin]int64{} // origin → user_id
		pushes, next, serial := uint64(0), uint64(0), 0
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0, 1: // a push
				n := rapid.IntRange(1, 5).Draw(rt, "n")
				var evs []event.Event
				for range n {
					evs = append(evs, mkEvent(serial, 0, 0))
					want[archive.Origin{Stream: "push/" + s.ID(), Offset: int64(pushes)}] = int64(serial)
					serial++
					pushes++
				}
				appendWait(rt, s, src, 1, evs)
			case 2: // a stream batch, maybe replaying from before its end
				from := next - min(next, uint64(rapid.IntRange(0, 4).Draw(rt, "rewind")))
				to := next + uint64(rapid.IntRange(0, 4).Draw(rt, "ahead"))
				var evs []event.Event
				for o := from; o <= to; o++ {
					evs = append(evs, mkEvent(int(1000+o), 5, o))
					want[archive.Origin{Stream: "kafka/t/0", Offset: int64(o)}] = int64(1000 + o)
				}
				next = to + 1
				appendWait(rt, s, src, 1, evs)
			case 3:
				if err := s.Flush(context.Background()); err != nil {
					rt.Fatal(err)
				}
			case 4: // the archive's store fails part way through the next flush, and the process crashes
				fb.failAfter(rapid.IntRange(0, 6).Draw(rt, "ops"))
				s.tryFlush()
				s.crash()
				fb.failAfter(-1)
				s = open(rt, dir, a, p)
				s.NameStream(5, "kafka/t/0")
			case 5: // a plain crash and restart
				s.crash()
				s = open(rt, dir, a, p)
				s.NameStream(5, "kafka/t/0")
			}
		}
		if err := s.Close(context.Background()); err != nil {
			rt.Fatal(err)
		}
		s = open(rt, dir, a, p)
		s.maintainNow(context.Background())
		if err := s.Close(context.Background()); err != nil {
			rt.Fatal(err)
		}
		got := scanAll(rt, a, src)
		if len(got) != len(want) {
			rt.Fatalf("Scan gives %d events, want %d", len(got), len(want))
		}
		for _, ev := range got {
			if id, ok := want[ev.Origin]; !ok || ev.Fields[0].Int != id {
				rt.Fatalf("archived %+v, not acknowledged as such", ev)
			}
		}
		for o, n := range rawOrigins(rt, mem, src) {
			if n != 1 {
				rt.Fatalf("origin %v is in the files %d times after compaction", o, n)
			}
		}
	})
}

// failBucket fails every operation after the first k (k < 0: none fail).
type failBucket struct {
	b  archive.Bucket
	mu sync.Mutex
	k  int
}

var errFail = errors.New("the store failed")

func (f *failBucket) failAfter(k int) {
	f.mu.Lock()
	f.k = k
	f.mu.Unlock()
}

func (f *failBucket) ok() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.k < 0 {
		return true
	}
	if f.k == 0 {
		return false
	}
	f.k--
	return true
}

func (f *failBucket) Put(ctx context.Context, name string, data []byte) error {
	if !f.ok() {
		return errFail
	}
	return f.b.Put(ctx, name, bytes.Clone(data))
}

func (f *failBucket) Get(ctx context.Context, name string) ([]byte, error) {
	if !f.ok() {
		return nil, errFail
	}
	return f.b.Get(ctx, name)
}

func (f *failBucket) List(ctx context.Context, prefix string) ([]archive.Object, error) {
	if !f.ok() {
		return nil, errFail
	}
	return f.b.List(ctx, prefix)
}

func (f *failBucket) Delete(ctx context.Context, name string) error {
	if !f.ok() {
		return errFail
	}
	return f.b.Delete(ctx, name)
}

// BenchmarkAppend journals pushes of 1,000 events and waits for each, as
// a push does: the journal's cost on the push path, allocations included
// (per push, never per event).
func BenchmarkAppend(b *testing.B) {
	p := testProject()
	src := p.Sources[0]
	s, err := Open(Options{Dir: b.TempDir(), Archive: archive.New(archive.NewMem()), Project: p, FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	evs := make([]event.Event, 1000)
	for i := range evs {
		evs[i] = mkEvent(i, 0, 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Append(src, 1, evs)(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
