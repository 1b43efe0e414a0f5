package bench

import (
	"context"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// maxSleepChunk bounds one wait, so a cancelled context is noticed.
const maxSleepChunk = 50 * time.Millisecond

// sleeper sleeps a worker until a request is due. On Linux it waits on a
// timerfd through the runtime's network poller: the kernel's
// high-resolution timer wakes the poller within tens of microseconds. The
// runtime's own timers round an idle process's wait up to a whole
// millisecond, and a nanosleep would hold the worker's P (so that other
// goroutines, such as those reading answers, wait for the runtime to take
// it back); every microsecond of either would be charged to the server.
type sleeper struct {
	fd  int
	f   *os.File // nil: timerfd is unavailable, use time.Sleep
	buf [8]byte
}

// itimerspec is struct itimerspec of timerfd_settime(2).
type itimerspec struct {
	Interval, Value syscall.Timespec
}

func newSleeper() *sleeper {
	const flags = syscall.O_NONBLOCK | syscall.O_CLOEXEC // TFD_NONBLOCK | TFD_CLOEXEC
	fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, 1 /* CLOCK_MONOTONIC */, flags, 0)
	if errno != 0 {
		return &sleeper{fd: -1}
	}
	return &sleeper{fd: int(fd), f: os.NewFile(fd, "timerfd")}
}

// sleepUntil sleeps until t and reports false if ctx ended first.
func (s *sleeper) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		d = min(d, maxSleepChunk)
		if s.f == nil || !s.wait(d) {
			time.Sleep(d)
		}
	}
}

// wait arms the timer for d and reads its expiry; false if that failed.
func (s *sleeper) wait(d time.Duration) bool {
	spec := itimerspec{Value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(s.fd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		return false
	}
	_, err := s.f.Read(s.buf[:])
	return err == nil
}

func (s *sleeper) close() {
	if s.f != nil {
		s.f.Close()
	}
}
