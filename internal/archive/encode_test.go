package archive

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"pgregory.net/rapid"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// tb is what the checks below need of a *testing.T or *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// referenceEncode writes evs as parquet.Writer does with the archive's
// schema and options: the files the archive wrote before it encoded them
// itself, which encode's must read back like.
func referenceEncode(t tb, fs *fileSchema, source string, evs []Archived, groupRows int) []byte {
	var out bytes.Buffer
	w := parquet.NewWriter(&out, fs.schema,
		parquet.Compression(&parquet.Snappy),
		parquet.CreatedBy("kiln", "archive", formatV1),
		parquet.KeyValueMetadata(metaFormat, formatV1),
		parquet.KeyValueMetadata(metaSource, source),
	)
	for len(evs) > 0 {
		group := evs[:min(len(evs), groupRows)]
		evs = evs[len(group):]
		rows := make([]parquet.Row, len(group))
		for i := range group {
			e := &group[i]
			for c, cs := range fs.cols {
				var v parquet.Value
				def := 0
				switch cs.kind {
				case colTime:
					v = parquet.Int64Value(e.Time)
				case colArrival:
					v = parquet.Int64Value(e.Arrival)
				case colOffset:
					v = parquet.Int64Value(e.Origin.Offset)
				case colStream:
					v = parquet.ByteArrayValue([]byte(e.Origin.Stream))
				default:
					switch f := e.Fields[cs.field]; f.Kind {
					case event.Int64:
						v, def = parquet.Int64Value(f.Int), 1
					case event.Float64:
						v, def = parquet.DoubleValue(f.Float), 1
					case event.String:
						v, def = parquet.ByteArrayValue([]byte(f.Str)), 1
					case event.Bool:
						v, def = parquet.BooleanValue(f.Bool), 1
					default:
						v = parquet.NullValue()
					}
				}
				rows[i] = append(rows[i], v.Level(0, def, c))
			}
		}
		if _, err := w.WriteRows(rows); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readRows reads every row of a file with parquet-go's generic reader.
func readRows(t tb, data []byte) (*parquet.File, []parquet.Row) {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	r := parquet.NewReader(f)
	defer r.Close()
	var rows []parquet.Row
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			rows = append(rows, row.Clone())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return f, rows
}

// sameEvents is equalEvents telling -0 from 0.
func sameEvents(a, b []Archived) bool {
	return slices.EqualFunc(a, b, func(x, y Archived) bool {
		return x.Time == y.Time && x.Arrival == y.Arrival && x.Origin == y.Origin &&
			slices.EqualFunc(x.Fields, y.Fields, func(v, w event.Value) bool {
				return v.Kind == w.Kind && v.Int == w.Int && math.Float64bits(v.Float) == math.Float64bits(w.Float) &&
					v.Str == w.Str && v.Bool == w.Bool
			})
	})
}

func sameValue(v, w parquet.Value) bool {
	return v.Kind() == w.Kind() && v.IsNull() == w.IsNull() && v.Column() == w.Column() &&
		v.DefinitionLevel() == w.DefinitionLevel() && v.RepetitionLevel() == w.RepetitionLevel() &&
		bytes.Equal(v.Bytes(), w.Bytes())
}

var fieldNames = []string{"user", "score", "kind", "ok", "a", "zz", "héllo", "Ünïcode", "x_1", "B"}

func drawSource(t *rapid.T) *definition.Source {
	src := &definition.Source{Name: rapid.SampledFrom([]string{"clicks", "src", "ünï"}).Draw(t, "source")}
	for _, n := range rapid.SliceOfNDistinct(rapid.SampledFrom(fieldNames), 0, 6, rapid.ID).Draw(t, "fields") {
		typ := rapid.SampledFrom([]event.Type{event.Int64, event.Float64, event.String, event.Bool}).Draw(t, n)
		src.Fields = append(src.Fields, definition.Field{Name: n, Type: typ})
	}
	return src
}

var (
	sampleInts   = []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1 << 40}
	sampleFloats = []float64{0, negZero(), 1.5, -2, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, 1e-300}
	sampleStrings = []string{"", "a", "b", "héllo", "日本語", "🙂 emoji", "\x00nul", "k"}
)

// drawString draws from a few strings often, and from many rarely, so that
// some row groups have a large dictionary.
func drawString(t *rapid.T, label string) string {
	switch rapid.IntRange(0, 9).Draw(t, label+"kind") {
	case 0:
		return rapid.String().Draw(t, label)
	case 1:
		return strings.Repeat("long", rapid.IntRange(200, 400).Draw(t, label+"n")) // past maxStatBytes
	case 2, 3:
		return fmt.Sprintf("distinct-%d", rapid.IntRange(0, 1<<20).Draw(t, label))
	}
	return rapid.SampledFrom(sampleStrings).Draw(t, label)
}

func drawValue(t *rapid.T, typ event.Type, label string) event.Value {
	if rapid.IntRange(0, 3).Draw(t, label+"null") == 0 {
		return event.Value{}
	}
	switch typ {
	case event.Int64:
		return event.IntValue(rapid.OneOf(rapid.SampledFrom(sampleInts), rapid.Int64()).Draw(t, label))
	case event.Float64:
		return event.FloatValue(rapid.OneOf(rapid.SampledFrom(sampleFloats),
			rapid.Float64Range(-1e12, 1e12)).Draw(t, label))
	case event.String:
		return event.StringValue(drawString(t, label))
	}
	return event.BoolValue(rapid.Bool().Draw(t, label))
}

func drawEvents(t *rapid.T, src *definition.Source, n int) []Archived {
	evs := make([]Archived, n)
	for i := range evs {
		e := &evs[i]
		e.Time = rapid.OneOf(rapid.Int64Range(0, maxTime), rapid.SampledFrom([]int64{0, maxTime, ms(day0)})).Draw(t, "time")
		e.Arrival = rapid.Int64().Draw(t, "arrival")
		e.Origin.Stream = drawString(t, "stream")
		e.Origin.Offset = rapid.OneOf(rapid.SampledFrom(sampleInts), rapid.Int64()).Draw(t, "offset")
		for _, f := range src.Fields {
			e.Fields = append(e.Fields, drawValue(t, f.Type, f.Name))
		}
	}
	return evs
}

// wantStats is what a column chunk's statistics must say of vals, the
// column's cells of one row group: the null count and the bounds, in the
// column's sort order.
func wantStats(typ event.Type, vals []event.Value) format.Statistics {
	var st format.Statistics
	var nonNull []event.Value
	for _, v := range vals {
		if v.Kind == event.Null {
			st.NullCount++
		} else {
			nonNull = append(nonNull, v)
		}
	}
	if len(nonNull) == 0 {
		return st
	}
	lo, hi := nonNull[0], nonNull[0]
	for _, v := range nonNull {
		if v.Compare(lo) < 0 {
			lo = v
		}
		if v.Compare(hi) > 0 {
			hi = v
		}
	}
	enc := func(v event.Value) []byte {
		switch typ {
		case event.Int64:
			return binary.LittleEndian.AppendUint64(nil, uint64(v.Int))
		case event.Float64:
			return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v.Float))
		case event.Bool:
			return []byte{b2i(v.Bool)}
		}
		return []byte(v.Str)
	}
	if typ == event.Float64 {
		if lo.Float == 0 {
			lo.Float = math.Copysign(0, -1)
		}
		if hi.Float == 0 {
			hi.Float = 0
		}
	}
	if typ == event.String && (len(lo.Str) > maxStatBytes || len(hi.Str) > maxStatBytes) {
		return st
	}
	st.MinValue, st.MaxValue = enc(lo), enc(hi)
	return st
}

