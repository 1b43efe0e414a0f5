package training_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/training"
)

// A Parquet training set of more rows than a row group holds reads back
// whole and in order.
func TestWriteTableRowGroups(t *testing.T) {
	n := 2*training.RowGroupRows + 5
	tab := &training.Table{Rows: n, Columns: []training.TableColumn{{Name: "id", Key: event.Int64}}}
	col := query.Column{Type: event.Int64, Ints: make([]int64, n), Valid: make([]bool, n)}
	for i := range n {
		tab.Columns[0].Text = append(tab.Columns[0].Text, strconv.Itoa(i))
		col.Ints[i], col.Valid[i] = int64(2*i), i%7 != 0
	}
	set := &training.Set{Features: []query.Feature{{Name: "v:x", Type: event.Int64}}, Columns: []query.Column{col}}
	path := filepath.Join(t.TempDir(), "out.parquet")
	if err := training.WriteTable(path, tab, set); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if groups := len(pf.RowGroups()); groups != 3 {
		t.Errorf("%d row groups, want 3", groups)
	}
	back, err := training.ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Rows != n {
		t.Fatalf("%d rows back, wrote %d", back.Rows, n)
	}
	for i := range n {
		id, v := back.Columns[0].Values[i], back.Columns[1].Values[i]
		if id.Int64() != int64(i) || v.IsNull() != (i%7 == 0) || (!v.IsNull() && v.Int64() != int64(2*i)) {
			t.Fatalf("row %d back as %v, %v", i, id, v)
		}
	}
}
