package importer_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/importer"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// rw1Row is a row of the RW1 history written as Parquet.
type rw1Row struct {
	UserID  int64   `parquet:"user_id"`
	PostID  int64   `parquet:"post_id"`
	Kind    string  `parquet:"kind,dict"`
	DwellMS float64 `parquet:"dwell_ms"`
	TS      int64   `parquet:"ts,timestamp(millisecond)"`
}

// BenchmarkImportRW1 imports the RW1 history (KILN_BENCH_IMPORT_EVENTS
// events, default 2,000,000, over the 30 days before now) from one Parquet
// file into a fresh data directory with its archive, offline, as kiln
// import does: every row checked, then imported, archived and folded into
// the rows its views' windows still cover. It reports events/s and events
// per CPU-second of the process (all of its goroutines).
func BenchmarkImportRW1(b *testing.B) {
	n := 2_000_000
	if s := os.Getenv("KILN_BENCH_IMPORT_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		b.Fatal(err)
	}
	plans, err := tile.CompileProject(p)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	dir := b.TempDir()
	file := filepath.Join(dir, "rw1.parquet")
	writeRW1(b, file, n, now)
	// kiln import runs with GOGC=200 (unless the environment sets it), as
	// kiln serve does.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(200))
	}
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		data := filepath.Join(dir, "data-"+strconv.Itoa(i))
		arch, _, err := node.OpenArchive(context.Background(), "", p, data)
		if err != nil {
			b.Fatal(err)
		}
		c0 := processCPU()
		off, err := node.OpenOffline(node.Config{Project: p, DataDir: data, Archive: arch})
		if err != nil {
			b.Fatal(err)
		}
		sum, err := importer.Run(context.Background(), importer.WriterPusher{W: off.Writer}, importer.Options{
			Project: p, Plans: plans, Source: p.Source(workload.SourceName), Files: []string{file}, Now: now.UnixMilli(),
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := off.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - c0
		if sum.Rows != int64(n) {
			b.Fatalf("imported %d rows of %d", sum.Rows, n)
		}
		b.StopTimer()
		os.RemoveAll(data)
		b.StartTimer()
	}
	events := float64(n) * float64(b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(events/cpu.Seconds(), "events/cpu-s")
}

func writeRW1(b *testing.B, path string, n int, now time.Time) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := parquet.NewGenericWriter[rw1Row](f, parquet.Compression(&parquet.Snappy))
	g := workload.NewGenerator(workload.Config{Scale: float64(n) / 20_000_000, HistoryEvents: n, Now: now})
	rows := make([]rw1Row, 0, 4096)
	g.History(func(ev *event.Event) bool {
		rows = append(rows, rw1Row{
			UserID: ev.Fields[workload.FieldUserID].Int, PostID: ev.Fields[workload.FieldPostID].Int,
			Kind: ev.Fields[workload.FieldKind].Str, DwellMS: ev.Fields[workload.FieldDwellMS].Num(), TS: ev.TS,
		})
		if len(rows) == cap(rows) {
			if _, err := w.Write(rows); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
		return true
	})
	if _, err := w.Write(rows); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
