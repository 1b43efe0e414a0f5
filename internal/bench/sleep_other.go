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
	return sleepCtx(ctx, time.Until(t))
}

func (s *sleeper) close() {}
