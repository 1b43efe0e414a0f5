package training_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/examples"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/training"
	"github.com/kiln-dev/kiln/internal/workload"
)

func envInt(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

// BenchmarkTrainingSetRW1 builds the training set of the RW1 ranking
// service (31 values a row) for a spine of (user, post, ts) rows with Zipf
// keys over the last 7 days, from an archive holding the RW1 history:
// KILN_BENCH_TRAINING_EVENTS events (default 2,000,000) over 30 days and
// KILN_BENCH_TRAINING_ROWS spine rows (default 100,000), in event-time
// mode, and as served with KILN_BENCH_TRAINING_AS_SERVED=1 (each event
// arriving up to a minute after its time). It builds as kiln training-set
// does (BuildFile, with its default memory budget): from the spine as a
// Parquet file to a Parquet training set. It reports spine rows/s,
// archived events read/s, the spine's bytes spilled and the process's
// peak RSS.
//
// With KILN_BENCH_TRAINING_DIR set, the archive is kept in that directory
// (rw1-EVENTS or rw1-EVENTS-as-served) and reused by later runs, so that
// the peak RSS is the build's alone, and so is the spine, as
// spine-EVENTS-ROWS.parquet (user_id, post_id, ts in epoch ms), which kiln
// training-set -c examples/feed/kiln.yaml --archive DIR/rw1-EVENTS reads.
func BenchmarkTrainingSetRW1(b *testing.B) {
	nEvents := envInt(b, "KILN_BENCH_TRAINING_EVENTS", 2_000_000)
	nRows := envInt(b, "KILN_BENCH_TRAINING_ROWS", 100_000)
	asServed := os.Getenv("KILN_BENCH_TRAINING_AS_SERVED") == "1"
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		b.Fatal(err)
	}
	now := workload.DefaultNow
	keep := os.Getenv("KILN_BENCH_TRAINING_DIR")
	dir := b.TempDir()
	if keep != "" {
		dir = filepath.Join(keep, fmt.Sprintf("rw1-%d", nEvents))
		if asServed {
			dir += "-as-served"
		}
	}
	// A kept archive is complete once its marker is written.
	complete := filepath.Join(dir, "complete")
	_, err = os.Stat(complete)
	reuse := err == nil
	bucket, err := archive.NewDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	arch := archive.New(bucket)
	src := p.Source(workload.SourceName)
	g := workload.NewGenerator(workload.Config{Scale: float64(nEvents) / 20_000_000, HistoryEvents: nEvents, Now: now})
	rng := rand.New(rand.NewPCG(1, 2))
	files := 0
	if !reuse {
		files = writeHistory(b, arch, src, g, asServed, rng)
		if keep != "" {
			if err := os.WriteFile(complete, nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}

	engine, err := training.Resolver(p, plans)
	if err != nil {
		b.Fatal(err)
	}
	prep, err := engine.Service("ranking")
	if err != nil {
		b.Fatal(err)
	}
	// The spine's draws are its own: the same whether the archive is
	// written or reused. It is written to a file as drawn, so that the
	// process holds no more of it than the build does.
	if prep.Entities[0].Entity.Def.Name != "user" || prep.Entities[1].Entity.Def.Name != "post" {
		b.Fatal("the ranking service's entities are not user, post")
	}
	spinePath := filepath.Join(b.TempDir(), "spine.parquet")
	if keep != "" {
		spinePath = filepath.Join(keep, fmt.Sprintf("spine-%d-%d.parquet", nEvents, nRows))
	}
	if _, err := os.Stat(spinePath); err != nil {
		writeSpine(b, spinePath, g, nRows, now.UnixMilli())
	}
	mode := training.EventTime
	if asServed {
		mode = training.AsServed
	}
	out := filepath.Join(b.TempDir(), "train.parquet")
	prev := debug.SetMemoryLimit(trainingMemory)
	defer debug.SetMemoryLimit(prev)
	b.ResetTimer()
	var sum training.Summary
	for range b.N {
		sum, err = training.BuildFile(context.Background(), training.Options{Project: p, Plans: plans, Archive: arch, Mode: mode}, prep,
			training.FileOptions{Spine: spinePath, Out: out, TimeColumn: "ts", Shard: training.Whole, SpineMemory: trainingMemory / 4, TempDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	secs := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(nRows)/secs, "rows/s")
	b.ReportMetric(float64(sum.EventsRead)/secs, "events/s")
	b.ReportMetric(float64(sum.Spilled)/(1<<20), "spilled-MiB")
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
	b.Logf("%d rows, %d entities, %d events read, %d folded, %d files, %d runs", sum.Rows, sum.Entities, sum.EventsRead, sum.EventsFolded, files, sum.Runs)
}

// trainingMemory is kiln training-set's default --memory-mib.
const trainingMemory = 1536 << 20

// writeHistory appends the RW1 history to the archive, each event
// arriving at its time or, as served, up to a minute later, and returns
// how many files it wrote.
func writeHistory(b *testing.B, arch *archive.Archive, src *definition.Source, g *workload.Generator, asServed bool, rng *rand.Rand) int {
	batch := make([]archive.Archived, 0, 1<<19)
	seq, files := int64(0), 0
	flush := func() {
		if err := arch.Append(context.Background(), src, fmt.Sprintf("bench-%04d", files), batch); err != nil {
			b.Fatal(err)
		}
		files++
		batch = batch[:0]
	}
	g.History(func(ev *event.Event) bool {
		seq++
		arrival := ev.TS
		if asServed {
			arrival += rng.Int64N(60_000)
		}
		batch = append(batch, archive.Archived{Time: ev.TS, Arrival: arrival, Fields: append([]event.Value(nil), ev.Fields...),
			Origin: archive.Origin{Stream: "push/bench", Offset: seq}})
		if len(batch) == cap(batch) {
			flush()
		}
		return true
	})
	flush()
	return files
}

// spineRow is a row of the benchmark's spine as kiln training-set reads it.
type spineRow struct {
	UserID int64 `parquet:"user_id"`
	PostID int64 `parquet:"post_id"`
	TS     int64 `parquet:"ts"`
}

// writeSpine draws a spine of n (user, post) rows with Zipf keys over the
// week before now and writes it as Parquet.
func writeSpine(b *testing.B, path string, g *workload.Generator, n int, now int64) {
	rng := rand.New(rand.NewPCG(3, 4))
	week := int64(7 * 24 * time.Hour / time.Millisecond)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := parquet.NewGenericWriter[spineRow](f)
	rows := make([]spineRow, 0, 4096)
	var posts []int64
	for i := range n {
		ts := now - rng.Int64N(week)
		posts = g.QueryPosts(rng, 1, posts[:0])
		rows = append(rows, spineRow{UserID: g.QueryUser(rng), PostID: posts[0], TS: ts})
		if len(rows) == cap(rows) || i == n-1 {
			if _, err := w.Write(rows); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
