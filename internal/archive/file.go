package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// The columns every archived row has beside the source's fields.
const (
	ColEventTime    = "event_time"
	ColArrival      = "arrival"
	ColOriginStream = "origin_stream"
	ColOriginOffset = "origin_offset"
)

// Key-value metadata written in every file's footer.
const (
	metaFormat = "kiln.archive.format"
	metaSource = "kiln.archive.source"
	formatV1   = "1"
)

// maxFileRows bounds the rows a file may declare, so a corrupt footer cannot
// make the reader allocate without bound.
const maxFileRows = 1 << 28

func reserved(name string) bool {
	switch name {
	case ColEventTime, ColArrival, ColOriginStream, ColOriginOffset:
		return true
	}
	return false
}

// fileSchema is the Parquet schema of a source's files and where each of
// the source's fields and the four fixed columns sit in a row.
type fileSchema struct {
	schema *parquet.Schema
	ncols  int
	// fieldCol[i] is the column index of src.Fields[i].
	fieldCol []int

	timeCol, arrCol, streamCol, offCol int
}

func leafNode(t event.Type) parquet.Node {
	switch t {
	case event.Int64:
		return parquet.Int(64)
	case event.Float64:
		return parquet.Leaf(parquet.DoubleType)
	case event.String:
		return parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
	case event.Bool:
		return parquet.Leaf(parquet.BooleanType)
	}
	return nil
}

