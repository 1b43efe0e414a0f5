package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/pebble"
	"github.com/kiln-dev/kiln/internal/tile"
)

// features reads every feature of users 0..9 and posts 0..9.
func (f *fixture) features(t *testing.T) map[string]map[string]event.Value {
	t.Helper()
	out := map[string]map[string]event.Value{}
	for _, view := range []string{"by_user", "by_post"} {
		for k := range int64(10) {
			if vals := f.read(t, view, k); vals != nil {
				out[view+"/"+string(rune('0'+k))] = vals
			}
		}
	}
	return out
}

// on starts a writer of f's project over st with f's clock.
func (f *fixture) on(t *testing.T, st store.Store, opts Options) *fixture {
	t.Helper()
	opts.Now = f.clock.now
	pl, err := New(f.project, f.plans, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	return &fixture{project: f.project, plans: f.plans, store: st, w: pl, clock: f.clock}
}

func openMem(t *testing.T, fs vfs.FS) *pebble.Store {
	t.Helper()
	st, err := pebble.Open("db", pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// logRecords counts the records of the event log in st.
func logRecords(t *testing.T, st *pebble.Store) int {
	t.Helper()
	n := 0
	if err := st.Scan(context.Background(), store.Range{Start: logPrefix, End: logEnd}, func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriteBehindSurvivesCrashes pushes the same events into a writer
// writing behind and into one writing through, and at random moments takes
// what the first one's disk would hold after a power cut (a crash clone of
// its file system, with a random part of the unsynced data): a writer
// started on it must replay its log into exactly the features of every
// acknowledged push, under any number of partitions, and must still know
// which streamed events its rows hold.
func TestWriteBehindSurvivesCrashes(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { writeBehindSurvivesCrashes(t, seed) })
	}
}

func writeBehindSurvivesCrashes(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 8))
	fs := vfs.NewCrashableMem()
	ref := newFixture(t, nil, Options{WriteThrough: true, Partitions: 2})
	wb := ref.on(t, openMem(t, fs), Options{Partitions: 3, MaxBatchRows: 5, CheckpointRows: 7})
	src := ref.project.Source("clicks")
	kinds := []string{"a", "b", "c"}
	offset := 0
	crashes := 0
	for round := range 60 {
		var evs []event.Event
		if round%3 == 0 { // a streamed batch
			evs = ref.streamEvents(7, offset, 1+rng.IntN(30))
			offset += len(evs)
		} else {
			for range 1 + rng.IntN(40) {
				evs = append(evs, ref.ev(time.Duration(rng.IntN(7200))*time.Second, rng.Int64N(10), rng.Int64N(10),
					kinds[rng.IntN(3)], float64(rng.IntN(1000))/8))
			}
		}
		for _, f := range []*fixture{ref, wb} {
			if _, err := f.w.Push(context.Background(), src, evs); err != nil {
				t.Fatal(err)
			}
		}
		ref.clock.add(time.Duration(rng.IntN(90)) * time.Second)
		if rng.IntN(6) != 0 {
			continue
		}
		crashes++
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		st := openMem(t, clone)
		records := logRecords(t, st)
		after := ref.on(t, st, Options{Partitions: 1 + rng.IntN(4)})
		if got, want := after.features(t), ref.features(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: after a crash with %d log records, features\n%v\nwant\n%v", round, records, got, want)
		}
		if s := after.w.Stats(); s.Recovered != int64(records) {
			t.Fatalf("round %d: replayed %d log records, the log held %d", round, s.Recovered, records)
		}
		if n := logRecords(t, st); n != 0 {
			t.Fatalf("round %d: %d log records left after the replay", round, n)
		}
		// The replayed rows know their streams' positions: a replay of the
		// stream changes nothing.
		if _, err := after.w.Push(context.Background(), src, ref.streamEvents(7, 0, offset)); err != nil {
			t.Fatal(err)
		}
		if got, want := after.features(t), ref.features(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: a replayed stream counted again", round)
		}
		after.w.Close()
		st.Close()
	}
	if crashes < 5 {
		t.Fatalf("only %d crashes", crashes)
	}
	s := wb.w.Stats()
	if s.Checkpoints == 0 || s.RowsWritten == 0 {
		t.Fatalf("stats %+v: the writer never checkpointed", s)
	}
	t.Logf("%d crashes; %d checkpoints, %d rows written back, %d store writes", crashes, s.Checkpoints, s.RowsWritten, s.Writes)
}

// TestCheckpointWritesRowsAndDeletesLog checks what the store holds: after
// commits, the log and no rows; after a checkpoint (forced by the interval
// on the injected clock) the rows and no log; after Close, everything.
func TestCheckpointWritesRowsAndDeletesLog(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	f := newFixture(t, st, Options{Partitions: 1, CheckpointInterval: time.Hour})
	src := f.project.Source("clicks")
	push := func() {
		t.Helper()
		if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 2, "a", 1)}); err != nil {
			t.Fatal(err)
		}
	}
	inStore := func() bool {
		found := false
		k := tile.AppendKey(nil, "by_user", []event.Value{event.IntValue(1)})
		if err := st.Get(context.Background(), [][]byte{k}, func(_ int, _ []byte, ok bool) { found = ok }); err != nil {
			t.Fatal(err)
		}
		return found
	}
	push()
	push()
	if n := logRecords(t, st); n != 2 || inStore() {
		t.Fatalf("after two commits: %d log records (want 2), row in the store %v (want false)", n, inStore())
	}
	if n := f.read(t, "by_user", 1)["by_user:n_1h"].Int; n != 2 {
		t.Fatalf("a read sees count %d, want 2", n)
	}
	f.clock.add(2 * time.Hour)
	push() // more than CheckpointInterval after the first commit: checkpoints
	// The checkpoint runs after the push is answered; the partition takes
	// the next push only once it is done.
	push()
	if n := logRecords(t, st); n != 1 || !inStore() || f.w.Stats().Checkpoints != 1 {
		t.Fatalf("after the interval: %d log records (want 1: the push after the checkpoint), row in the store %v (want true), %d checkpoints (want 1)",
			n, inStore(), f.w.Stats().Checkpoints)
	}
	if n := f.read(t, "by_user", 1)["by_user:n_1h"].Int; n != 2 {
		t.Fatalf("a read sees count %d two hours on, want 2", n)
	}
	push()
	if err := f.w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := logRecords(t, st); n != 0 {
		t.Fatalf("after Close: %d log records", n)
	}
	g := f.on(t, st, Options{WriteThrough: true})
	if n := g.read(t, "by_user", 1)["by_user:n_1h"].Int; n != 3 {
		t.Fatalf("the store holds count %d after Close, want 3", n)
	}
}

