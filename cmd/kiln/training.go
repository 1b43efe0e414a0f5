package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/progress"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/training"
)

// defaultTrainingMemoryMiB is kiln training-set's default soft limit of
// the Go heap.
const defaultTrainingMemoryMiB = 1536

// spineShare is the part of --memory-mib (one in spineShare) that holds
// spine rows: the rest is the rows of tiles of the spine's keys, the
// archive's dates being read and the output's row group.
const spineShare = 4

func runTrainingSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln training-set", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln training-set: point-in-time feature values for every row of a spine, from the event archive",
		`usage: kiln training-set [-c kiln.yaml] (--service NAME | --features A,B) --spine FILE --out FILE [flags]

The spine (CSV with a header row, or Parquet) has per row the key field of
every entity the features need, a time (--time-column, RFC 3339 or epoch
milliseconds) and any other columns, which pass through unchanged and in
order. The output (CSV or Parquet, by its extension) adds one column per
served name with the value it had at the row's time, null where the read
API gives null. By default a value counts every event with an event time up
to the row's time; --as-served counts only the events that had arrived by
then, as the server took them: what /v1/features answered at that time.
It reads the archive (--data or --archive), whether or not a server runs
on it, and changes nothing. The rows come out in time order (rows of one
time in spine order). --shard i/N computes part i (from 0) of N, a range
of the spine's times: N processes, each with the whole spine, compute the
N parts, and their rows in part order are one run's rows. Memory does not
grow with the spine's rows: a spine larger than a quarter of --memory-mib
is sorted in runs under --temp-dir, removed at the end. docs/training.md
has the details.
`)
	config := configFlag(fs)
	service := fs.String("service", "", "the service whose values to compute")
	features := fs.String("features", "", "the served names to compute, separated by commas (view:feature_window,...)")
	spinePath := fs.String("spine", "", "the spine: a .csv or .parquet file")
	out := fs.String("out", "", "the training set to write: a .csv or .parquet file")
	timeColumn := fs.String("time-column", "ts", "the spine's time column")
	asServed := fs.Bool("as-served", false, "count only the events that had arrived by each row's time, as the server took them")
	data := fs.String("data", "kiln-data", "data directory whose archive to read (DATA/archive)")
	archiveAt := fs.String("archive", "", "the event archive: a directory or s3://BUCKET/PREFIX (default: DATA/archive)")
	shardFlag := fs.String("shard", "0/1", "compute part i (from 0) of N of the spine, split by time: i/N")
	memoryMiB := fs.Int64("memory-mib", defaultTrainingMemoryMiB, "the memory budget in MiB: the Go heap's soft limit, and a quarter of it holds spine rows, past which they are sorted in runs on disk (0: none)")
	tempDir := fs.String("temp-dir", os.TempDir(), "where the spine's runs go when it does not fit --memory-mib (removed at the end)")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case (*service == "") == (*features == ""):
		return fmt.Errorf("%w: name the values with --service NAME or --features A,B (one of them)", cli.ErrUsage)
	case *spinePath == "":
		return fmt.Errorf("%w: give the spine with --spine FILE (.csv or .parquet)", cli.ErrUsage)
	case *out == "":
		return fmt.Errorf("%w: say where the training set goes with --out FILE (.csv or .parquet)", cli.ErrUsage)
	}
	if ext := strings.ToLower(filepath.Ext(*out)); ext != ".csv" && ext != ".parquet" {
		return fmt.Errorf("%w: --out %s: write a .csv or a .parquet file", cli.ErrUsage, *out)
	}
	shard, err := training.ParseShard(*shardFlag)
	if err != nil {
		return fmt.Errorf("%w: --shard: %v", cli.ErrUsage, err)
	}
	if *memoryMiB < 0 || *memoryMiB > 1<<30 {
		return fmt.Errorf("%w: --memory-mib %d: give a size in MiB, or 0 for no limit", cli.ErrUsage, *memoryMiB)
	}
	if *memoryMiB > 0 {
		// A soft limit: it takes the collector's headroom (by default as
		// much again as the live heap) out of the peak, not the live data,
		// which grows with the spine (docs/training.md).
		prev := debug.SetMemoryLimit(*memoryMiB << 20)
		defer debug.SetMemoryLimit(prev)
	}
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	plans, err := tile.CompileProject(project)
	if err != nil {
		return err
	}
	engine, err := training.Resolver(project, plans)
	if err != nil {
		return err
	}
	var prep *query.Prepared
	if *service != "" {
		prep, err = engine.Service(*service)
	} else {
		prep, err = engine.Prepare(strings.Split(*features, ","))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	location := *archiveAt
	if location == "" {
		location = filepath.Join(*data, "archive")
	}
	if !strings.Contains(location, "://") && location != node.ArchiveNone {
		// Opening a directory archive creates it: a mistyped path would
		// read as an empty archive.
		if _, err := os.Stat(location); err != nil {
			return fmt.Errorf("no event archive at %s (give --data DIR of a server, or --archive): %w", location, err)
		}
	}
	arch, _, err := node.OpenArchive(ctx, location, project, *data)
	if err != nil {
		return err
	}
	if arch == nil {
		return fmt.Errorf("%w: a training set is computed from the event archive: give its location with --archive DIR or s3://BUCKET/PREFIX", cli.ErrUsage)
	}
	mode := training.EventTime
	if *asServed {
		mode = training.AsServed
	}
	bar := progress.New(stderr, 0)
	s, err := training.BuildFile(ctx, training.Options{
		Project: project, Plans: plans, Archive: arch, Mode: mode,
		Progress: func(done, total int64) { bar.Update("reading the archive (dates)", done, total, false) },
	}, prep, training.FileOptions{
		Spine: *spinePath, Out: *out, TimeColumn: *timeColumn, Shard: shard,
		SpineMemory: *memoryMiB << 20 / spineShare, TempDir: *tempDir,
		OnShard: func(rows int, from, to int64) {
			if shard != training.Whole {
				fmt.Fprintf(stderr, "kiln training-set: shard %s: %d of the spine's rows, times %s\n", shard, rows, shardRange(from, to))
			}
		},
	})
	bar.Finish()
	if err != nil {
		return err
	}
	if s.Uncovered > 0 {
		fmt.Fprintf(stderr, "kiln training-set: warning: %d of %d rows have a time the archive does not cover (before its first date, less the longest window, or after its last): their values may miss events\n", s.Uncovered, s.Rows)
	}
	values := 0
	for _, pe := range prep.Entities {
		values += len(pe.Features)
	}
	spilled := "nothing spilled"
	if s.Runs > 0 {
		spilled = fmt.Sprintf("the spine spilled to %d runs of %.1f MiB in all", s.Runs, float64(s.Spilled)/(1<<20))
	}
	fmt.Fprintf(stdout, "kiln training-set: %d rows, %d entities, %d values a row (%s) to %s: %d events read, %d folded, in %.1f s (%.0f rows/s, %.0f events/s); %s\n",
		s.Rows, s.Entities, values, mode, *out, s.EventsRead, s.EventsFolded, s.Seconds,
		float64(s.Rows)/max(s.Seconds, 1e-9), float64(s.EventsRead)/max(s.Seconds, 1e-9), spilled)
	return nil
}

// shardRange says a shard's time range [from, to), either end open.
func shardRange(from, to int64) string {
	at := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
	switch {
	case from == math.MinInt64 && to == math.MaxInt64:
		return "all"
	case from == math.MinInt64:
		return "before " + at(to)
	case to == math.MaxInt64:
		return "from " + at(from)
	}
	return "from " + at(from) + " to before " + at(to)
}
