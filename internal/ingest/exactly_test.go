package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/redistest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/store/redis"
)

// streamEvents returns n events of one stream at offsets from..from+n-1,
// spread over users 0..4 and posts 0..2.
func (f *fixture) streamEvents(stream uint64, from, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		off := from + i
		evs[i] = f.ev(time.Duration(off%600)*time.Second, int64(off%5), int64(off%3), "a", float64(off))
		evs[i].Origin = event.Origin{Stream: stream, Offset: uint64(off)}
	}
	return evs
}

func (f *fixture) totalCount(t *testing.T) (users, posts int64) {
	for u := range int64(5) {
		users += f.read(t, "by_user", u)["by_user:n_1h"].Int
	}
	for p := range int64(3) {
		posts += f.read(t, "by_post", p)["by_post:n_1h"].Int
	}
	return users, posts
}

func TestReplayIsNotCountedTwice(t *testing.T) {
	f := newFixture(t, nil, Options{Partitions: 3, MaxBatchRows: 4})
	src := f.project.Source("clicks")
	push := func(evs []event.Event) {
		t.Helper()
		if _, err := f.w.Push(context.Background(), src, evs); err != nil {
			t.Fatal(err)
		}
	}
	// Two streams, applied in offset order per stream, with replays of
	// ranges already applied, as after a crash or a rebalance.
	push(f.streamEvents(1, 0, 100))
	push(f.streamEvents(2, 0, 40))
	push(f.streamEvents(1, 50, 100)) // 50..99 replayed, 100..149 new
	push(f.streamEvents(1, 0, 150))  // all replayed
	push(f.streamEvents(2, 20, 30))  // 20..39 replayed, 40..49 new
	if users, posts := f.totalCount(t); users != 200 || posts != 200 {
		t.Fatalf("counted %d events by user and %d by post, want 200 each (150 + 50 streamed)", users, posts)
	}
	if s := f.w.Stats(); s.Replayed != 2*(50+150+20) {
		t.Fatalf("Replayed = %d, want %d (two rows per event)", s.Replayed, 2*(50+150+20))
	}
	// Pushed events carry no position: every push counts.
	pushed := f.streamEvents(0, 0, 10)
	push(pushed)
	push(pushed)
	if users, _ := f.totalCount(t); users != 220 {
		t.Fatalf("counted %d events by user after two pushes of 10, want 220", users)
	}
}

// TestSharedStoreWritersLoseNothing runs two writers, as two processes
// would, over one Redis server, writing the same rows at once: plain pushes
// (every event must count once) and the same stream applied by both (as a
// process that lost its partition but has not noticed yet, and the one that
// took it over): every streamed event must count once, not twice.
func TestSharedStoreWritersLoseNothing(t *testing.T) {
	addr := redistest.Standalone(t)
	open := func() *fixture {
		st, err := redis.Open(context.Background(), redis.Options{Addrs: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return newFixture(t, st, Options{Partitions: 2, MaxBatchRows: 3})
	}
	a, b := open(), open()
	b.clock.ms.Store(a.clock.ms.Load())
	const rounds, per = 30, 20
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, f := range []*fixture{a, b} {
		src := f.project.Source("clicks")
		wg.Add(2)
		go func() { // plain pushes, 600 per writer
			defer wg.Done()
			for range rounds {
				if _, err := f.w.Push(context.Background(), src, f.streamEvents(0, 0, per)); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // the same stream, offsets 0..599, by both writers
			defer wg.Done()
			for r := range rounds {
				if _, err := f.w.Push(context.Background(), src, f.streamEvents(9, r*per, per)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := int64(2*rounds*per + rounds*per)
	if users, posts := a.totalCount(t); users != want || posts != want {
		t.Fatalf("counted %d by user and %d by post, want %d each (%d pushed, %d streamed)", users, posts, want, 2*rounds*per, rounds*per)
	}
	sa, sb := a.w.Stats(), b.w.Stats()
	t.Logf("conflicts %d + %d, replayed %d + %d", sa.Conflicts, sb.Conflicts, sa.Replayed, sb.Replayed)
	if sa.Conflicts+sb.Conflicts == 0 {
		t.Log("no write conflicted this run: the writers did not overlap")
	}
	if sa.Replayed+sb.Replayed == 0 {
		t.Error("no streamed event was passed over, yet both writers applied the same stream")
	}
}

// The way commits reach the store is chosen once, from what the store can
// do and Options.WriteThrough, and Stats names it.
func TestWriteModeFollowsTheStore(t *testing.T) {
	rs, err := redis.Open(context.Background(), redis.Options{Addrs: []string{redistest.Standalone(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	for _, c := range []struct {
		name  string
		store store.Store
		opts  Options
		want  string
	}{
		{"embedded", nil, Options{}, "write-behind"},
		{"embedded, --write-through", nil, Options{WriteThrough: true}, "write-through"},
		{"a store with no log", discardRows{}, Options{}, "write-through"},
		{"redis", rs, Options{}, "conditional"},
		{"redis, --write-through", rs, Options{WriteThrough: true}, "conditional"},
	} {
		f := newFixture(t, c.store, c.opts)
		if got := f.w.Stats().WriteMode; got != c.want {
			t.Errorf("%s: WriteMode %q, want %q", c.name, got, c.want)
		}
	}
}
