package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
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
	// cols are the columns in schema order, and elements the schema as
	// the footer states it.
	cols     []colSpec
	elements []format.SchemaElement
}

// createdBy is the footer's created_by.
const createdBy = "kiln version archive(build " + formatV1 + ")"

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
	fs := &fileSchema{schema: s}
	fs.elements = append(fs.elements, format.SchemaElement{Name: s.Name(), NumChildren: thrift.New(int32(len(s.Fields())))})
	for _, n := range s.Fields() {
		cs := colSpec{name: n.Name(), optional: n.Optional()}
		switch cs.name {
		case ColEventTime:
			cs.kind, cs.typ = colTime, event.Int64
		case ColArrival:
			cs.kind, cs.typ = colArrival, event.Int64
		case ColOriginStream:
			cs.kind, cs.typ = colStream, event.String
		case ColOriginOffset:
			cs.kind, cs.typ = colOffset, event.Int64
		default:
			cs.field = src.FieldIndex(cs.name)
			cs.typ = src.Fields[cs.field].Type
		}
		fs.cols = append(fs.cols, cs)
		fs.elements = append(fs.elements, schemaElement(n))
	}
	for i := range fs.cols {
		fs.cols[i].phys = fs.elements[i+1].Type.V
	}
	return fs, nil
}

// schemaElement is leaf n's element of the footer's schema, as
// parquet.Writer states it.
func schemaElement(n parquet.Field) format.SchemaElement {
	t := n.Type()
	e := format.SchemaElement{Name: n.Name(), FieldID: int32(n.ID())}
	if n.Optional() {
		e.RepetitionType.Set(format.Optional)
	} else {
		e.RepetitionType.Set(format.Required)
	}
	if lt := t.LogicalType(); lt != nil {
		e.LogicalType = *lt
	}
	if l := int32(t.Length()); l > 0 {
		e.TypeLength.Set(l)
	}
	if pt := t.PhysicalType(); pt != nil {
		e.Type.Set(*pt)
	}
	if ct := t.ConvertedType(); ct != nil {
		e.ConvertedType.Set(*ct)
	}
	return e
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