// flakyLogStore is the embedded store whose log appends (Apply with sync)
// fail on demand.
type flakyLogStore struct {
	*pebble.Store
	failAppend atomic.Bool
}

func (s *flakyLogStore) Apply(ctx context.Context, batch []store.KV, del store.Range, sync bool) error {
	if sync && s.failAppend.Load() {
		return errors.New("disk full")
	}
	return s.Store.Apply(ctx, batch, del, sync)
}

// A push whose log append fails is refused and leaves no trace: rows change
// only once their events are in the log.
func TestFailedLogAppendAcknowledgesNothing(t *testing.T) {
	st := &flakyLogStore{Store: openMem(t, vfs.NewMem())}
	f := newFixture(t, st, Options{Partitions: 1})
	src := f.project.Source("clicks")
	push := func() error {
		_, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, 1, 1, "a", 1)})
		return err
	}
	count := func() int64 { return f.read(t, "by_user", 1)["by_user:n_1h"].Int }
	if err := push(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st.failAppend.Store(true)
		if err := push(); err == nil {
			t.Fatal("a push succeeded while the log could not be written")
		}
		st.failAppend.Store(false)
		if err := push(); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 3 {
		t.Fatalf("count %d, want 3 (the failed pushes must not count)", n)
	}
	if s := f.w.Stats(); s.WriteErrors != 2 {
		t.Fatalf("stats %+v: want 2 write errors", s)
	}
	// A last checkpoint that fails is reported by Close, and the log keeps
	// what it would have written: the next start replays it.
	st.failAppend.Store(true)
	if err := f.w.Close(); err == nil {
		t.Fatal("Close reported no error while the store refused the last checkpoint")
	}
	st.failAppend.Store(false)
	g := f.on(t, st, Options{Partitions: 1})
	if n := g.read(t, "by_user", 1)["by_user:n_1h"].Int; n != 3 || g.w.Stats().Recovered == 0 {
		t.Fatalf("after a failed last checkpoint: count %d (want 3), %d log records replayed", n, g.w.Stats().Recovered)
	}
}

