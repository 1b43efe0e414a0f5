package training_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/training"
)

// checkSpilled builds the set of a spine again from a spine file, with a
// memory so small that the spine is sorted in many runs on disk, whole and
// in three shards: the rows, in time order, must be the in-memory set's,
// every value as its shortest exact text, and the runs must be gone.
func checkSpilled(t *testing.T, opts training.Options, prep *query.Prepared, spine *training.Spine, set *training.Set) {
	t.Helper()
	dir := t.TempDir()
	spinePath := filepath.Join(dir, "spine.csv")
	header := []string{"row"}
	for _, pe := range prep.Entities {
		header = append(header, pe.Entity.Def.Keys...)
	}
	header = append(header, "ts")
	f, err := os.Create(spinePath)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write(header)
	n := len(spine.Times)
	for i := range n {
		rec := []string{strconv.Itoa(i)}
		for e := range prep.Entities {
			rec = append(rec, valueText(spine.Keys[e][i]))
		}
		w.Write(append(rec, strconv.FormatInt(spine.Times[i], 10)))
	}
	w.Flush()
	if err := f.Close(); err != nil || w.Error() != nil {
		t.Fatal(err, w.Error())
	}

	// One run's rows: the spine's in time order, rows of one time in
	// spine order, then the values.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return int(spine.Times[x] - spine.Times[y]) })
	var want []string
	for _, i := range order {
		rec := []string{strconv.Itoa(i)}
		for e := range prep.Entities {
			rec = append(rec, valueText(spine.Keys[e][i]))
		}
		rec = append(rec, strconv.FormatInt(spine.Times[i], 10))
		for c := range set.Columns {
			rec = append(rec, valueText(set.Columns[c].Value(i)))
		}
		want = append(want, strings.Join(rec, ","))
	}

	temp := filepath.Join(dir, "temp")
	if err := os.Mkdir(temp, 0o755); err != nil {
		t.Fatal(err)
	}
	build := func(shard training.Shard, name string) ([]string, training.Summary) {
		out := filepath.Join(dir, name)
		sum, err := training.BuildFile(context.Background(), opts, prep, training.FileOptions{
			Spine: spinePath, Out: out, TimeColumn: "ts", Shard: shard, SpineMemory: 2000, TempDir: temp,
		})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if left, _ := os.ReadDir(temp); len(left) > 0 {
			t.Errorf("%d files left in the temporary directory", len(left))
		}
		return lines[1:], sum
	}
	got, sum := build(training.Whole, "whole.csv")
	if sum.Runs < 2 || sum.Spilled == 0 {
		t.Errorf("%d rows spilled to %d runs of %d bytes: want several runs", n, sum.Runs, sum.Spilled)
	}
	if sum.Rows != n || sum.EventsRead != set.Summary.EventsRead || sum.EventsFolded != set.Summary.EventsFolded || sum.Entities != set.Summary.Entities {
		t.Errorf("summary from the file %+v, in memory %+v", sum, set.Summary)
	}
	var parts []string
	for i := range 3 {
		rows, _ := build(training.Shard{I: i, N: 3}, fmt.Sprintf("part-%d.csv", i))
		parts = append(parts, rows...)
	}
	for _, g := range [][]string{got, parts} {
		if !slices.Equal(g, want) {
			for i := range min(len(g), len(want)) {
				if g[i] != want[i] {
					t.Fatalf("%s: spilled row %d is\n%s\nin memory\n%s", opts.Mode, i, g[i], want[i])
				}
			}
			t.Fatalf("%s: %d rows spilled, %d in memory", opts.Mode, len(g), len(want))
		}
	}
}

// valueText is a value as the CSV training set writes it: floats in the
// shortest text that reads back to the same bits.
func valueText(v event.Value) string {
	switch v.Kind {
	case event.Int64:
		return strconv.FormatInt(v.Int, 10)
	case event.Float64:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case event.String:
		return v.Str
	case event.Bool:
		return strconv.FormatBool(v.Bool)
	}
	return ""
}

// A build stopped after its spine spilled (here canceled as it starts
// reading the archive, as an interrupt would) removes its runs and writes
// no output; a --temp-dir that cannot be written is an error that says so.
func TestBuildFileCleansUp(t *testing.T) {
	p, err := projectfile.Parse("kiln.yaml", []byte(project))
	if err != nil {
		t.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := training.Resolver(p, plans)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := engine.Service("all")
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := archive.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	text := "user_id,post_id,ts\n"
	for i := range 200 {
		text += fmt.Sprintf("%d,p%d,%d\n", i%7, i%3, 1773142200000+int64(i))
	}
	if err := os.WriteFile(spine, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(dir, "temp")
	if err := os.Mkdir(temp, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.parquet")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := training.Options{Project: p, Plans: plans, Archive: archive.New(bucket), Progress: func(done, total int64) { cancel() }}
	fo := training.FileOptions{Spine: spine, Out: out, TimeColumn: "ts", SpineMemory: 1000, TempDir: temp}
	_, err = training.BuildFile(ctx, opts, prep, fo)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled build: %v", err)
	}
	if left, _ := os.ReadDir(temp); len(left) > 0 {
		t.Errorf("a canceled build left %d files in its temporary directory", len(left))
	}
	if left, _ := os.ReadDir(dir); len(left) != 2 {
		t.Errorf("a canceled build left %d files beside its output, want only the spine and the temporary directory", len(left)-2)
	}

	opts.Progress = nil
	fo.TempDir = filepath.Join(dir, "missing")
	_, err = training.BuildFile(context.Background(), opts, prep, fo)
	if err == nil || !strings.Contains(err.Error(), "--temp-dir") {
		t.Errorf("runs to a missing directory: %v, want an error naming --temp-dir", err)
	}
	fo.SpineMemory = 0 // the spine in memory: no temporary directory needed
	if _, err := training.BuildFile(context.Background(), opts, prep, fo); err != nil {
		t.Errorf("a spine held in memory: %v", err)
	}
}
