package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/training"
)

const trainingProject = `project: tr
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
      n:     {agg: count, windows: [1h]}
      dwell: {agg: sum, field: dwell, windows: [1h]}
      last:  {agg: last, field: kind}
services:
  model:
    views: [by_user]
`

// trainingDir writes the project and an archive in DIR/data/archive:
// user 1 has events at 10:00 (arrived 10:00), 10:30 (arrived 11:30, late
// in arrival) and 12:00; user 2 has none.
func trainingDir(t *testing.T) (dir, proj string) {
	t.Helper()
	dir = t.TempDir()
	proj = filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(proj, []byte(trainingProject), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := projectfile.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive.NewDir(filepath.Join(dir, "data", "archive"))
	if err != nil {
		t.Fatal(err)
	}
	at := func(hhmm string) int64 {
		tm, err := time.Parse(time.RFC3339, "2026-03-10T"+hhmm+":00Z")
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	ev := func(ts, arrival string, off int64, kind string, dwell float64) archive.Archived {
		return archive.Archived{Time: at(ts), Arrival: at(arrival), Origin: archive.Origin{Stream: "push/x", Offset: off},
			Fields: []event.Value{event.IntValue(1), event.StringValue(kind), event.FloatValue(dwell)}}
	}
	evs := []archive.Archived{
		ev("10:00", "10:00", 1, "view", 1.5),
		ev("10:30", "11:30", 2, "like", 2.25),
		ev("12:00", "12:00", 3, "share", 4),
	}
	if err := archive.New(b).Append(context.Background(), p.Source("clicks"), "t-1", evs); err != nil {
		t.Fatal(err)
	}
	return dir, proj
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// kiln training-set from a CSV spine to CSV and Parquet, in both modes:
// values at each row's time, rows in time order, passthrough columns
// unchanged and in order, nulls for a key with no events, a summary; a time
// outside the archive gets a warning with the count.
func TestTrainingSetCommand(t *testing.T) {
	dir, proj := trainingDir(t)
	spine := write(t, filepath.Join(dir, "labels.csv"),
		"label,user_id,ts,note\n"+
			"1,1,2026-03-10T10:45:00Z,a\n"+ // 10:00 counts; 10:30 by event time only
			"0,1,1773142200000,\"b, c\"\n"+ // 11:30: 10:30 alone, either way
			"1,2,2026-03-10T11:00:00Z,\n"+ // user 2: no events
			"0,1,2026-03-12T00:00:00Z,d\n") // after the archive's last date: warned
	for _, tc := range []struct {
		flags []string
		want  []string
	}{
		{nil, []string{
			"label,user_id,ts,note,by_user:n_1h,by_user:dwell_1h,by_user:last",
			"1,1,2026-03-10T10:45:00Z,a,2,3.75,like",
			"1,2,2026-03-10T11:00:00Z,,,,",
			`0,1,1773142200000,"b, c",1,2.25,like`,
			"0,1,2026-03-12T00:00:00Z,d,0,0,share",
		}},
		{[]string{"--as-served"}, []string{
			"label,user_id,ts,note,by_user:n_1h,by_user:dwell_1h,by_user:last",
			"1,1,2026-03-10T10:45:00Z,a,1,1.5,view",
			"1,2,2026-03-10T11:00:00Z,,,,",
			`0,1,1773142200000,"b, c",1,2.25,like`,
			"0,1,2026-03-12T00:00:00Z,d,0,0,share",
		}},
	} {
		out := filepath.Join(dir, "train.csv")
		args := append([]string{"training-set", "-c", proj, "--data", filepath.Join(dir, "data"), "--service", "model", "--spine", spine, "--out", out}, tc.flags...)
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", tc.flags, err, stderr.String())
		}
		got, _ := os.ReadFile(out)
		if want := strings.Join(tc.want, "\n") + "\n"; string(got) != want {
			t.Errorf("%v: wrote\n%s\nwant\n%s", tc.flags, got, want)
		}
		if !strings.Contains(stdout.String(), "kiln training-set: 4 rows, 2 entities, 3 values a row") || !strings.Contains(stdout.String(), "3 events read") {
			t.Errorf("summary: %s", stdout.String())
		}
		if !strings.Contains(stderr.String(), "warning: 1 of 4 rows have a time the archive does not cover") {
			t.Errorf("no warning of the uncovered row: %s", stderr.String())
		}
	}

	// Parquet out, and back in as a spine: the same values, typed.
	pq := filepath.Join(dir, "train.parquet")
	var stdout, stderr bytes.Buffer
	args := []string{"training-set", "-c", proj, "--data", filepath.Join(dir, "data"), "--features", "by_user:n_1h,by_user:last", "--spine", spine, "--out", pq}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	tab, err := training.ReadTable(pq)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range tab.Columns {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "label,user_id,ts,note,by_user:n_1h,by_user:last" || tab.Rows != 4 {
		t.Fatalf("parquet columns %v, %d rows", names, tab.Rows)
	}
	n, last := tab.Columns[4], tab.Columns[5]
	if n.Values[0].Int64() != 2 || !n.Values[1].IsNull() || string(last.Values[2].ByteArray()) != "like" || string(tab.Columns[3].Values[2].ByteArray()) != "b, c" {
		t.Errorf("parquet values: n %v, last %v", n.Values, last.Values)
	}
	// A Parquet spine gives the same training set as the CSV one.
	again := filepath.Join(dir, "again.csv")
	args = []string{"training-set", "-c", proj, "--data", filepath.Join(dir, "data"), "--features", "by_user:dwell_1h", "--spine", pq, "--out", again}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	got, _ := os.ReadFile(again)
	if want := "label,user_id,ts,note,by_user:n_1h,by_user:last,by_user:dwell_1h\n1,1,2026-03-10T10:45:00Z,a,2,like,3.75\n"; !strings.HasPrefix(string(got), want) {
		t.Errorf("from a Parquet spine:\n%s\nwant it to start\n%s", got, want)
	}
}

// Bad input gets a clear error and writes nothing.
func TestTrainingSetCommandRefuses(t *testing.T) {
	dir, proj := trainingDir(t)
	data := filepath.Join(dir, "data")
	out := filepath.Join(dir, "out.csv")
	for _, tc := range []struct {
		name, spine string
		flags       []string
		want        string
		usage       bool
	}{
		{"no key column", "ts,label\n2026-03-10T11:00:00Z,1\n", nil, `no column "user_id", the key of entity user`, false},
		{"no time column", "user_id\n1\n", nil, `no column the time column "ts" (name another with --time-column)`, false},
		{"wrong key type", "user_id,ts\n1,2026-03-10T11:00:00Z\nabc,2026-03-10T11:00:00Z\n", nil, `row 1: user_id: "abc" is not an int64`, false},
		{"bad time", "user_id,ts\n1,yesterday\n", nil, `row 0: ts: "yesterday" is not a time`, false},
		{"null key", "user_id,ts\n,2026-03-10T11:00:00Z\n", nil, "row 0: user_id: missing: a key cannot be null", false},
		{"other time column", "user_id,when\n1,2026-03-10T11:00:00Z\n", []string{"--time-column", "at"}, `"at"`, false},
		{"a column named as a feature", "user_id,ts,by_user:n_1h\n1,2026-03-10T11:00:00Z,3\n", nil, `the spine has a column "by_user:n_1h"`, false},
		{"unknown service", "user_id,ts\n1,1\n", []string{"--service", "nope"}, `service "nope" is not defined`, true},
		{"no archive", "user_id,ts\n1,1\n", []string{"--data", filepath.Join(dir, "nothing")}, "no event archive at", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spine := write(t, filepath.Join(dir, "spine.csv"), tc.spine)
			args := []string{"training-set", "-c", proj, "--data", data, "--spine", spine, "--out", out}
			if !containsFlag(tc.flags, "--service") {
				args = append(args, "--service", "model")
			}
			args = append(args, tc.flags...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %s", err, tc.want)
			}
			if errors.Is(err, cli.ErrUsage) != tc.usage {
				t.Errorf("usage error: %v, want %v", errors.Is(err, cli.ErrUsage), tc.usage)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("an output was written: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "nothing")); !os.IsNotExist(err) {
				t.Errorf("a missing archive was created")
			}
		})
	}
	for _, args := range [][]string{
		{"--spine", "s.csv", "--out", "o.csv"},
		{"--service", "model", "--features", "by_user:n_1h", "--spine", "s.csv", "--out", "o.csv"},
		{"--service", "model", "--out", "o.csv"},
		{"--service", "model", "--spine", "s.csv", "--out", "o.json"},
		{"--service", "model", "--spine", "s.csv", "--out", "o.csv", "--memory-mib", "-1"},
	} {
		err := run(context.Background(), append([]string{"training-set", "-c", proj}, args...), &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func containsFlag(flags []string, name string) bool {
	for _, f := range flags {
		if f == name {
			return true
		}
	}
	return false
}

// kiln training-set --shard i/N for N = 3: the three outputs' rows, in
// shard order, are one run's rows, in CSV and in Parquet, in both modes,
// from a spine in no order with rows sharing times; a shard reads the
// archive only up to its range's end.
func TestTrainingSetShards(t *testing.T) {
	dir, proj := trainingDir(t)
	p, err := projectfile.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive.NewDir(filepath.Join(dir, "data", "archive"))
	if err != nil {
		t.Fatal(err)
	}
	// Three days of events of users 1 to 5, some arriving hours late.
	rng := rand.New(rand.NewPCG(3, 3))
	start := time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC).UnixMilli()
	const span = 3 * 24 * 3600 * 1000
	var evs []archive.Archived
	for i := range 3000 {
		ts := start + rng.Int64N(span)
		evs = append(evs, archive.Archived{Time: ts, Arrival: ts + rng.Int64N(3*3600*1000), Origin: archive.Origin{Stream: "push/s", Offset: int64(i)},
			Fields: []event.Value{event.IntValue(1 + rng.Int64N(5)), event.StringValue([]string{"view", "like"}[rng.IntN(2)]), event.FloatValue(float64(rng.IntN(1000)) / 8)}})
	}
	if err := archive.New(b).Append(context.Background(), p.Source("clicks"), "s-1", evs); err != nil {
		t.Fatal(err)
	}
	// The spine: 200 rows at 40 distinct times, in random order; user 6
	// has no events.
	var times []int64
	for range 40 {
		times = append(times, start+rng.Int64N(span))
	}
	spine := "id,user_id,ts\n"
	for i := range 200 {
		spine += fmt.Sprintf("%d,%d,%d\n", i, 1+rng.IntN(6), times[rng.IntN(len(times))])
	}
	spinePath := write(t, filepath.Join(dir, "spine.csv"), spine)

	trainingSet := func(t *testing.T, out string, flags ...string) string {
		t.Helper()
		args := append([]string{"training-set", "-c", proj, "--data", filepath.Join(dir, "data"), "--service", "model", "--spine", spinePath, "--out", out}, flags...)
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", flags, err, stderr.String())
		}
		return stdout.String()
	}
	eventsRead := func(t *testing.T, summary string) int {
		t.Helper()
		m := regexp.MustCompile(`(\d+) events read`).FindStringSubmatch(summary)
		if m == nil {
			t.Fatalf("no events read in %q", summary)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	for _, mode := range [][]string{nil, {"--as-served"}} {
		for _, ext := range []string{".csv", ".parquet"} {
			t.Run(fmt.Sprintf("%v%s", mode, ext), func(t *testing.T) {
				whole := filepath.Join(t.TempDir(), "whole"+ext)
				all := eventsRead(t, trainingSet(t, whole, mode...))
				want := tableRows(t, whole)
				if len(want.rows) != 200 {
					t.Fatalf("one run wrote %d rows, want 200", len(want.rows))
				}
				var got []string
				read := 0
				for i := range 3 {
					part := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d%s", i, ext))
					summary := trainingSet(t, part, append([]string{"--shard", fmt.Sprintf("%d/3", i)}, mode...)...)
					tab := tableRows(t, part)
					if !slices.Equal(tab.columns, want.columns) {
						t.Fatalf("shard %d: columns %v, one run's %v", i, tab.columns, want.columns)
					}
					if len(tab.rows) == 0 {
						t.Errorf("shard %d is empty", i)
					}
					got = append(got, tab.rows...)
					// The archive up to the shard's last time: each shard
					// reads more than the one before, the last as much as one
					// run.
					n := eventsRead(t, summary)
					if n <= read {
						t.Errorf("shard %d read %d events, no more than the shard before it (%d)", i, n, read)
					}
					read = n
				}
				if !slices.Equal(got, want.rows) {
					t.Errorf("the shards' rows in turn differ from one run's:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want.rows, "\n"))
				}
				if read != all {
					t.Errorf("the last shard read %d events, one run %d", read, all)
				}
			})
		}
	}

	for _, bad := range []string{"3/3", "-1/3", "0/0", "1", "a/b", "0/10001"} {
		out := filepath.Join(dir, "bad.csv")
		err := run(context.Background(), []string{"training-set", "-c", proj, "--data", filepath.Join(dir, "data"), "--service", "model",
			"--spine", spinePath, "--out", out, "--shard", bad}, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "--shard") {
			t.Errorf("--shard %s: %v, want a usage error naming --shard", bad, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("--shard %s wrote an output", bad)
		}
	}
}

// rows is a training set file's column names and its rows as text.
type rows struct {
	columns, rows []string
}

func tableRows(t *testing.T, path string) rows {
	t.Helper()
	tab, err := training.ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	var r rows
	for _, c := range tab.Columns {
		r.columns = append(r.columns, c.Name)
	}
	for i := range tab.Rows {
		var cells []string
		for _, c := range tab.Columns {
			if c.Node == nil {
				cells = append(cells, c.Text[i])
			} else {
				cells = append(cells, c.Values[i].String())
			}
		}
		r.rows = append(r.rows, strings.Join(cells, ","))
	}
	return r
}