// cell is event e's value in column cs.
func cell(cs *colSpec, e *Archived) event.Value {
	switch cs.kind {
	case colTime:
		return event.IntValue(e.Time)
	case colArrival:
		return event.IntValue(e.Arrival)
	case colOffset:
		return event.IntValue(e.Origin.Offset)
	case colStream:
		return event.StringValue(e.Origin.Stream)
	}
	return e.Fields[cs.field]
}

// checkEncoded checks that data, encode's file of evs, reads back as evs
// through ReadFile, and through parquet-go's generic reader exactly as the
// reference writer's file of evs does, and that its footer is right.
func checkEncoded(t tb, src *definition.Source, fs *fileSchema, lim encodeLimits, evs []Archived, data []byte) {
	t.Helper()
	got, err := ReadFile(src, "new.parquet", data)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEvents(got, evs) {
		t.Fatalf("ReadFile:\n got %v\nwant %v", got, evs)
	}

	f, rows := readRows(t, data)
	rf, wantRows := readRows(t, referenceEncode(t, fs, src.Name, evs, lim.groupRows))
	if g, w := f.Schema().String(), rf.Schema().String(); g != w {
		t.Fatalf("schema:\n%s\nwant\n%s", g, w)
	}
	m, rm := f.Metadata(), rf.Metadata()
	if !reflect.DeepEqual(m.Schema, rm.Schema) {
		t.Fatalf("schema elements:\n%+v\nwant\n%+v", m.Schema, rm.Schema)
	}
	if !reflect.DeepEqual(m.KeyValueMetadata, rm.KeyValueMetadata) || m.CreatedBy != rm.CreatedBy ||
		!reflect.DeepEqual(m.ColumnOrders, rm.ColumnOrders) || m.Version != rm.Version || m.NumRows != int64(len(evs)) {
		t.Fatalf("footer:\n%+v\nwant\n%+v", m, rm)
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("%d rows, want %d", len(rows), len(wantRows))
	}
	for i := range rows {
		if !slices.EqualFunc(rows[i], wantRows[i], sameValue) {
			t.Fatalf("row %d:\n got %v\nwant %v", i, rows[i], wantRows[i])
		}
	}

	// Row groups of lim.groupRows rows; chunks that follow one another,
	// each what its metadata says, with the right statistics.
	if want := (len(evs) + lim.groupRows - 1) / lim.groupRows; len(m.RowGroups) != want {
		t.Fatalf("%d row groups, want %d", len(m.RowGroups), want)
	}
	next := int64(len(parquetMagic))
	for g, rg := range m.RowGroups {
		group := evs[g*lim.groupRows : min(len(evs), (g+1)*lim.groupRows)]
		if rg.NumRows != int64(len(group)) || rg.FileOffset != next || int(rg.Ordinal) != g {
			t.Fatalf("row group %d: %+v", g, rg)
		}
		for c, cc := range rg.Columns {
			md := &cc.MetaData
			start := md.DataPageOffset
			if md.DictionaryPageOffset != 0 {
				start = md.DictionaryPageOffset
			}
			if start != next || cc.FileOffset != start || md.NumValues != int64(len(group)) || md.Codec != format.Snappy ||
				!slices.Equal(md.PathInSchema, []string{fs.cols[c].name}) {
				t.Fatalf("row group %d column %d: at %d, want %d: %+v", g, c, start, next, md)
			}
			next = start + md.TotalCompressedSize
			vals := make([]event.Value, len(group))
			for i := range group {
				vals[i] = cell(&fs.cols[c], &group[i])
			}
			st := md.Statistics
			if w := wantStats(fs.cols[c].typ, vals); !reflect.DeepEqual(st, w) {
				t.Fatalf("row group %d column %s: statistics %+v, want %+v", g, fs.cols[c].name, st, w)
			}
		}
	}
	if footer := int64(len(data)) - 8 - int64(binary.LittleEndian.Uint32(data[len(data)-8:])); next != footer {
		t.Fatalf("the chunks end at %d, the footer starts at %d", next, footer)
	}
}

