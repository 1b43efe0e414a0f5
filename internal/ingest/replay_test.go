package ingest

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/internal/event"
)

// Replay folds into its one view, in any offset order, each event once,
// and records the offsets: the stream delivered again afterwards is
// passed over. Its ops survive a crash in the event log as replays.
func TestReplayFoldsOneViewOutOfOffsetOrder(t *testing.T) {
	fs := vfs.NewCrashableMem()
	ref := newFixture(t, nil, Options{WriteThrough: true})
	f := ref.on(t, openMem(t, fs), Options{Partitions: 3})
	byPost := f.project.View("by_post")
	evs := f.streamEvents(7, 0, 120)
	shuffled := append([]event.Event(nil), evs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for from := 0; from < len(shuffled); from += 25 {
		res, err := f.w.Replay(context.Background(), byPost, shuffled[from:min(from+25, len(shuffled))])
		if err != nil {
			t.Fatal(err)
		}
		if res.DroppedLate != 0 {
			t.Fatalf("%d dropped late", res.DroppedLate)
		}
	}
	// The reference folds the same events, in offset order, with Push.
	if _, err := ref.w.Push(context.Background(), ref.project.Source("clicks"), evs); err != nil {
		t.Fatal(err)
	}
	users, posts := f.totalCount(t)
	if users != 0 || posts != 120 {
		t.Fatalf("counted %d by user and %d by post, want 0 (not replayed) and 120", users, posts)
	}
	for k := range int64(3) {
		if got, want := f.read(t, "by_post", k), ref.read(t, "by_post", k); !reflect.DeepEqual(got, want) {
			t.Fatalf("post %d: %v, want %v", k, got, want)
		}
	}
	// The stream delivered again: every offset already applied.
	if _, err := f.w.Push(context.Background(), f.project.Source("clicks"), evs[100:]); err != nil {
		t.Fatal(err)
	}
	if _, posts := f.totalCount(t); posts != 120 {
		t.Fatalf("counted %d by post after the stream came again, want 120", posts)
	}
	// A crash before any checkpoint: the log replays the replays as such.
	after := ref.on(t, openMem(t, fs.CrashClone(vfs.CrashCloneCfg{})), Options{})
	for k := range int64(3) {
		if got, want := after.read(t, "by_post", k), ref.read(t, "by_post", k); !reflect.DeepEqual(got, want) {
			t.Fatalf("post %d after a crash: %v, want %v", k, got, want)
		}
	}
}

// Replay refuses a view the writer does not write.
func TestReplayRefusesAnotherView(t *testing.T) {
	f := newFixture(t, nil, Options{})
	other, _ := compileProject(t, testProject)
	if _, err := f.w.Replay(context.Background(), other.View("by_post"), nil); err == nil {
		t.Fatal("Replay took a view of another project")
	}
}
