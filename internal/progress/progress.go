// Package progress shows how far a long command is: a bar on a terminal,
// a plain line every few seconds otherwise (a log, CI), so that a long
// import or rebuild never looks stuck.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter shows the progress of one phase of work at a time. Its methods
// are safe for concurrent use.
type Reporter struct {
	w        io.Writer
	terminal bool
	every    time.Duration
	now      func() time.Time

	mu        sync.Mutex
	phase     string
	bar       *progressbar.ProgressBar
	lastLine  time.Time
	lastDone  int64
	unitBytes bool
	quiet     bool // no lines off a terminal
}

// New returns a Reporter writing to w: a bar when w is a terminal, else a
// line at most every interval (every 5s when zero).
func New(w io.Writer, interval time.Duration) *Reporter {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	r := &Reporter{w: w, every: interval, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.terminal = true
	}
	return r
}

// NewBar returns a Reporter that draws a bar when w is a terminal and
// writes nothing otherwise, for work whose log already says how far it is.
func NewBar(w io.Writer) *Reporter {
	r := New(w, 0)
	r.quiet = !r.terminal
	return r
}

// Update says that phase has done units of total; bytes says whether the
// units are bytes (shown as sizes) or items (shown as counts).
func (r *Reporter) Update(phase string, done, total int64, bytes bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if phase != r.phase {
		r.finishLocked()
		r.phase, r.unitBytes, r.lastLine = phase, bytes, time.Time{}
		if r.terminal {
			opts := []progressbar.Option{
				progressbar.OptionSetWriter(r.w), progressbar.OptionSetDescription(phase),
				progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionSetPredictTime(true),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.w) }),
			}
			if bytes {
				opts = append(opts, progressbar.OptionShowBytes(true))
			}
			r.bar = progressbar.NewOptions64(total, opts...)
		}
	}
	r.lastDone = done
	if r.bar != nil {
		r.bar.ChangeMax64(total)
		_ = r.bar.Set64(done)
		return
	}
	if r.quiet {
		return
	}
	now := r.now()
	if !r.lastLine.IsZero() && now.Sub(r.lastLine) < r.every && done < total {
		return
	}
	if r.lastLine.IsZero() && done < total && done > 0 {
		// The first line comes after one interval, unless the phase ends first.
		r.lastLine = now
		return
	}
	r.lastLine = now
	fmt.Fprintf(r.w, "%s: %s\n", phase, r.amount(done, total))
}

func (r *Reporter) amount(done, total int64) string {
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	if r.unitBytes {
		return fmt.Sprintf("%.0f%% (%s of %s)", pct, size(done), size(total))
	}
	return fmt.Sprintf("%.0f%% (%d of %d)", pct, done, total)
}

// Finish ends the current phase's bar or line.
func (r *Reporter) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked()
}

func (r *Reporter) finishLocked() {
	if r.bar != nil {
		_ = r.bar.Finish()
		r.bar = nil
	}
	r.phase = ""
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
