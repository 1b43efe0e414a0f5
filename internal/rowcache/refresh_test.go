package rowcache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A row read past half of MaxAge is read again in the background, so a
// reader after MaxAge still finds it in memory; the refill is stamped when
// its read began, so the staleness bound holds.
func TestRefreshAhead(t *testing.T) {
	clk := newClock()
	c := New(Options{MaxAge: 10 * time.Second, Now: clk.Now})
	var loads atomic.Int64
	value := "v1"
	load := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		loads.Add(1)
		for i := range keys {
			fn(i, []byte(value), true)
		}
		return nil
	}
	read := func() string {
		t.Helper()
		v, _, err := loadOne(context.Background(), c, "k", load)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	read() // a miss: load 1
	clk.Advance(4 * time.Second)
	read() // a hit under half of MaxAge: nothing more
	c.refreshWG.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads after a young hit, want 1", n)
	}
	clk.Advance(2 * time.Second) // 6 s old
	value = "v2"                 // the store moved on
	if v := read(); v != "v1" {
		t.Fatalf("hit = %q, want the cached v1", v)
	}
	c.refreshWG.Wait()
	if n, st := loads.Load(), c.Stats(); n != 2 || st.Refreshed != 1 {
		t.Fatalf("%d loads, Stats %+v: want the hit past half of MaxAge to read the row again", n, st)
	}
	clk.Advance(5 * time.Second) // 11 s after the first load, 5 s after the refresh
	if v := read(); v != "v2" {
		t.Fatalf("after the refresh: %q, want v2 from memory", v)
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads: the refreshed row expired anyway", n)
	}
	// Plain Get never asks for a refresh (it cannot read the store) and
	// does not stop a later Load from asking.
	clk.Advance(1500 * time.Millisecond) // 6.5 s after the refresh
	var got string
	c.Get([][]byte{[]byte("k")}, nil, func(_ int, v []byte, _ bool) { got = string(v) })
	c.refreshWG.Wait()
	if n := loads.Load(); got != "v2" || n != 2 {
		t.Fatalf("Get: %q and %d loads", got, n)
	}
	read()
	c.refreshWG.Wait()
	if n := loads.Load(); n != 3 {
		t.Fatalf("%d loads: a Load after a Get past half of MaxAge did not refresh", n)
	}
}

// A Set while a refresh reads the store wins: the refresh fills nothing.
func TestRefreshLosesToSet(t *testing.T) {
	clk := newClock()
	c := New(Options{MaxAge: 10 * time.Second, Now: clk.Now})
	c.Set([]byte("k"), []byte("old"))
	clk.Advance(6 * time.Second)
	reading, release := make(chan struct{}), make(chan struct{})
	slow := func(_ context.Context, keys [][]byte, fn func(int, []byte, bool)) error {
		close(reading)
		<-release
		for i := range keys {
			fn(i, []byte("old"), true)
		}
		return nil
	}
	if v, _, err := loadOne(context.Background(), c, "k", slow); err != nil || v != "old" {
		t.Fatalf("hit = %q, %v", v, err)
	}
	<-reading // the refresh is reading the store
	c.Set([]byte("k"), []byte("new"))
	close(release)
	c.refreshWG.Wait()
	wantHit(t, c, "k", "new")
	if st := c.Stats(); st.FillsDropped != 1 {
		t.Fatalf("Stats %+v: want the refresh's fill dropped", st)
	}
}
