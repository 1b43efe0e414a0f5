package training

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/event"
)

// FuzzReadSpine feeds arbitrary bytes to the spine reader as a CSV and as
// a Parquet file: it must return an error or a table, never panic, and
// reading the file a few rows at a time (as a spine larger than its memory
// is read, and its runs merged) must give the same table as reading it
// whole.
func FuzzReadSpine(f *testing.F) {
	f.Add([]byte("user_id,ts,label\n1,2026-03-10T10:00:00Z,a\n2,1773142200000,\"b, c\"\n,,\n"))
	f.Add([]byte("a,a\n1,2\n"))
	f.Add([]byte("x\n\"unterminated\n"))
	tab := &Table{Rows: 3, Columns: []TableColumn{{Name: "id", Key: event.Int64, Text: []string{"1", "", "3"}}, {Name: "s", Text: []string{"a", "", "c"}}}}
	dir := f.TempDir()
	pq := filepath.Join(dir, "seed.parquet")
	if err := WriteTable(pq, tab, &Set{}); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(pq)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		for _, ext := range []string{".csv", ".parquet"} {
			path := filepath.Join(t.TempDir(), "spine"+ext)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			whole, err := ReadTable(path)
			if err != nil {
				continue
			}
			r, err := openTable(path)
			if err != nil {
				t.Fatalf("%s: read whole, but not opened again: %v", ext, err)
			}
			var rows int
			for more := true; more; {
				chunk := r.header()
				if more, err = r.read(chunk, 2, math.MaxInt64, 0); err != nil {
					t.Fatalf("%s: read whole, but not 2 rows at a time: %v", ext, err)
				}
				for j, c := range chunk.Columns {
					w := whole.Columns[j]
					if !slices.Equal(c.Text, w.Text[min(rows, len(w.Text)):min(rows+chunk.Rows, len(w.Text))]) ||
						!slices.EqualFunc(c.Values, w.Values[min(rows, len(w.Values)):min(rows+chunk.Rows, len(w.Values))], sameValue) {
						t.Fatalf("%s: rows %d to %d of column %q differ read 2 at a time", ext, rows, rows+chunk.Rows, c.Name)
					}
				}
				rows += chunk.Rows
			}
			r.Close()
			if rows != whole.Rows {
				t.Fatalf("%s: %d rows read 2 at a time, %d whole", ext, rows, whole.Rows)
			}
		}
	})
}

func sameValue(a, b parquet.Value) bool {
	return a.Kind() == b.Kind() && a.IsNull() == b.IsNull() && bytes.Equal(a.Bytes(), b.Bytes())
}
