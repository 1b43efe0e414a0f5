package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-dev/kiln/internal/brokertest"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
	"github.com/kiln-dev/kiln/internal/ui/browser"
)

// shop is the tests' project, its source of orders of the given type (and
// settings), with the services given.
func shop(source, services string) []byte {
	return []byte(`
project: shop
entities:
  user:
    keys: [user_id]
sources:
  orders:
    ` + source + `
    event_time: ts
    fields: {user_id: int64, amount: float64}
views:
  user_orders:
    entity: user
    source: orders
    features:
      orders:  {agg: count, windows: [1h, 24h]}
      spend:   {agg: sum, field: amount, windows: [1h, 24h]}
      biggest: {agg: max, field: amount, windows: [24h]}
` + services)
}

// project pushes its orders and has one service.
var project = shop("type: push", `
services:
  checkout:
    views: [user_orders]
`)

// startBrowser starts headless Chromium, or skips the test without one
// unless KILN_REQUIRE_CHROMIUM=1.
func startBrowser(t *testing.T) *browser.Browser {
	t.Helper()
	path, err := browser.Find()
	if err != nil {
		if os.Getenv("KILN_REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("%v (KILN_REQUIRE_CHROMIUM=1)", err)
		}
		t.Skipf("%v; the dashboard's browser test skips (KILN_REQUIRE_CHROMIUM=1 makes it fail)", err)
	}
	b, err := browser.Start(context.Background(), path, 1280, 1200)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// do runs the steps in the browser's tab, failing t with what the page
// reported if one fails.
func do(t *testing.T, ctx context.Context, b *browser.Browser, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v; the page reported: %q", what, err, b.Errors())
	}
}

