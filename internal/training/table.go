package training

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/query"
)

// Table is a spine file as read: its columns in the file's order, each
// with every row's cell, kept as they are so that they pass through to the
// training set unchanged.
type Table struct {
	Columns []TableColumn
	Rows    int
}

// TableColumn is one column of a Table: text cells (from CSV; "" is null)
// or Parquet values of a flat column (from Parquet, with its node).
type TableColumn struct {
	Name string
	// Key is the type of an entity key column (SpineOf sets it): a text
	// column of int64 keys is written to Parquet as INT64.
	Key    event.Type
	Text   []string
	Node   parquet.Node
	Values []parquet.Value
}

// null reports whether row i's cell is null.
func (c *TableColumn) null(i int) bool {
	if c.Node == nil {
		return c.Text[i] == ""
	}
	return c.Values[i].IsNull()
}

// MaxCellBytes bounds one cell of a CSV spine.
const MaxCellBytes = 1 << 20

// ReadTable reads a spine file: CSV with a header row (.csv) or Parquet
// (.parquet), chosen by the name's extension.
func ReadTable(path string) (*Table, error) {
	r, err := openTable(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	t := r.header()
	if _, err := r.read(t, math.MaxInt, math.MaxInt64, 0); err != nil {
		return nil, err
	}
	return t, nil
}

// tableReader reads a spine file's rows a chunk at a time.
type tableReader interface {
	// header returns a table of the file's columns and no rows.
	header() *Table
	// read appends the file's next rows to t, a table of header's
	// columns, until t holds maxRows rows or about maxBytes of cells
	// (counting extra bytes a row besides), and reports whether the file
	// has rows after them.
	read(t *Table, maxRows int, maxBytes, extra int64) (more bool, err error)
	Close() error
}

// openTable opens a spine file for reading, by its extension.
func openTable(path string) (tableReader, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r, err := newCSVReader(path, f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return r, nil
	case ".parquet":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		r, err := newParquetReader(path, f, st.Size())
		if err != nil {
			f.Close()
			return nil, err
		}
		return r, nil
	}
	return nil, fmt.Errorf("%s: a spine is a .csv or a .parquet file", path)
}

type csvReader struct {
	name    string
	f       io.Closer
	r       *csv.Reader
	columns []string
	rows    int // read so far
}

func newCSVReader(name string, f io.ReadCloser) (*csvReader, error) {
	r := csv.NewReader(f)
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty: the first line names the columns", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	seen := map[string]bool{}
	for _, h := range header {
		if seen[h] {
			return nil, fmt.Errorf("%s:1: column %q is named twice", name, h)
		}
		seen[h] = true
	}
	return &csvReader{name: name, f: f, r: r, columns: slices.Clone(header)}, nil
}

func (c *csvReader) header() *Table {
	t := &Table{}
	for _, h := range c.columns {
		t.Columns = append(t.Columns, TableColumn{Name: h})
	}
	return t
}

func (c *csvReader) read(t *Table, maxRows int, maxBytes, extra int64) (bool, error) {
	var bytes int64
	for t.Rows < maxRows && bytes < maxBytes {
		rec, err := c.r.Read()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", c.name, err)
		}
		for j, cell := range rec {
			if len(cell) > MaxCellBytes {
				return false, fmt.Errorf("%s:%d:%s: a cell of %d bytes; at most %d", c.name, c.rows+2, c.columns[j], len(cell), MaxCellBytes)
			}
			t.Columns[j].Text = append(t.Columns[j].Text, strings.Clone(cell))
			bytes += 16 + int64(len(cell))
		}
		bytes += extra
		t.Rows++
		c.rows++
	}
	return true, nil
}

func (c *csvReader) Close() error { return c.f.Close() }

type parquetReader struct {
	name    string
	f       io.Closer
	columns []TableColumn
	byIndex map[int]int
	r       *parquet.Reader
	buf     []parquet.Row
	rows    int // read so far
}