// A log record decodes into the requests it was made of, each op routed to
// the partition Push routes it to.
func TestLogRecordRoundTrip(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 3})
	evs := append(f.streamEvents(4, 100, 20), f.ev(time.Minute, 3, 4, "b", 2.5), f.ev(0, -7, 1<<40, "", -1))
	evs[len(evs)-1].Fields[2] = event.Value{}                                       // a null field
	evs[len(evs)-2].Fields[2] = event.StringValue(strings.Repeat("long kind ", 40)) // an event over 127 bytes
	var reqs []*request
	for i, now := range []int64{1000, 2000} {
		r := &request{now: now}
		for j := range evs[i*11 : i*11+11] {
			ev := &evs[i*11+j]
			for _, fd := range f.w.feedList {
				k := appendRowKey(nil, fd, ev)
				_, h := f.w.route(k)
				r.add(fd, k, h, ev, j%3 == 0) // some ops of Replay
			}
		}
		reqs = append(reqs, r)
	}
	rec := f.w.appendRecord(nil, reqs)
	got, skipped, err := f.w.decodeRecord(rec)
	if err != nil || skipped != 0 {
		t.Fatalf("decoding: %v, %d ops passed over", err, skipped)
	}
	// Flatten both sides to (partition, now, view, key, event).
	type opAt struct {
		part int
		now  int64
		view int
		key  string
		hash uint64
		ev   event.Event
		rep  bool
	}
	var want, have []opAt
	for _, r := range reqs {
		for part := range f.w.partitions {
			for _, op := range r.ops {
				key := r.keys[op.from:op.to]
				if p, _ := f.w.route(key); p == part {
					want = append(want, opAt{part, r.now, op.feed.index, string(key), op.hash, *op.ev, op.replay})
				}
			}
		}
	}
	// decodeRecord groups by request, then by partition; order want alike.
	for part, r := range got {
		for _, r := range append([]*request{r}, nextOf(r)...) {
			if r == nil {
				continue
			}
			for _, op := range r.ops {
				have = append(have, opAt{part, r.now, op.feed.index, string(r.keys[op.from:op.to]), op.hash, *op.ev, op.replay})
			}
		}
	}
	byNowPart := func(ops []opAt) map[[2]int64][]opAt {
		m := map[[2]int64][]opAt{}
		for _, o := range ops {
			k := [2]int64{o.now, int64(o.part)}
			m[k] = append(m[k], o)
		}
		return m
	}
	if !reflect.DeepEqual(byNowPart(have), byNowPart(want)) {
		t.Fatalf("decoded\n%v\nwant\n%v", have, want)
	}
}

// A record of the first log version, written before ops could be replays,
// still decodes: every op an ordinary one.
func TestLogRecordVersion1(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 2})
	evs := f.streamEvents(4, 100, 5)
	// Version 1: the header with version byte 1, then ops with the bare
	// view index.
	rec := []byte{1}
	rec = binary.AppendUvarint(rec, uint64(len(f.w.feedList)))
	for _, fd := range f.w.feedList {
		rec = binary.AppendUvarint(rec, uint64(len(fd.view.Name)))
		rec = append(rec, fd.view.Name...)
		rec = binary.LittleEndian.AppendUint32(rec, fd.plan.Fingerprint)
	}
	rec = binary.AppendVarint(rec, 1000)
	rec = binary.AppendUvarint(rec, uint64(len(evs)))
	fd := f.w.feedList[0]
	for i := range evs {
		rec = binary.AppendUvarint(rec, uint64(fd.index))
		ev := fd.plan.AppendEvent(nil, &evs[i])
		rec = binary.AppendUvarint(rec, uint64(len(ev)))
		rec = append(rec, ev...)
	}
	got, skipped, err := f.w.decodeRecord(rec)
	if err != nil || skipped != 0 {
		t.Fatalf("decoding: %v, %d ops passed over", err, skipped)
	}
	n := 0
	for _, r := range got {
		for _, r := range append([]*request{r}, nextOf(r)...) {
			if r == nil {
				continue
			}
			for _, op := range r.ops {
				if op.replay || op.feed != fd || r.now != 1000 {
					t.Fatalf("op %+v of a version 1 record", op)
				}
				n++
			}
		}
	}
	if n != len(evs) {
		t.Fatalf("%d ops, want %d", n, len(evs))
	}
}

func nextOf(r *request) []*request {
	if r == nil {
		return nil
	}
	return r.next
}

// FuzzDecodeRecord feeds arbitrary bytes to the log record decoder: it must
// refuse them with errLogRecord or decode them, never panic.
func FuzzDecodeRecord(f *testing.F) {
	fx := newFixture(f, nil, Options{Partitions: 2})
	evs := append(fx.streamEvents(4, 100, 3), fx.ev(time.Minute, 3, 4, "b", 2.5))
	r := &request{now: 1_790_000_000_000}
	for i := range evs {
		for _, fd := range fx.w.feedList {
			k := appendRowKey(nil, fd, &evs[i])
			_, h := fx.w.route(k)
			r.add(fd, k, h, &evs[i], i%2 == 0)
		}
	}
	f.Add(fx.w.appendRecord(nil, []*request{r}))
	f.Add(fx.w.appendRecord(nil, []*request{r, r}))
	f.Add([]byte{logVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		reqs, _, err := fx.w.decodeRecord(data)
		if err != nil {
			if !errors.Is(err, errLogRecord) {
				t.Fatalf("error %v does not wrap errLogRecord", err)
			}
			return
		}
		for part, r := range reqs {
			for _, r := range append([]*request{r}, nextOf(r)...) {
				if r == nil {
					continue
				}
				for _, op := range r.ops {
					if got, _ := fx.w.route(r.keys[op.from:op.to]); got != part {
						t.Fatalf("op routed to partition %d, its key belongs to %d", part, got)
					}
				}
			}
		}
	})
}