// The page, in a real browser against a real node's admin listener: it
// loads without errors, shows the project, turns two scrapes of /metrics
// at a time into the rates of what was pushed and read, and looks a key up
// with the values the read API answers.
func TestDashboard(t *testing.T) {
	b := startBrowser(t)
	t0 := time.Now().Truncate(time.Millisecond)
	n, _ := nodetest.Start(t, "kiln.yaml", project, t0)

	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) { t.Helper(); do(t, ctx, b, what, steps...) }
	// waitFor polls the page until the JavaScript expression is true.
	waitFor := func(what, expr string) {
		t.Helper()
		if err := chromedp.Do(ctx, browser.Wait(expr)); err != nil {
			sctx, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
			defer cancel()
			charts, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`JSON.stringify(Object.fromEntries([...document.querySelectorAll(".chart")].map((c) => [c.id, {...c.dataset}])))`))
			t.Fatalf("%s: %v; the charts: %s; the page reported: %q", what, err, charts, b.Errors())
		}
	}
	dataset := func(id, key string) string {
		return fmt.Sprintf(`document.getElementById(%q).dataset.%s`, id, key)
	}

	run("loading /ui", chromedp.Navigate(n.AdminURL()+"/ui"))
	waitFor("the project", `document.querySelector('details[data-view="user_orders"]') !== null && document.getElementById("project-name").textContent === "shop"`)
	// A point needs two scrapes: pushes after the first point are all
	// counted between scrapes the page has seen.
	waitFor("a first point", dataset("chart-ingest", "points")+` >= 1`)

	ts := t0.Add(-10 * time.Minute).UnixMilli()
	late := t0.Add(-72 * time.Hour).UnixMilli()
	var events []string
	for i := range 12 {
		events = append(events, fmt.Sprintf(`{"user_id": %d, "amount": %d.25, "ts": %d}`, 1+i%3, 10+i, ts+int64(i)))
	}
	post(t, n.URL()+"/v1/push", `{"source": "orders", "events": [`+strings.Join(events, ",")+`]}`, 200)
	post(t, n.URL()+"/v1/push", fmt.Sprintf(`{"source": "orders", "events": [{"user_id": 1, "amount": 1, "ts": %d}, {"user_id": 2, "amount": 1, "ts": %d}]}`, late, late), 200)
	post(t, n.URL()+"/v1/push", `{"source": "orders", "events": [{"user_id": "one", "ts": 1}]}`, 400)
	waitFor("the ingest chart's counts", dataset("chart-ingest", "totalAccepted")+` === "12" && `+
		dataset("chart-ingest", "totalLate")+` === "2" && `+dataset("chart-ingest", "totalRejected")+` === "1"`)
	waitFor("the ingest line", `document.querySelector('#chart-ingest path[data-series="accepted"]').getAttribute("d").includes("L")`)

	read := `{"service": "checkout", "entities": {"user": [{"user_id": 2}]}}`
	const reads = 7
	var want features
	for range reads {
		want = readFeatures(t, n.URL(), read)
	}
	waitFor("the read chart's count", dataset("chart-reads", "totalReads")+fmt.Sprintf(` === "%d"`, reads))
	// The latency of the scrape interval that saw the reads is a time
	// within the histogram's bounds: more than nothing, at most its last
	// finite bound (10 s).
	waitFor("the latency line", `[...document.querySelectorAll("#chart-latency path")].every((p) => p.getAttribute("d") !== "")`)
	waitFor("the latency's peaks", `["peakP50", "peakP99"].every((k) => { const v = Number(document.getElementById("chart-latency").dataset[k]); return v > 0 && v <= 10 })`)

	// The lookup, through the admin listener's POST /v1/features, shows
	// what the public API answers.
	run("a lookup", browser.Lookup("service:checkout", "2"))
	waitFor("the lookup's answer", `document.querySelector('#lookup-result .entity[data-entity="user"]') !== null`)
	got := shown(t, ctx, "user")
	if len(want.Entities["user"]) != 1 {
		t.Fatalf("the read API answered %+v", want)
	}
	w := want.Entities["user"][0]
	if got.Status != w.Status || got.EventTime != string(w.EventTime) || w.Status != "present" {
		t.Errorf("the page shows status %q, event time %q; the API answers %q, %s", got.Status, got.EventTime, w.Status, w.EventTime)
	}
	if len(got.Values) != len(w.Features) || len(w.Features) != 5 {
		t.Errorf("the page shows %d features, the API answers %d (%v)", len(got.Values), len(w.Features), got.Values)
	}
	for name, v := range w.Features {
		if got.Values[name] != string(v) {
			t.Errorf("%s: the page shows %q, the API answers %s", name, got.Values[name], v)
		}
	}
	// user 2 had events 1, 4, 7 and 10: 4 orders of 11.25+14.25+17.25+20.25.
	if got.Values["user_orders:orders_1h"] != "4" || got.Values["user_orders:spend_24h"] != "63" {
		t.Errorf("the page shows %v, want 4 orders and 63 spent", got.Values)
	}

	// A view and a key with no row: not found, every value null.
	run("a lookup of a view", browser.Lookup("view:user_orders", "404"))
	waitFor("the second answer", `document.querySelector('#lookup-result .entity[data-status="not_found"]') !== null`)
	if got := shown(t, ctx, "user"); got.EventTime != "none" || got.Values["user_orders:biggest_24h"] != "null" || len(got.Values) != 5 {
		t.Errorf("a key with no row shows %+v", got)
	}

	// The page's arithmetic, on numbers worked out by hand.
	for expr, want := range map[string]string{
		// 10 observations within (1 ms, 2 ms]: the median is halfway, the
		// 99th percentile 99% of the way.
		`quantile(0.5, new Map([[0.001, 0], [0.002, 10], [Infinity, 10]]))`:                                                    "0.0015",
		`quantile(0.99, new Map([[0.001, 0], [0.002, 10], [Infinity, 10]]))`:                                                   "0.00199",
		`quantile(0.5, new Map([[0.001, 0], [0.002, 0], [Infinity, 0]]))`:                                                      "null",
		`quantile(0.99, new Map([[0.001, 5], [0.002, 5], [Infinity, 10]]))`:                                                    "0.002",
		`quantile(0.25, new Map([[0.001, 10], [0.002, 10], [Infinity, 10]]))`:                                                  "0.00025",
		`JSON.stringify([...parseMetrics('# HELP x y\nkiln_x_total{a="q\\"}",b="2"} 3\nkiln_y +Inf 1700000000\n').entries()])`: `[["kiln_x_total",[{"labels":{"a":"q\"}","b":"2"},"value":3}]],["kiln_y",[{"labels":{},"value":null}]]]`,
	} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+expr+`)`))
		if err != nil || got != want {
			t.Errorf("%s = %s (%v), want %s", expr, got, err, want)
		}
	}

	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// With a streaming source, the freshness and lag charts have lines, and