// newParquetReader opens a Parquet spine: flat columns only.
func newParquetReader(name string, f io.ReadCloser, size int64) (pr *parquetReader, err error) {
	defer func() {
		// The Parquet library panics on some damaged files.
		if p := recover(); p != nil {
			pr, err = nil, fmt.Errorf("%s: a damaged Parquet file (%v)", name, p)
		}
	}()
	in, ok := f.(io.ReaderAt)
	if !ok {
		return nil, fmt.Errorf("%s: not a file", name)
	}
	pf, err := parquet.OpenFile(in, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a Parquet file, or a damaged one (%v)", name, err)
	}
	pr = &parquetReader{name: name, f: f, byIndex: map[int]int{}, buf: make([]parquet.Row, 1024)}
	s := pf.Schema()
	for _, fd := range s.Fields() {
		leaf, ok := s.Lookup(fd.Name())
		if !fd.Leaf() || fd.Repeated() || !ok || leaf.MaxRepetitionLevel != 0 {
			return nil, fmt.Errorf("%s: column %q is nested or repeated: a spine has flat columns", name, fd.Name())
		}
		pr.byIndex[leaf.ColumnIndex] = len(pr.columns)
		pr.columns = append(pr.columns, TableColumn{Name: fd.Name(), Node: fd})
	}
	pr.r = parquet.NewReader(pf)
	return pr, nil
}

func (p *parquetReader) header() *Table {
	t := &Table{}
	for _, c := range p.columns {
		t.Columns = append(t.Columns, TableColumn{Name: c.Name, Node: c.Node})
	}
	return t
}

func (p *parquetReader) read(t *Table, maxRows int, maxBytes, extra int64) (more bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			more, err = false, fmt.Errorf("%s: a damaged Parquet file (%v)", p.name, r)
		}
	}()
	var bytes int64
	for t.Rows < maxRows && bytes < maxBytes {
		n, err := p.r.ReadRows(p.buf[:min(len(p.buf), maxRows-t.Rows)])
		for _, row := range p.buf[:n] {
			for _, v := range row {
				j, ok := p.byIndex[v.Column()]
				if !ok {
					return false, fmt.Errorf("%s: row %d has a value of column %d, which the schema does not have", p.name, p.rows+1, v.Column())
				}
				t.Columns[j].Values = append(t.Columns[j].Values, v.Clone())
				bytes += 24
				if k := v.Kind(); k == parquet.ByteArray || k == parquet.FixedLenByteArray {
					bytes += int64(len(v.ByteArray()))
				}
			}
			bytes += extra
			t.Rows++
			p.rows++
		}
		if err == io.EOF {
			return false, p.complete(t)
		}
		if err != nil {
			return false, fmt.Errorf("%s: row %d: %w", p.name, p.rows+1, err)
		}
	}
	return true, p.complete(t)
}

// complete checks that every column has a value per row.
func (p *parquetReader) complete(t *Table) error {
	for _, c := range t.Columns {
		if len(c.Values) != t.Rows {
			return fmt.Errorf("%s: column %q has %d values for %d rows: the file is damaged", p.name, c.Name, len(c.Values), t.Rows)
		}
	}
	return nil
}

func (p *parquetReader) Close() error {
	p.r.Close()
	return p.f.Close()
}