// Readers read rows while commits fold into them and frequent checkpoints
// write them back and take them out of the overlay: every row read must
// decode (run with -race: the row's lock keeps the partition out while a reader
// encodes it), and counts a reader sees never go down.
func TestReadersSeeWholeRowsWhileWritingBehind(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 2, MaxBatchRows: 3, CheckpointRows: 4})
	src := f.project.Source("clicks")
	plan := f.plans[f.project.View("by_user")]
	keys := make([][]byte, 10)
	for u := range keys {
		keys[u] = tile.AppendKey(nil, "by_user", []event.Value{event.IntValue(int64(u))})
	}
	done := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			row := plan.NewRow()
			out := make([]event.Value, len(plan.Outputs))
			last := make([]int64, len(keys))
			var err error
			for {
				select {
				case <-done:
					errs <- err
					return
				default:
				}
				gerr := f.w.Get(context.Background(), keys, func(i int, value []byte, found bool) {
					if !found || err != nil {
						return
					}
					if derr := plan.DecodeRow(value, row); derr != nil {
						err = derr
						return
					}
					plan.Eval(row, f.clock.ms.Load(), out)
					if n := out[0].Int; n < last[i] {
						err = fmt.Errorf("user %d: count went from %d to %d", i, last[i], n)
					} else {
						last[i] = n
					}
				})
				if err == nil {
					err = gerr
				}
			}
		}()
	}
	for i := range 300 {
		if _, err := f.w.Push(context.Background(), src, []event.Event{f.ev(0, int64(i%10), int64(i%7), "a", 1)}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if s := f.w.Stats(); s.Checkpoints == 0 {
		t.Fatal("no checkpoint ran")
	}
}

// A log written under one project is replayed under a changed one: the
// events of an unchanged view are replayed, those of a view whose
// definition changed (its rows start afresh) are passed over.
func TestLogReplaysUnderAChangedProject(t *testing.T) {
	fs := vfs.NewCrashableMem()
	ref := newFixture(t, nil, Options{WriteThrough: true})
	wb := ref.on(t, openMem(t, fs), Options{})
	src := ref.project.Source("clicks")
	evs := ref.streamEvents(0, 0, 50)
	for _, f := range []*fixture{ref, wb} {
		if _, err := f.w.Push(context.Background(), src, evs); err != nil {
			t.Fatal(err)
		}
	}
	st := openMem(t, fs.CrashClone(vfs.CrashCloneCfg{}))
	changed := strings.Replace(testProject, "n:    {agg: count, windows: [1h]}\nservices", "n:    {agg: count, windows: [2h]}\nservices", 1)
	if changed == testProject {
		t.Fatal("the project did not change")
	}
	p, plans := compileProject(t, changed)
	pl, err := New(p, plans, st, Options{Now: ref.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	after := &fixture{project: p, plans: plans, store: st, w: pl, clock: ref.clock}
	if s := pl.Stats(); s.Recovered == 0 {
		t.Fatal("nothing was replayed")
	}
	for u := range int64(5) {
		if got, want := after.read(t, "by_user", u), ref.read(t, "by_user", u); !reflect.DeepEqual(got, want) {
			t.Fatalf("user %d: %v, want %v", u, got, want)
		}
	}
	for k := range int64(3) {
		if got := after.read(t, "by_post", k); got != nil {
			t.Fatalf("post %d of the redefined view: %v, want no row (its logged events passed over)", k, got)
		}
	}
}

// The partitions' checkpoints by time are spread over the interval rather
// than taken at once: with 4 partitions and a minute, one every 15 s.
func TestCheckpointsByTimeAreSpread(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 4, CheckpointInterval: time.Minute})
	src := f.project.Source("clicks")
	push := func() {
		t.Helper()
		var evs []event.Event
		for u := range int64(40) { // keys on every partition
			evs = append(evs, f.ev(0, u, 1, "a", 1))
		}
		for range 2 { // the second waits for a checkpoint the first started
			if _, err := f.w.Push(context.Background(), src, evs); err != nil {
				t.Fatal(err)
			}
		}
	}
	push()
	for i, want := range []int64{1, 2, 3, 4} {
		f.clock.add(15*time.Second + time.Millisecond)
		push()
		if got := f.w.Stats().Checkpoints; got != want {
			t.Fatalf("%v after the first commits: %d checkpoints, want %d", time.Duration(i+1)*15*time.Second, got, want)
		}
	}
}
