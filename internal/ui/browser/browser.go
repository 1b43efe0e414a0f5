// Package browser starts headless Chromium for the dashboard's test and its
// screenshot (package ui), driven by chromedp, and collects what the page
// reports as errors: console.error and console.assert calls, uncaught
// exceptions, and the browser's own error entries (a resource that failed
// to load, a request the page's security policy blocked).
package browser

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned by Find when no Chromium is installed.
var ErrNoChromium = errors.New("no chromium on PATH: install it (Debian: apt-get install chromium)")

// Find is the path of the Chromium binary on PATH.
func Find() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// Browser is a started headless Chromium with one tab.
type Browser struct {
	// Ctx is the tab's chromedp context: run actions with it (or a context
	// derived from it with a deadline).
	Ctx    context.Context
	cancel []context.CancelFunc

	mu     sync.Mutex
	errors []string
}

// Start starts Chromium at path with a window of width×height pixels and
// opens a tab. Close stops it.
func Start(ctx context.Context, path string, width, height int) (*Browser, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(width, height),
		// Chromium's sandbox refuses to run as root, which containers
		// often are; the page is one of ours.
		chromedp.NoSandbox,
	)
	b := &Browser{}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	b.Ctx, b.cancel = tctx, []context.CancelFunc{cancelTab, cancelAlloc}
	// The first action starts the browser and opens the tab.
	if err := chromedp.Do(tctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	return b, nil
}

func (b *Browser) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d:%d)", d.URL, d.LineNumber+1, d.ColumnNumber+1)
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	b.errors = append(b.errors, msg)
	b.mu.Unlock()
}

// Errors are the errors the page has reported so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Close stops the browser.
func (b *Browser) Close() {
	for _, c := range b.cancel {
		c()
	}
}

// Wait polls the page until the JavaScript expression is truthy, as long as
// the context lets it.
func Wait(expr string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := poll(ctx, t)
		if err != nil {
			err = fmt.Errorf("waiting for %s: %w", expr, err)
		}
		return chromedp.Void{}, err
	}
}

// Lookup fills the dashboard's entity lookup, the way a user does, and
// reads: target is a value of its select ("service:NAME" or "view:NAME"),
// key the text typed in its one key field.
func Lookup(target, key string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SetValue(chromedp.CSS("#lookup-target"), target),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("lookup-target").dispatchEvent(new Event("change"))`),
		chromedp.SendKeys(chromedp.CSS(`#lookup-keys input`), key),
		chromedp.Click(chromedp.CSS("#lookup-read")),
	)
}
