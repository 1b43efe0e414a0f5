package query

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/event"
)

// A view made unavailable refuses reads of its features, saying why, and
// leaves the other views served; made available again, it serves.
func TestUnavailableView(t *testing.T) {
	w := newWorld(t, 3, 10)
	e := w.engine(t, nil)
	ranking := rankingRequest(t, e, 2, 5)
	postsOnly, err := e.Prepare([]string{"post_engagement:views_1h"})
	if err != nil {
		t.Fatal(err)
	}
	posts := &Request{Prepared: postsOnly, Keys: [][]event.Value{{event.IntValue(1)}}}
	calls := 0
	e.SetUnavailable("user_engagement", func() string { calls++; return "being rebuilt (3 of 7 dates)" })
	var res Result
	err = e.Read(context.Background(), ranking, &res)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrViewUnavailable) || ue.View != "user_engagement" ||
		!strings.Contains(err.Error(), "being rebuilt (3 of 7 dates)") || calls != 1 {
		t.Fatalf("read of an unavailable view: %v (%d calls of the reason)", err, calls)
	}
	if err := e.Read(context.Background(), posts, &res); err != nil {
		t.Fatalf("read of another view: %v", err)
	}
	e.SetUnavailable("user_engagement", nil)
	if err := e.Read(context.Background(), ranking, &res); err != nil {
		t.Fatalf("read after the view is served again: %v", err)
	}
}