// the ingest chart counts its messages: applied ones as accepted, those
// sent to the dead letters as rejected.
func TestDashboardStreaming(t *testing.T) {
	b := startBrowser(t)
	_, url := brokertest.NATS(t)
	js := brokertest.JetStream(t, url, "ORDERS", "orders.>")
	// No service: the page shows a project without any.
	n, _ := nodetest.StartClock(t, "kiln.yaml", shop(fmt.Sprintf("type: nats\n    url: %s\n    stream: ORDERS\n    durable: kiln-ui", url), ""), time.Now)
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	do(t, ctx, b, "the first point", chromedp.Navigate(n.AdminURL()+"/ui"), browser.Wait(`document.getElementById("chart-freshness").dataset.points >= 1`))

	const good = 20
	ts := time.Now().Add(-time.Minute).UnixMilli()
	for i := range good + 1 {
		msg := fmt.Sprintf(`{"user_id": %d, "amount": 2.5, "ts": %d}`, i%4, ts)
		if i == good {
			msg = `{"user_id": "one", "ts": 1}`
		}
		if _, err := js.Publish(ctx, "orders.created", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, b, "the stream's charts",
		browser.Wait(fmt.Sprintf(`document.getElementById("chart-ingest").dataset.totalAccepted === "%d" && document.getElementById("chart-ingest").dataset.totalRejected === "1"`, good)),
		browser.Wait(`Number(document.getElementById("chart-freshness").dataset.peakFreshness) > 0`),
		browser.Wait(`document.getElementById("chart-lag").dataset.lastLag === "0" && document.querySelector('#chart-lag path[data-series="lag"]').getAttribute("d") !== ""`),
	)
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// tokenGate stands in for an admin listener that asks for a bearer token:
// every route but the page's own files needs one.
func tokenGate(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") || r.Header.Get("Authorization") == "Bearer "+token {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="kiln"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"no token: send Authorization: Bearer <token>"}`+"\n")
	})
}

// Behind a listener that asks for a token, the page asks for one, says so
// when it is refused, and once given a good one keeps it for the tab and
// sends it with every call.
func TestDashboardAsksForToken(t *testing.T) {
	b := startBrowser(t)
	n, _ := nodetest.Start(t, "kiln.yaml", project, time.Now())
	srv := httptest.NewServer(tokenGate(n.Server.Admin(), "s3cret"))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) { t.Helper(); do(t, ctx, b, what, steps...) }
	give := func(token string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.SendKeys(chromedp.CSS("#token-input"), token),
			chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		)
	}
	step("the page asks", chromedp.Navigate(srv.URL+"/ui"),
		browser.Wait(`!document.getElementById("token-form").hidden && document.getElementById("token-why").textContent.includes("no token: send Authorization")`))
	step("a wrong token", give("nope"),
		browser.Wait(`!document.getElementById("token-form").hidden && document.getElementById("token-why").textContent.startsWith("The token was refused")`))
	step("the right one", give("s3cret"),
		browser.Wait(`document.getElementById("project-name").textContent === "shop" && document.getElementById("chart-ingest").dataset.points >= 1`),
		browser.Wait(`document.getElementById("token-form").hidden && sessionStorage.getItem("kiln.token") === "s3cret"`),
		browser.Lookup("view:user_orders", "1"),
		browser.Wait(`document.querySelector('#lookup-result .entity[data-status="not_found"]') !== null`),
	)
	for _, e := range b.Errors() {
		if !strings.Contains(e, "status of 401") {
			t.Errorf("the page reported: %s", e)
		}
	}
}

// features is the answer of POST /v1/features, numbers as they were sent.
type features struct {
	Entities map[string][]struct {
		Status    string                     `json:"status"`
		EventTime json.RawMessage            `json:"event_time"`
		Features  map[string]json.RawMessage `json:"features"`
	} `json:"entities"`
}

func readFeatures(t *testing.T, base, body string) features {
	t.Helper()
	var f features
	if err := json.Unmarshal(post(t, base+"/v1/features", body, 200), &f); err != nil {
		t.Fatal(err)
	}
	// The page shows an event time as its text, not as JSON.
	for _, rows := range f.Entities {
		for i := range rows {
			if s, err := strconv.Unquote(string(rows[i].EventTime)); err == nil {
				rows[i].EventTime = json.RawMessage(s)
			}
		}
	}
	return f
}

// post POSTs a JSON body to url and returns the answer's, failing t unless
// the answer has the status.
func post(t *testing.T, url, body string, status int) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("POST %s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	return b
}

// lookup is what the page shows of one entity's answer.
type lookup struct {
	Status, EventTime string
	Values            map[string]string
}

func shown(t *testing.T, ctx context.Context, entity string) lookup {
	t.Helper()
	l, err := chromedp.Run(ctx, chromedp.Evaluate[lookup](fmt.Sprintf(`(() => {
		const e = document.querySelector('#lookup-result .entity[data-entity=%q]');
		const values = {};
		for (const tr of e.querySelectorAll("tr[data-feature]")) values[tr.dataset.feature] = tr.querySelector(".value").textContent;
		return {Status: e.dataset.status, EventTime: e.querySelector(".event-time").textContent, Values: values};
	})()`, entity)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
