// Command screenshot saves a picture of a running node's dashboard, for
// docs/img/ui.png: it opens /ui in headless Chromium, reads features
// through the admin listener meanwhile so that the read charts have a
// shape, waits until the charts hold the time asked for, looks a user up,
// and writes the page as a PNG. scripts/screenshot-ui.sh runs it against
// kiln demo.
//
//	go run ./internal/ui/screenshot -admin http://127.0.0.1:7072 -out docs/img/ui.png
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-dev/kiln/internal/ui/browser"
)

func main() {
	admin := flag.String("admin", "http://127.0.0.1:7072", "base URL of the node's admin listener")
	out := flag.String("out", "docs/img/ui.png", "PNG file to write")
	wait := flag.Duration("wait", 90*time.Second, "how long the charts fill before the picture")
	rate := flag.Int("reads", 40, "features requests per second sent meanwhile")
	flag.Parse()
	if err := run(*admin, *out, *wait, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "screenshot:", err)
		os.Exit(1)
	}
}

func run(admin, out string, wait time.Duration, rate int) error {
	path, err := browser.Find()
	if err != nil {
		return err
	}
	b, err := browser.Start(context.Background(), path, 1280, 900)
	if err != nil {
		return err
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(b.Ctx, wait+time.Minute)
	defer cancel()

	stop := make(chan struct{})
	defer close(stop)
	go readLoad(admin, rate, stop)

	points := int(wait / time.Second)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/ui"),
		chromedp.WaitVisible(chromedp.CSS(`details[data-view]`)),
		browser.Wait(fmt.Sprintf(`document.getElementById("chart-reads").dataset.points >= %d`, points)),
		browser.Lookup("service:user_profile", "1"),
		chromedp.WaitVisible(chromedp.CSS(`#lookup-result .entity`)),
		// The first view's tile plan, open.
		chromedp.Evaluate[chromedp.Void](`document.querySelector("details[data-view]").open = true`),
	); err != nil {
		return fmt.Errorf("%w; the page reported: %q", err, b.Errors())
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	if errs := b.Errors(); len(errs) > 0 {
		return fmt.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
	return os.WriteFile(out, png, 0o644)
}

// readLoad reads the features of random users of the demo's workload at
// about rate requests per second until stop closes.
func readLoad(admin string, rate int, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		body := fmt.Sprintf(`{"service": "ranking", "entities": {"user": [{"user_id": %d}], "post": [{"post_id": %d}, {"post_id": %d}]}}`,
			1+rand.IntN(1000), 1+rand.IntN(10000), 1+rand.IntN(10000))
		resp, err := http.Post(admin+"/v1/features", "application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
	}
}
