package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/importer"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/node/nodetest"
)

const project = `project: imp
entities: {user: {keys: [user_id]}}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string, dwell: float64}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n:     {agg: count, windows: [1h, 30d]}
      likes: {agg: count, where: {kind: like}, windows: [30d]}
      dwell: {agg: sum, field: dwell, windows: [30d]}
services:
  all: {views: [by_user]}
`

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// history returns n CSV rows over the last 40 days before now (a tenth too
// old for any window), user i%7, with the expected 30-day counts.
func history(n int) (csv string, count, likes map[int64]int64, dwell map[int64]float64) {
	count, likes, dwell = map[int64]int64{}, map[int64]int64{}, map[int64]float64{}
	var b strings.Builder
	b.WriteString("user_id,kind,dwell,ts\n")
	for i := range n {
		u := int64(i % 7)
		kind := []string{"view", "like", "share"}[i%3]
		ts := now.Add(-time.Duration(i%40) * 24 * time.Hour).Add(-time.Duration(i) * time.Second)
		d := float64(i%8) / 4
		fmt.Fprintf(&b, "%d,%s,%v,%s\n", u, kind, d, ts.Format(time.RFC3339))
		if now.Sub(ts) < 30*24*time.Hour {
			count[u]++
			if kind == "like" {
				likes[u]++
			}
			dwell[u] += d
		}
	}
	return b.String(), count, likes, dwell
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// features reads the 30-day values of users 0..6.
func features(t *testing.T, n *node.Node) map[int64][3]float64 {
	t.Helper()
	var rows []string
	for u := range 7 {
		rows = append(rows, fmt.Sprintf(`{"user_id": %d}`, u))
	}
	body := `{"service": "all", "entities": {"user": [` + strings.Join(rows, ",") + `]}}`
	resp, err := http.Post(n.URL()+"/v1/features", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("features: %d %s", resp.StatusCode, out)
	}
	var ans struct {
		Entities map[string][]struct {
			Features map[string]*float64 `json:"features"`
		} `json:"entities"`
	}
	if err := json.Unmarshal(out, &ans); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[int64][3]float64{}
	for u, r := range ans.Entities["user"] {
		var v [3]float64
		for i, name := range []string{"by_user:n_30d", "by_user:likes_30d", "by_user:dwell_30d"} {
			if f := r.Features[name]; f != nil {
				v[i] = *f
			}
		}
		got[int64(u)] = v
	}
	return got
}

func checkFeatures(t *testing.T, n *node.Node, count, likes map[int64]int64, dwell map[int64]float64, times float64) {
	t.Helper()
	got := features(t, n)
	for u := range int64(7) {
		want := [3]float64{float64(count[u]) * times, float64(likes[u]) * times, dwell[u] * times}
		if got[u] != want {
			t.Errorf("user %d: n_30d, likes_30d, dwell_30d = %v, want %v", u, got[u], want)
		}
	}
}

// archived counts the archive's events (as Scan yields them: by origin).
func archived(t *testing.T, n *node.Node, p *definition.Project) int {
	t.Helper()
	if err := n.Journal.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := 0
	err := n.Archive.Scan(context.Background(), p.Source("clicks"), time.UnixMilli(0), now.Add(time.Hour), func(archive.Archived) error {
		c++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func options(n *node.Node, p *definition.Project, files ...string) importer.Options {
	return importer.Options{Project: p, Plans: n.Plans, Source: p.Source("clicks"), Files: files, Now: now.UnixMilli(), BatchEvents: 100}
}

func TestImportCountsEachRowOnce(t *testing.T) {
	for _, via := range []string{"writer", "http"} {
		t.Run(via, func(t *testing.T) {
			n, p := nodetest.Start(t, "kiln.yaml", []byte(project), now)
			dir := t.TempDir()
			csv, count, likes, dwell := history(1000)
			f := write(t, dir, "h.csv", csv)
			var pusher importer.Pusher = importer.WriterPusher{W: n.Writer}
			if via == "http" {
				pusher = &importer.HTTPPusher{URL: n.URL()}
			}
			sum, err := importer.Run(context.Background(), pusher, options(n, p, f))
			if err != nil {
				t.Fatal(err)
			}
			if sum.Rows != 1000 || sum.Accepted+sum.DroppedLate != 1000 || sum.Rejected != 0 || sum.RowsTouched != 7 {
				t.Errorf("summary %+v", sum)
			}
			checkFeatures(t, n, count, likes, dwell, 1)
			// Again, whole: nothing counts twice, in the rows or the archive.
			if _, err := importer.Run(context.Background(), pusher, options(n, p, f)); err != nil {
				t.Fatal(err)
			}
			checkFeatures(t, n, count, likes, dwell, 1)
			if got := archived(t, n, p); got != 1000 {
				t.Errorf("archive holds %d events, want 1000", got)
			}
			// A copy of the file under another name is the same file.
			g := write(t, dir, "copy.csv", csv)
			if _, err := importer.Run(context.Background(), pusher, options(n, p, g)); err != nil {
				t.Fatal(err)
			}
			checkFeatures(t, n, count, likes, dwell, 1)
		})
	}
}

func TestImportRefusesABadFileWhole(t *testing.T) {
	n, p := nodetest.Start(t, "kiln.yaml", []byte(project), now)
	dir := t.TempDir()
	good := write(t, dir, "good.csv", "user_id,kind,dwell,ts\n1,view,0.5,2026-03-10T11:00:00Z\n")
	bad := write(t, dir, "bad.csv", "user_id,kind,dwell,ts\n1,view,0.5,2026-03-10T11:00:00Z\nx,view,0.5,2026-03-10T11:00:00Z\n2,view,lots,2026-03-10T11:00:00Z\n")
	_, err := importer.Run(context.Background(), importer.WriterPusher{W: n.Writer}, options(n, p, good, bad))
	var perr *importer.ProblemsError
	if !errors.As(err, &perr) || perr.Rows != 2 {
		t.Fatalf("import of a bad file: %v", err)
	}
	for _, want := range []string{bad + ":3:user_id: ", bad + ":4:dwell: ", "nothing was imported", "--reject"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if got := features(t, n); got[1] != [3]float64{} {
		t.Errorf("user 1 after a refused import: %v", got[1])
	}
	if got := archived(t, n, p); got != 0 {
		t.Errorf("a refused import archived %d events", got)
	}
	// With a reject file the good rows go in and the bad ones to the file.
	opts := options(n, p, good, bad)
	opts.Reject = filepath.Join(dir, "rejects.jsonl")
	sum, err := importer.Run(context.Background(), importer.WriterPusher{W: n.Writer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != 4 || sum.Rejected != 2 || sum.Accepted != 2 {
		t.Errorf("summary %+v", sum)
	}
	rej, _ := os.ReadFile(opts.Reject)
	lines := strings.Split(strings.TrimSpace(string(rej)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"row":3`) || !strings.Contains(lines[1], `"row":4`) || !strings.Contains(lines[1], "dwell: ") {
		t.Errorf("reject file:\n%s", rej)
	}
	if got := features(t, n); got[1][0] != 2 {
		t.Errorf("user 1 has %v events in 30 days, want 2 (one row of each file)", got[1][0])
	}
}

func TestPushOriginIsChecked(t *testing.T) {
	n, _ := nodetest.Start(t, "kiln.yaml", []byte(project), now)
	body := `{"source": "clicks", "events": [{"user_id": 1, "ts": 1773140400000}]}`
	for q, want := range map[string]string{
		"?origin=kafka/t/0&offset=1":    `origin "kafka/t/0": write import/<id>`,
		"?origin=import/a%2Fb&offset=1": `origin "import/a/b"`,
		"?origin=import/ab":             "origin and offset go together",
		"?origin=import/ab&offset=0":    `offset "0"`,
		"?source=clicks":                `unknown query parameter "source"`,
	} {
		resp, err := http.Post(n.URL()+"/v1/push"+q, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || err != nil || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %d %q (%v), want 400 saying %q", q, resp.StatusCode, e.Error, err, want)
		}
	}
}