// TestEncode writes random batches of random sources, cut into row groups,
// pages and dictionaries at random small limits, and checks each file.
func TestEncode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := drawSource(t)
		fs, err := newFileSchema(src)
		if err != nil {
			t.Fatal(err)
		}
		lim := encodeLimits{
			groupRows: rapid.IntRange(1, 60).Draw(t, "groupRows"),
			pageRows:  rapid.IntRange(1, 25).Draw(t, "pageRows"),
			pageBytes: rapid.IntRange(1, 300).Draw(t, "pageBytes"),
			dictBytes: rapid.IntRange(0, 400).Draw(t, "dictBytes"),
		}
		if rapid.Bool().Draw(t, "defaultLimits") {
			lim = defaultLimits
		}
		evs := drawEvents(t, src, rapid.IntRange(1, 150).Draw(t, "rows"))
		data, err := fs.encodeLimited(lim, src.Name, evs)
		if err != nil {
			t.Fatal(err)
		}
		checkEncoded(t, src, fs, lim, evs, data)
	})
}

// TestEncodeLarge writes a file of more than one row group at the real
// limits, with a string column whose dictionary outgrows its limit in the
// first row group and not in the second.
func TestEncodeLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large file")
	}
	src := &definition.Source{Name: "big", Fields: []definition.Field{
		{Name: "id", Type: event.String}, {Name: "n", Type: event.Int64}, {Name: "f", Type: event.Float64}, {Name: "b", Type: event.Bool},
	}}
	fs, err := newFileSchema(src)
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]Archived, defaultLimits.groupRows+5000)
	for i := range evs {
		id := event.StringValue(fmt.Sprintf("id-%07d", i))
		if i >= defaultLimits.groupRows {
			id = event.StringValue(fmt.Sprintf("id-%d", i%7))
		}
		evs[i] = Archived{Time: ms(day0) + int64(i), Arrival: ms(day0) + int64(2*i), Origin: Origin{Stream: "t/0", Offset: int64(i)},
			Fields: []event.Value{id, event.IntValue(int64(i * i)), event.FloatValue(float64(i) / 3), event.BoolValue(i%3 == 0)}}
		if i%10 == 0 {
			evs[i].Fields[i%4] = event.Value{}
		}
	}
	data, err := fs.encode(src.Name, evs)
	if err != nil {
		t.Fatal(err)
	}
	checkEncoded(t, src, fs, defaultLimits, evs, data)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	// The id column: plain in the first row group, a dictionary in the second.
	col := slices.IndexFunc(fs.cols, func(c colSpec) bool { return c.name == "id" })
	for g, dict := range []bool{false, true} {
		if md := f.Metadata().RowGroups[g].Columns[col].MetaData; (md.DictionaryPageOffset != 0) != dict {
			t.Errorf("row group %d: dictionary %v, want %v", g, md.DictionaryPageOffset != 0, dict)
		}
	}
}

