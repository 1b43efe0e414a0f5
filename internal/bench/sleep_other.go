//go:build !linux

package bench

import (
	"context"
	"time"
)

// sleeper sleeps a worker until a request is due. Outside Linux it uses
// the runtime's timers, which may wake up to a timer tick late; the
// results then include that.
type sleeper struct{}

func newSleeper() *sleeper { return &sleeper{} }

// sleepUntil sleeps until t and reports false if ctx ended first.
func (s *sleeper) sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (s *sleeper) close() {}
