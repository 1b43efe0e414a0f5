package kilntest

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Reader reads rows: an ingest.Writer, or a store.
type Reader interface {
	Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
}

// Total sums, over the entities of keys (each a list of key values), the
// first value view serves (a count), read through r and evaluated at now
// (Unix ms). A row that is missing counts 0.
func Total(tb testing.TB, ctx context.Context, r Reader, plan *tile.Plan, view string, now int64, keys ...[]event.Value) int64 {
	tb.Helper()
	rowKeys := make([][]byte, len(keys))
	for i, k := range keys {
		rowKeys[i] = tile.AppendKey(nil, view, k)
	}
	var n int64
	out := make([]event.Value, 1)
	if err := r.Get(ctx, rowKeys, func(_ int, v []byte, found bool) {
		if !found {
			return
		}
		row := plan.NewRow()
		if err := plan.DecodeRow(v, row); err != nil {
			tb.Error(err)
			return
		}
		plan.Eval(row, now, out)
		n += out[0].Int
	}); err != nil {
		tb.Errorf("reading the rows of %s: %v", view, err)
	}
	return n
}

// Users returns the keys of users 0 to n-1 of an entity keyed by one int64.
func Users(n int) [][]event.Value {
	keys := make([][]event.Value, n)
	for u := range keys {
		keys[u] = []event.Value{event.IntValue(int64(u))}
	}
	return keys
}

// SyncBuffer is a bytes.Buffer a logger and a test may share: a test polls
// String for what a goroutine logged.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
