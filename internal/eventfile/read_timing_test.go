package eventfile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/event"
)

// benchRows is the size of each benchmark's file.
const benchRows = 100_000

// benchFiles writes benchRows events of the test source (five fields and
// the event time) in each format, as producers write them: epoch
// milliseconds, a handful of kinds, optional Parquet columns compressed
// with Snappy.
func benchFiles(b *testing.B) map[Format]string {
	dir := b.TempDir()
	kinds := []string{"view", "click", "like", "share", "buy"}
	var csv, jsonl strings.Builder
	csv.WriteString("ts,user_id,kind,amount,n,ok\n")
	rows := make([][]any, benchRows)
	for i := range benchRows {
		ts := int64(1795600000000 - benchRows + i)
		user, kind, amount, n, ok := int64(i*7919%100_000), kinds[i%len(kinds)], float64(i%1000)/8, int64(i%17), i%2 == 0
		fmt.Fprintf(&csv, "%d,%d,%s,%g,%d,%t\n", ts, user, kind, amount, n, ok)
		fmt.Fprintf(&jsonl, `{"ts":%d,"user_id":%d,"kind":%q,"amount":%g,"n":%d,"ok":%t}`+"\n", ts, user, kind, amount, n, ok)
		rows[i] = []any{ts, user, kind, amount, n, ok}
	}
	opt := parquet.Optional
	data := encodeParquet(b, []pcol{
		{"ts", parquet64()}, {"user_id", opt(parquet64())}, {"kind", opt(parquet.String())},
		{"amount", opt(parquet.Leaf(parquet.DoubleType))}, {"n", opt(parquet64())}, {"ok", opt(parquet.Leaf(parquet.BooleanType))},
	}, rows, 0, parquet.Compression(&parquet.Snappy))
	files := map[Format]string{
		CSV:       filepath.Join(dir, "bench.csv"),
		JSONLines: filepath.Join(dir, "bench.jsonl"),
		Parquet:   filepath.Join(dir, "bench.parquet"),
	}
	for f, content := range map[Format][]byte{CSV: []byte(csv.String()), JSONLines: []byte(jsonl.String()), Parquet: data} {
		if err := os.WriteFile(files[f], content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return files
}

// BenchmarkRead reads a file of benchRows events per format and reports
// rows/s.
func BenchmarkRead(b *testing.B) {
	files := benchFiles(b)
	dec, src := testSource(b)
	for _, format := range []Format{Parquet, CSV, JSONLines} {
		b.Run(strings.ReplaceAll(format.String(), " ", ""), func(b *testing.B) {
			st, err := os.Stat(files[format])
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(st.Size())
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				err := Read(context.Background(), files[format], dec, src, Options{Now: now}, func(row int, ev *event.Event, problems []Problem) error {
					if ev == nil {
						return fmt.Errorf("row %d: %v", row, problems)
					}
					n++
					return nil
				})
				if err != nil || n != benchRows {
					b.Fatalf("%v after %s rows", err, strconv.Itoa(n))
				}
			}
			b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