// checkSource refuses sources the archive cannot write: no name, a name
// that is not a path component, a field named like a fixed column, a field
// without a declared type, or two fields of one name.
func checkSource(src *definition.Source) error {
	if src == nil || src.Name == "" || strings.ContainsAny(src.Name, "/\\") || strings.HasPrefix(src.Name, ".") {
		return fmt.Errorf("archive: bad source name %q", sourceName(src))
	}
	seen := map[string]bool{}
	for _, f := range src.Fields {
		if reserved(f.Name) {
			return fmt.Errorf("archive: source %s: field %q has the name of an archive column (%s, %s, %s, %s); rename it",
				src.Name, f.Name, ColEventTime, ColArrival, ColOriginStream, ColOriginOffset)
		}
		if leafNode(f.Type) == nil {
			return fmt.Errorf("archive: source %s: field %q has no archivable type (%v)", src.Name, f.Name, f.Type)
		}
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("archive: source %s: field name %q is empty or repeated", src.Name, f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

func sourceName(src *definition.Source) string {
	if src == nil {
		return ""
	}
	return src.Name
}

func newFileSchema(src *definition.Source) (*fileSchema, error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	g := parquet.Group{
		ColEventTime:    parquet.Timestamp(parquet.Millisecond),
		ColArrival:      parquet.Timestamp(parquet.Millisecond),
		ColOriginStream: parquet.Encoded(parquet.String(), &parquet.RLEDictionary),
		ColOriginOffset: parquet.Int(64),
	}
	for _, f := range src.Fields {
		g[f.Name] = parquet.Optional(leafNode(f.Type))
	}
	s := parquet.NewSchema(src.Name, g)
	fs := &fileSchema{schema: s, ncols: len(s.Columns())}
	col := func(name string) int {
		l, _ := s.Lookup(name)
		return l.ColumnIndex
	}
	fs.timeCol, fs.arrCol = col(ColEventTime), col(ColArrival)
	fs.streamCol, fs.offCol = col(ColOriginStream), col(ColOriginOffset)
	for _, f := range src.Fields {
		fs.fieldCol = append(fs.fieldCol, col(f.Name))
	}
	return fs, nil
}

// encode writes evs as one Parquet file, in the order given: straight
// into the writer's columns, encodeChunk rows at a time (so the values
// handed over stay in the processor's cache), a row group every encodeRows
// rows.
func (fs *fileSchema) encode(source string, evs []Archived) ([]byte, error) {
	var out bytes.Buffer
	w := parquet.NewWriter(&out, fs.schema,
		parquet.Compression(&parquet.Snappy),
		parquet.CreatedBy("kiln", "archive", formatV1),
		parquet.KeyValueMetadata(metaFormat, formatV1),
		parquet.KeyValueMetadata(metaSource, source),
	)
	cols := w.ColumnWriters()
	var vals [encodeChunk]parquet.Value
	write := func(col int, n int) error {
		if _, err := cols[col].WriteRowValues(vals[:n]); err != nil {
			return fmt.Errorf("archive: encode: %w", err)
		}
		return nil
	}
	// The fields' values, one array per field, filled in one pass over
	// the events.
	fvals := make([][encodeChunk]parquet.Value, len(fs.fieldCol))
	for len(evs) > 0 {
		group := evs[:min(len(evs), encodeRows)]
		evs = evs[len(group):]
		for len(group) > 0 {
			part := group[:min(len(group), encodeChunk)]
			group = group[len(part):]
			n := len(part)
			for i := range part {
				vals[i] = parquet.Int64Value(part[i].Time).Level(0, 0, fs.timeCol)
			}
			if err := write(fs.timeCol, n); err != nil {
				return nil, err
			}
			for i := range part {
				vals[i] = parquet.Int64Value(part[i].Arrival).Level(0, 0, fs.arrCol)
			}
			if err := write(fs.arrCol, n); err != nil {
				return nil, err
			}
			for i := range part {
				vals[i] = parquet.Int64Value(part[i].Origin.Offset).Level(0, 0, fs.offCol)
			}
			if err := write(fs.offCol, n); err != nil {
				return nil, err
			}
			for i := range part {
				vals[i] = parquet.ByteArrayValue(stringBytes(part[i].Origin.Stream)).Level(0, 0, fs.streamCol)
			}
			if err := write(fs.streamCol, n); err != nil {
				return nil, err
			}
			for i := range part {
				for j := range part[i].Fields {
					fvals[j][i] = fieldValue(&part[i].Fields[j], fs.fieldCol[j])
				}
			}
			for j, c := range fs.fieldCol {
				if _, err := cols[c].WriteRowValues(fvals[j][:n]); err != nil {
					return nil, fmt.Errorf("archive: encode: %w", err)
				}
			}
		}
		if err := w.Flush(); err != nil {
			return nil, fmt.Errorf("archive: encode: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("archive: encode: %w", err)
	}
	return out.Bytes(), nil
}

// encodeRows is the most rows encode puts in one row group; encodeChunk
// how many it hands a column at a time.
const (
	encodeRows  = 256 << 10
	encodeChunk = 1024
)

// stringBytes returns the bytes of s without copying them: the writer
// copies a value's bytes into its own buffers and never changes them.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func defLevel(v event.Value) int {
	if v.Kind == event.Null {
		return 0
	}
	return 1
}

// fieldValue is the Parquet value of an optional field's value v in
// column col.
func fieldValue(v *event.Value, col int) parquet.Value {
	switch v.Kind {
	case event.Int64:
		return parquet.Int64Value(v.Int).Level(0, 1, col)
	case event.Float64:
		return parquet.DoubleValue(v.Float).Level(0, 1, col)
	case event.String:
		return parquet.ByteArrayValue(stringBytes(v.Str)).Level(0, 1, col)
	case event.Bool:
		return parquet.BooleanValue(v.Bool).Level(0, 1, col)
	}
	return parquet.NullValue().Level(0, 0, col)
}

func parquetValue(v event.Value) parquet.Value {
	switch v.Kind {
	case event.Int64:
		return parquet.Int64Value(v.Int)
	case event.Float64:
		return parquet.DoubleValue(v.Float)
	case event.String:
		return parquet.ByteArrayValue(stringBytes(v.Str))
	case event.Bool:
		return parquet.BooleanValue(v.Bool)
	}
	return parquet.NullValue()
}

// ReadFile decodes one archive file of source src. name is only used in
// errors.
//
// Columns are mapped by name. A field of src that the file lacks reads as
// null in every row (the field was added to the source after the file was
// written); a column of the file that src does not declare is ignored (the
// field was removed). A column whose type differs from the field's type, or
// a missing or mistyped fixed column (event_time, arrival, origin_stream,
// origin_offset), is an error naming the file and the column: the archive
// never guesses a conversion.
//
// Arbitrary bytes give an error, never a panic.
func ReadFile(src *definition.Source, name string, data []byte) (evs []Archived, err error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	defer func() {
		// The Parquet library may panic on some corrupt inputs; a file is
		// data, so turn that into an error.
		if r := recover(); r != nil {
			evs, err = nil, fmt.Errorf("archive: %s: corrupt file: %v", name, r)
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)),
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("archive: %s: not a Parquet file: %w", name, err)
	}
	if n := f.NumRows(); n < 0 || n > maxFileRows {
		return nil, fmt.Errorf("archive: %s: file declares %d rows", name, n)
	}
	if err := checkChunks(f); err != nil {
		return nil, fmt.Errorf("archive: %s: %w", name, err)
	}
	s := f.Schema()
	// slot[c] says what column c of the file holds: -1 ignored, 0..len-1 a
	// field of src, or one of the fixed columns below.
	const (
		slotTime = -2 - iota
		slotArr
		slotStream
		slotOff
		slotIgnore = -1
	)
	slot := make([]int, len(s.Columns()))
	for i := range slot {
		slot[i] = slotIgnore
	}
	lookup := func(col string, want parquet.Kind, optional bool) (int, bool, error) {
		l, ok := s.Lookup(col)
		if !ok {
			return 0, false, nil
		}
		if !l.Node.Leaf() || l.MaxRepetitionLevel != 0 || len(l.Path) != 1 || l.ColumnIndex < 0 || l.ColumnIndex >= len(slot) {
			return 0, false, fmt.Errorf("archive: %s: column %q is not a flat column", name, col)
		}
		if k := l.Node.Type().Kind(); k != want {
			return 0, false, fmt.Errorf("archive: %s: column %q is %v in the file, want %v", name, col, k, want)
		}
		if !optional && l.MaxDefinitionLevel != 0 {
			return 0, false, fmt.Errorf("archive: %s: column %q is optional in the file, want required", name, col)
		}
		return l.ColumnIndex, true, nil
	}
	for _, fx := range []struct {
		col  string
		kind parquet.Kind
		slot int
	}{
		{ColEventTime, parquet.Int64, slotTime},
		{ColArrival, parquet.Int64, slotArr},
		{ColOriginStream, parquet.ByteArray, slotStream},
		{ColOriginOffset, parquet.Int64, slotOff},
	} {
		c, ok, err := lookup(fx.col, fx.kind, false)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("archive: %s: no column %q: not an archive file", name, fx.col)
		}
		slot[c] = fx.slot
	}
	for i, fd := range src.Fields {
		c, ok, err := lookup(fd.Name, kindOf(fd.Type), true)
		if err != nil {
			return nil, fmt.Errorf("%w (source %s declares field %q as %v)", err, src.Name, fd.Name, fd.Type)
		}
		if ok {
			slot[c] = i
		}
	}

	evs = make([]Archived, 0, f.NumRows())
	nf := len(src.Fields)
	buf := make([]parquet.Row, 256)
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		for {
			n, err := rows.ReadRows(buf)
			for _, row := range buf[:n] {
				if len(evs) >= maxFileRows {
					rows.Close()
					return nil, fmt.Errorf("archive: %s: more rows than declared", name)
				}
				ev := Archived{Fields: make([]event.Value, nf)}
				var seen [4]bool
				for _, v := range row {
					c := v.Column()
					if c < 0 || c >= len(slot) || v.RepetitionLevel() != 0 {
						rows.Close()
						return nil, fmt.Errorf("archive: %s: malformed row", name)
					}
					switch s := slot[c]; s {
					case slotIgnore:
					case slotTime:
						ev.Time, seen[0] = v.Int64(), !v.IsNull()
					case slotArr:
						ev.Arrival, seen[1] = v.Int64(), !v.IsNull()
					case slotStream:
						ev.Origin.Stream, seen[2] = string(v.ByteArray()), !v.IsNull()
					case slotOff:
						ev.Origin.Offset, seen[3] = v.Int64(), !v.IsNull()
					default:
						if !v.IsNull() {
							fv, err := eventValue(src.Fields[s].Type, v)
							if err != nil {
								rows.Close()
								return nil, fmt.Errorf("archive: %s: column %q: %w", name, src.Fields[s].Name, err)
							}
							ev.Fields[s] = fv
						}
					}
				}
				if !seen[0] || !seen[1] || !seen[2] || !seen[3] {
					rows.Close()
					return nil, fmt.Errorf("archive: %s: row %d lacks a fixed column", name, len(evs))
				}
				if err := checkTime(ev.Time); err != nil {
					rows.Close()
					return nil, fmt.Errorf("archive: %s: row %d: %w", name, len(evs), err)
				}
				evs = append(evs, ev)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("archive: %s: %w", name, err)
			}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("archive: %s: %w", name, err)
		}
	}
	return evs, nil
}

// maxChunkBytes bounds a column chunk's declared uncompressed size.
const maxChunkBytes = 1 << 30

// checkChunks refuses what the archive never writes and the Parquet library
// would trust: compression codecs other than none, Snappy and Zstd (its LZ4
// decoder grows its buffer without bound on corrupt input), and column
// chunks declaring absurd sizes or value counts.
func checkChunks(f *parquet.File) error {
	for _, rg := range f.Metadata().RowGroups {
		for _, c := range rg.Columns {
			m := &c.MetaData
			switch m.Codec {
			case format.Uncompressed, format.Snappy, format.Zstd:
			default:
				return fmt.Errorf("column %q: compression %v is not one the archive writes (zstd, snappy or none)",
					strings.Join(m.PathInSchema, "."), m.Codec)
			}
			if m.TotalUncompressedSize < 0 || m.TotalUncompressedSize > maxChunkBytes ||
				m.TotalCompressedSize < 0 || m.NumValues < 0 || m.NumValues > maxFileRows {
				return fmt.Errorf("column %q: implausible chunk sizes", strings.Join(m.PathInSchema, "."))
			}
		}
	}
	return nil
}

func kindOf(t event.Type) parquet.Kind {
	switch t {
	case event.Int64:
		return parquet.Int64
	case event.Float64:
		return parquet.Double
	case event.String:
		return parquet.ByteArray
	case event.Bool:
		return parquet.Boolean
	}
	return -1
}

func eventValue(t event.Type, v parquet.Value) (event.Value, error) {
	switch t {
	case event.Int64:
		return event.IntValue(v.Int64()), nil
	case event.Float64:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return event.Value{}, fmt.Errorf("%v is not a finite number", f)
		}
		return event.FloatValue(f), nil
	case event.String:
		return event.StringValue(string(v.ByteArray())), nil
	case event.Bool:
		return event.BoolValue(v.Boolean()), nil
	}
	return event.Value{}, fmt.Errorf("no type")
}