// RowError is a problem with one row of a spine: its index from 0 and the
// column.
type RowError struct {
	Row    int
	Column string
	Msg    string
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %s: %s", e.Row, e.Column, e.Msg) }

// MaxRowErrors is how many row problems SpineOf reports before it stops.
const MaxRowErrors = 20

// SpineOf takes the spine of the prepared features out of a table: the
// time column (RFC 3339 or epoch milliseconds, or a Parquet TIMESTAMP) and
// the key columns of every entity type the features are about, with their
// key types. Problems of rows are *RowError, joined (at most MaxRowErrors).
func SpineOf(t *Table, prep *query.Prepared, timeColumn string) (*Spine, error) {
	var errs []error
	sp, err := spineOf(t, prep, timeColumn, 0, &errs)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sp, nil
}

// spineOf is SpineOf of a table whose row 0 is the spine's row offset: it
// adds the problems of rows to errs (up to MaxRowErrors in all) and
// returns an error only for a problem of the columns.
func spineOf(t *Table, prep *query.Prepared, timeColumn string, offset int, errs *[]error) (*Spine, error) {
	col := func(name string) *TableColumn {
		for i := range t.Columns {
			if t.Columns[i].Name == name {
				return &t.Columns[i]
			}
		}
		return nil
	}
	var names []string
	for _, c := range t.Columns {
		names = append(names, c.Name)
	}
	var missing []string
	if col(timeColumn) == nil {
		missing = append(missing, fmt.Sprintf("the time column %q (name another with --time-column)", timeColumn))
	}
	for _, pe := range prep.Entities {
		for _, k := range pe.Entity.Def.Keys {
			if col(k) == nil {
				missing = append(missing, fmt.Sprintf("%q, the key of entity %s", k, pe.Entity.Def.Name))
			}
		}
		for _, f := range pe.Features {
			if col(f.Name) != nil {
				return nil, fmt.Errorf("the spine has a column %q, which the training set adds: rename it", f.Name)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the spine has no column %s (its columns: %s)", strings.Join(missing, ", no column "), strings.Join(names, ", "))
	}
	sp := &Spine{Times: make([]int64, t.Rows), Keys: make([][]event.Value, len(prep.Entities))}
	bad := func(row int, column, format string, args ...any) {
		if len(*errs) < MaxRowErrors {
			*errs = append(*errs, &RowError{Row: offset + row, Column: column, Msg: fmt.Sprintf(format, args...)})
		}
	}
	tc := col(timeColumn)
	for i := range t.Rows {
		ts, msg := cellTime(tc, i)
		if msg != "" {
			bad(i, timeColumn, "%s", msg)
		}
		sp.Times[i] = ts
	}
	for e, pe := range prep.Entities {
		keys := make([]event.Value, 0, t.Rows*len(pe.Entity.KeyTypes))
		cols := make([]*TableColumn, len(pe.Entity.Def.Keys))
		for k, name := range pe.Entity.Def.Keys {
			cols[k] = col(name)
			cols[k].Key = pe.Entity.KeyTypes[k]
		}
		for i := range t.Rows {
			for k, c := range cols {
				v, msg := cellKey(c, i, pe.Entity.KeyTypes[k])
				if msg != "" {
					bad(i, c.Name, "%s", msg)
				}
				keys = append(keys, v)
			}
		}
		sp.Keys[e] = keys
	}
	return sp, nil
}

// cellTime reads row i of the time column in Unix ms.
func cellTime(c *TableColumn, i int) (int64, string) {
	if c.null(i) {
		return 0, "missing: every row needs its time, as RFC 3339 or epoch milliseconds"
	}
	if c.Node == nil {
		return parseTime(c.Text[i])
	}
	v := c.Values[i]
	var lt *format.LogicalType
	if c.Node.Leaf() {
		lt = c.Node.Type().LogicalType()
	}
	switch v.Kind() {
	case parquet.Int64:
		if lt != nil {
			if ts, ok := lt.Value.(*format.TimestampType); ok {
				switch ts.Unit.Value.(type) {
				case *format.MicroSeconds:
					return floorDiv(v.Int64(), 1000), ""
				case *format.NanoSeconds:
					return floorDiv(v.Int64(), 1_000_000), ""
				}
			}
		}
		return v.Int64(), ""
	case parquet.ByteArray:
		return parseTime(string(v.ByteArray()))
	}
	return 0, fmt.Sprintf("a %v column; the time is INT64 epoch milliseconds, a TIMESTAMP, or a string (RFC 3339 or epoch milliseconds)", v.Kind())
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// parseTime reads epoch milliseconds or an RFC 3339 time.
func parseTime(s string) (int64, string) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Sprintf("%q is not a time: write RFC 3339 (2026-11-26T10:00:00Z) or epoch milliseconds", truncate(s))
	}
	return t.UnixMilli(), ""
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// cellKey reads row i of a key column as type typ.
func cellKey(c *TableColumn, i int, typ event.Type) (event.Value, string) {
	if c.null(i) {
		return event.Value{}, "missing: a key cannot be null"
	}
	if c.Node == nil {
		s := c.Text[i]
		if typ == event.String {
			return event.StringValue(s), ""
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return event.Value{}, fmt.Sprintf("%q is not an int64: write an integer like 42", truncate(s))
		}
		return event.IntValue(n), ""
	}
	v := c.Values[i]
	switch {
	case typ == event.Int64 && (v.Kind() == parquet.Int64 || v.Kind() == parquet.Int32):
		return event.IntValue(v.Int64()), ""
	case typ == event.String && v.Kind() == parquet.ByteArray:
		return event.StringValue(string(v.ByteArray())), ""
	}
	want := "INT32 or INT64"
	if typ == event.String {
		want = "a BYTE_ARRAY string"
	}
	return event.Value{}, fmt.Sprintf("is %v; the key is %v: write it as %s", v.Kind(), typ, want)
}

// WriteTable writes the spine's columns, unchanged and in order, then the
// set's, to path: CSV (.csv) or Parquet (.parquet), by its extension. It
// writes a temporary file beside path and renames it, so a failure leaves
// no partial output.
func WriteTable(path string, t *Table, set *Set) error {
	return writeFile(path, func(w io.Writer) error {
		rw, err := newRowWriter(w, path, t.Columns, set.Features)
		if err != nil {
			return err
		}
		vals := make([]event.Value, len(set.Columns))
		for i := range t.Rows {
			for c := range set.Columns {
				vals[c] = set.Columns[c].Value(i)
			}
			if err := rw.write(t, i, vals); err != nil {
				return err
			}
		}
		return rw.close()
	})
}

// writeFile writes path through fill: into a temporary file beside it,
// synced and renamed, so that a failure leaves no partial output.
func writeFile(path string, fill func(w io.Writer) error) error {
	if err := checkOut(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// checkOut refuses an output name of neither extension.
func checkOut(path string) error {
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".csv" && ext != ".parquet" {
		return fmt.Errorf("%s: the training set goes to a .csv or a .parquet file", path)
	}
	return nil
}

// rowWriter writes rows of a spine table, each followed by its values.
type rowWriter interface {
	// write writes row i of t (a table of the writer's columns) and then
	// vals, one per feature (event.Null for null).
	write(t *Table, i int, vals []event.Value) error
	// close ends the file.
	close() error
}

// newRowWriter starts a CSV or Parquet file (by name's extension) of the
// columns, then one column per feature.
func newRowWriter(w io.Writer, name string, columns []TableColumn, features []query.Feature) (rowWriter, error) {
	if err := checkOut(name); err != nil {
		return nil, err
	}
	if strings.ToLower(filepath.Ext(name)) == ".csv" {
		return newCSVWriter(w, columns, features)
	}
	return newParquetWriter(w, columns, features), nil
}

type csvWriter struct {
	cw  *csv.Writer
	rec []string
}

func newCSVWriter(w io.Writer, columns []TableColumn, features []query.Feature) (*csvWriter, error) {
	cw := csv.NewWriter(w)
	rec := make([]string, 0, len(columns)+len(features))
	for _, c := range columns {
		rec = append(rec, c.Name)
	}
	for _, f := range features {
		rec = append(rec, f.Name)
	}
	return &csvWriter{cw: cw, rec: rec}, cw.Write(rec)
}

func (c *csvWriter) write(t *Table, i int, vals []event.Value) error {
	c.rec = c.rec[:0]
	for j := range t.Columns {
		c.rec = append(c.rec, cellText(&t.Columns[j], i))
	}
	for _, v := range vals {
		c.rec = append(c.rec, valueText(v))
	}
	return c.cw.Write(c.rec)
}

func (c *csvWriter) close() error {
	c.cw.Flush()
	return c.cw.Error()
}

// cellText writes a spine cell as CSV text: as it was, or a Parquet value
// in the words of a CSV file (a TIMESTAMP in RFC 3339).
func cellText(c *TableColumn, i int) string {
	if c.Node == nil {
		return c.Text[i]
	}
	v := c.Values[i]
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32, parquet.Int64:
		if lt := c.Node.Type().LogicalType(); lt != nil {
			if _, ok := lt.Value.(*format.TimestampType); ok {
				ms, _ := cellTime(c, i)
				return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
			}
		}
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray())
	}
	return v.String()
}

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

// ordered is a Parquet group whose columns keep the order given, not the
// alphabetical order of parquet.Group.
type ordered struct {
	parquet.Group
	names []string
}

func (g ordered) Fields() []parquet.Field {
	fields := slices.Clone(g.Group.Fields())
	slices.SortStableFunc(fields, func(a, b parquet.Field) int {
		return slices.Index(g.names, a.Name()) - slices.Index(g.names, b.Name())
	})
	return fields
}

func featureNode(t event.Type) parquet.Node {
	switch t {
	case event.Int64:
		return parquet.Optional(parquet.Leaf(parquet.Int64Type))
	case event.Float64:
		return parquet.Optional(parquet.Leaf(parquet.DoubleType))
	case event.Bool:
		return parquet.Optional(parquet.Leaf(parquet.BooleanType))
	}
	return parquet.Optional(parquet.String())
}

// RowGroupRows is the rows of a row group of a Parquet training set.
const RowGroupRows = 128 * 1024

type parquetWriter struct {
	pw   *parquet.Writer
	rows []parquet.Row
	n    int // columns
}

func newParquetWriter(w io.Writer, columns []TableColumn, features []query.Feature) *parquetWriter {
	g := ordered{Group: parquet.Group{}}
	for _, c := range columns {
		node := c.Node
		switch {
		case node != nil:
		case c.Key == event.Int64:
			node = parquet.Optional(parquet.Leaf(parquet.Int64Type))
		default:
			node = parquet.Optional(parquet.String())
		}
		g.Group[c.Name] = node
		g.names = append(g.names, c.Name)
	}
	for _, f := range features {
		g.Group[f.Name] = featureNode(f.Type)
		g.names = append(g.names, f.Name)
	}
	// The writer holds a row group's pages until it ends: bounded row
	// groups keep its memory from growing with the spine.
	pw := parquet.NewWriter(w, parquet.NewSchema("training_set", g), parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(RowGroupRows))
	return &parquetWriter{pw: pw, rows: make([]parquet.Row, 0, parquetBatch), n: len(g.names)}
}

// parquetBatch is the rows a parquetWriter hands the library at once.
const parquetBatch = 1024

func (p *parquetWriter) write(t *Table, i int, vals []event.Value) error {
	var row parquet.Row
	if len(p.rows) < cap(p.rows) {
		// Reuse the row's memory from the batch before: the library
		// copies what it is handed.
		row = p.rows[:len(p.rows)+1][len(p.rows)][:0]
	}
	for j := range t.Columns {
		c := &t.Columns[j]
		var v parquet.Value
		switch {
		case c.Node != nil:
			v = c.Values[i]
			v = v.Level(0, v.DefinitionLevel(), j)
		case c.Text[i] == "":
			v = parquet.NullValue().Level(0, 0, j)
		case c.Key == event.Int64:
			k, _ := cellKey(c, i, event.Int64) // SpineOf read it
			v = parquet.Int64Value(k.Int).Level(0, 1, j)
		default:
			v = parquet.ByteArrayValue([]byte(c.Text[i])).Level(0, 1, j)
		}
		row = append(row, v)
	}
	for c, x := range vals {
		j := len(t.Columns) + c
		if x.Kind == event.Null {
			row = append(row, parquet.NullValue().Level(0, 0, j))
		} else {
			row = append(row, parquetValue(x).Level(0, 1, j))
		}
	}
	p.rows = append(p.rows, row)
	if len(p.rows) == cap(p.rows) {
		return p.flush()
	}
	return nil
}

func (p *parquetWriter) flush() error {
	_, err := p.pw.WriteRows(p.rows)
	p.rows = p.rows[:0]
	return err
}

func (p *parquetWriter) close() error {
	if err := p.flush(); err != nil {
		return err
	}
	return p.pw.Close()
}

func parquetValue(v event.Value) parquet.Value {
	switch v.Kind {
	case event.Int64:
		return parquet.Int64Value(v.Int)
	case event.Float64:
		return parquet.DoubleValue(v.Float)
	case event.String:
		return parquet.ByteArrayValue([]byte(v.Str))
	case event.Bool:
		return parquet.BooleanValue(v.Bool)
	}
	return parquet.NullValue()
}