// TestEncodeEmpty writes a file of no rows: a valid file with none.
func TestEncodeEmpty(t *testing.T) {
	src := testSource()
	fs, err := newFileSchema(src)
	if err != nil {
		t.Fatal(err)
	}
	data, err := fs.encode(src.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadFile(src, "empty.parquet", data)
	if err != nil || len(evs) != 0 {
		t.Fatalf("ReadFile: %v, %v", evs, err)
	}
	if f, rows := readRows(t, data); len(rows) != 0 || f.Schema().String() != fs.schema.String() {
		t.Fatalf("%d rows, schema %v", len(rows), f.Schema())
	}
}

// TestEncodeRefusesMistypedValue: a value of another type than its field's
// is an error, not a file.
func TestEncodeRefusesMistypedValue(t *testing.T) {
	src := testSource()
	fs, err := newFileSchema(src)
	if err != nil {
		t.Fatal(err)
	}
	e := ev(day0, "t/0", 1, 1)
	e.Fields[0] = event.StringValue("1")
	if _, err := fs.encode(src.Name, []Archived{e}); err == nil {
		t.Fatal("no error")
	}
}

// TestEncodeReadByDuckDB has DuckDB read random files, both encode's and the
// reference writer's, and checks what it reads (testdata/duckdb-check.cjs).
// It runs when KILN_NODE_PATH names a node_modules directory holding the
// npm package @duckdb/node-api.
func TestEncodeReadByDuckDB(t *testing.T) {
	modules := os.Getenv("KILN_NODE_PATH")
	if modules == "" {
		t.Skip("KILN_NODE_PATH is not set")
	}
	script, err := filepath.Abs("testdata/duckdb-check.cjs")
	if err != nil {
		t.Fatal(err)
	}
	type duckCase struct {
		File   string `json:"file"`
		Source string `json:"source"`
		Fields []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"fields"`
		Rows      [][]any `json:"rows"`
		From      int64   `json:"from"`
		CountFrom int     `json:"countFrom"`
	}
	dir := t.TempDir()
	var cases []duckCase
	rapid.Check(t, func(t *rapid.T) {
		src := drawSource(t)
		fs, err := newFileSchema(src)
		if err != nil {
			t.Fatal(err)
		}
		lim := encodeLimits{
			groupRows: rapid.IntRange(1, 60).Draw(t, "groupRows"),
			pageRows:  rapid.IntRange(1, 25).Draw(t, "pageRows"),
			pageBytes: rapid.IntRange(1, 300).Draw(t, "pageBytes"),
			dictBytes: rapid.IntRange(0, 400).Draw(t, "dictBytes"),
		}
		evs := drawEvents(t, src, rapid.IntRange(1, 150).Draw(t, "rows"))
		for i := range evs {
			// DuckDB's timestamps span less than int64 milliseconds.
			evs[i].Arrival = evs[i].Time + int64(i)
		}
		data, err := fs.encodeLimited(lim, src.Name, evs)
		if err != nil {
			t.Fatal(err)
		}
		c := duckCase{Source: src.Name, From: evs[len(evs)/2].Time}
		for _, f := range src.Fields {
			c.Fields = append(c.Fields, struct {
				Name string `json:"name"`
				Type string `json:"type"`
			}{f.Name, f.Type.String()})
		}
		for _, e := range evs {
			row := []any{fmt.Sprint(e.Time), fmt.Sprint(e.Arrival), e.Origin.Stream, fmt.Sprint(e.Origin.Offset)}
			for _, v := range e.Fields {
				switch v.Kind {
				case event.Int64:
					row = append(row, fmt.Sprint(v.Int))
				case event.Float64:
					row = append(row, v.Float)
				case event.String:
					row = append(row, v.Str)
				case event.Bool:
					row = append(row, v.Bool)
				default:
					row = append(row, nil)
				}
			}
			c.Rows = append(c.Rows, row)
			if e.Time >= c.From {
				c.CountFrom++
			}
		}
		for _, file := range []struct {
			name string
			data []byte
		}{
			{fmt.Sprintf("new-%d.parquet", len(cases)), data},
			{fmt.Sprintf("ref-%d.parquet", len(cases)), referenceEncode(t, fs, src.Name, evs, lim.groupRows)},
		} {
			if err := os.WriteFile(filepath.Join(dir, file.name), file.data, 0o644); err != nil {
				t.Fatal(err)
			}
			c.File = file.name
			cases = append(cases, c)
		}
	})
	js, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, dir)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
}
