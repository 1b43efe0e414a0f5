package eventfile

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
)

// parquetBatch is how many rows of a row group are read, column by column,
// before they are handed out row by row.
const parquetBatch = 1024

// conversion says how a Parquet column's values become a field's.
type conversion uint8

const (
	fromInt32     conversion = iota + 1 // INT32 (signed) to int64 or float64
	fromUint32                          // INT32 holding an unsigned integer
	fromInt64                           // INT64 (signed)
	fromUint64                          // INT64 holding an unsigned integer
	fromFloat                           // FLOAT to float64
	fromDouble                          // DOUBLE to float64
	fromBytes                           // BYTE_ARRAY to string
	fromBoolean                         // BOOLEAN to bool
	fromEpochMs                         // INT64 epoch milliseconds to the event time
	fromTimestamp                       // INT64 TIMESTAMP to the event time
	fromTimeText                        // BYTE_ARRAY text to the event time
)

// parquetColumn is one column of a file that Read reads: where it is and
// what it becomes.
type parquetColumn struct {
	name  string
	index int // the leaf column index in the file
	slot  int // the field index, or timeColumn
	conv  conversion
	// perMs is the TIMESTAMP's units per millisecond (1, 1000, 1e6).
	perMs int64
	// typ is the field's type (event.Null for the event time).
	typ event.Type

	// Reading state: the pages of the current row group, the page being
	// read, and the pages finished with during the current batch (released
	// once the batch is converted: its values may point into them).
	pages    parquet.Pages
	page     parquet.Page
	values   parquet.ValueReader
	finished []parquet.Page
	buf      []parquet.Value
}

// readParquet reads a Parquet file of size bytes from in.
func (r *rows) readParquet(in io.ReaderAt, size int64) error {
	var f *parquet.File
	err := guard(func() (err error) {
		f, err = parquet.OpenFile(in, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
		return err
	})
	if err != nil {
		return r.fileError(0, "", fmt.Sprintf("not a Parquet file, or a damaged one (%v); is it complete?", err))
	}
	var cols []*parquetColumn
	var schemaErr error
	if err := guard(func() error { cols, schemaErr = r.parquetColumns(f); return nil }); err != nil {
		return r.fileError(0, "", fmt.Sprintf("damaged schema (%v)", err))
	}
	if schemaErr != nil {
		return schemaErr
	}
	if err := r.checkCodecs(f); err != nil {
		return err
	}
	if err := guard(func() error { return checkPages(in, size, f) }); err != nil {
		return r.fileError(0, "", fmt.Sprintf("damaged: %v", err))
	}
	total := f.NumRows()
	nf := len(r.src.Fields)
	b := &parquetBatchBuf{
		fields: make([]event.Value, parquetBatch*nf),
		ts:     make([]int64, parquetBatch),
	}
	for _, c := range cols {
		c.buf = make([]parquet.Value, parquetBatch)
	}
	row := 0 // rows before the batch
	for g, rg := range f.RowGroups() {
		n := rg.NumRows()
		if n < 0 {
			return r.fileError(0, "", fmt.Sprintf("row group %d declares %d rows: the file is damaged", g, n))
		}
		err := guard(func() error {
			chunks := rg.ColumnChunks()
			for _, c := range cols {
				if c.index >= len(chunks) {
					return fmt.Errorf("row group %d has no column %d", g, c.index)
				}
				c.pages = chunks[c.index].Pages()
			}
			return nil
		})
		if err != nil {
			return r.corrupt(row, err)
		}
		for off := int64(0); off < n; {
			m := int(min(parquetBatch, n-off))
			if err := guard(func() error { return b.fill(cols, m) }); err != nil {
				closePages(cols)
				return r.corrupt(row, err)
			}
			if err := r.convert(cols, b, row, m); err != nil {
				closePages(cols)
				return r.corrupt(row, err)
			}
			releaseFinished(cols)
			for i := range m {
				if err := r.emitParquet(b, row+i+1, i); err != nil {
					closePages(cols)
					return err
				}
			}
			row += m
			off += int64(m)
			r.progress(int64(row), total)
			if err := r.ctx.Err(); err != nil {
				closePages(cols)
				return err
			}
		}
		closePages(cols)
	}
	if int64(row) != total {
		return r.fileError(0, "", fmt.Sprintf("the file declares %d rows, its row groups hold %d: the file is damaged", total, row))
	}
	r.finish(total)
	return nil
}

// guard runs do, which calls into the Parquet library, and turns a panic of
// the library on a damaged file into an error: a file is data.
func guard(do func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return do()
}

func (r *rows) corrupt(row int, err error) error {
	return r.fileError(0, "", fmt.Sprintf("damaged after row %d: %v", row, err))
}

// parquetBatchBuf holds a batch of rows as read and converted: the fields
// of row i at fields[i*nf:], its event time at ts[i], and the problems of
// the batch's rows, in row order once sorted.
type parquetBatchBuf struct {
	fields   []event.Value
	ts       []int64
	problems []Problem
	next     int // the first problem not yet handed out
}

// fill reads the next m values of every column.
func (b *parquetBatchBuf) fill(cols []*parquetColumn, m int) error {
	for _, c := range cols {
		if err := c.read(c.buf[:m]); err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	return nil
}

// read fills dst with the column's next values, one per row.
func (c *parquetColumn) read(dst []parquet.Value) error {
	for len(dst) > 0 {
		if c.values == nil {
			p, err := c.pages.ReadPage()
			if err == io.EOF {
				return errors.New("fewer values than rows")
			}
			if err != nil {
				return err
			}
			if c.page != nil {
				c.finished = append(c.finished, c.page)
			}
			c.page, c.values = p, p.Values()
		}
		n, err := c.values.ReadValues(dst)
		for _, v := range dst[:n] {
			if v.RepetitionLevel() != 0 {
				return errors.New("a repeated value in a flat column")
			}
		}
		dst = dst[n:]
		if err == io.EOF {
			c.values = nil
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("a page gives no values")
		}
	}
	return nil
}

func releaseFinished(cols []*parquetColumn) {
	for _, c := range cols {
		for _, p := range c.finished {
			parquet.Release(p)
		}
		clear(c.finished)
		c.finished = c.finished[:0]
	}
}

func closePages(cols []*parquetColumn) {
	releaseFinished(cols)
	for _, c := range cols {
		if c.page != nil {
			parquet.Release(c.page)
			c.page = nil
		}
		c.values = nil
		if c.pages != nil {
			c.pages.Close()
			c.pages = nil
		}
	}
}

// convert turns the batch's values (m rows, the first of them row+1) into
// fields and event times, noting the problems of each row.
func (r *rows) convert(cols []*parquetColumn, b *parquetBatchBuf, row, m int) error {
	nf := len(r.src.Fields)
	clear(b.problems)
	b.problems, b.next = b.problems[:0], 0
	bad := func(i int, c *parquetColumn, msg string) {
		b.problems = append(b.problems, Problem{File: r.name, Row: row + i + 1, Column: c.name, Message: msg})
	}
	// The event times accepted without a closer look; the others get one,
	// and the push API's message, from eventjson.EventTime.
	lo := max(r.src.MinEventTime, 0)
	hi := min(r.opts.Now+r.src.MaxFutureSkew.Milliseconds(), eventjson.MaxEventTime)
	var text []byte
	for _, c := range cols {
		vals := c.buf[:m]
		if c.slot == timeColumn {
			for i, v := range vals {
				if v.IsNull() {
					bad(i, c, eventjson.MissingEventTime)
					continue
				}
				var ts int64
				switch c.conv {
				case fromEpochMs:
					if ts = v.Int64(); ts < lo || ts > hi {
						text = strconv.AppendInt(text[:0], ts, 10)
					}
				case fromTimestamp:
					if ts = floorDiv(v.Int64(), c.perMs); ts < lo || ts > hi {
						text = time.UnixMilli(ts).UTC().AppendFormat(text[:0], time.RFC3339Nano)
					}
				case fromTimeText:
					text = append(text[:0], v.ByteArray()...)
					ts = math.MinInt64
				}
				if ts < lo || ts > hi {
					var msg string
					if ts, msg = eventjson.EventTime(r.src, text, r.opts.Now); msg != "" {
						bad(i, c, msg)
					}
				}
				b.ts[i] = ts
			}
			continue
		}
		key := r.keys[c.slot]
		for i, v := range vals {
			f := &b.fields[i*nf+c.slot]
			if v.IsNull() {
				*f = event.Value{}
				if key {
					bad(i, c, eventjson.NullKey)
				}
				continue
			}
			var msg string
			switch c.conv {
			case fromInt32:
				*f = number(c.typ, int64(v.Int32()))
			case fromUint32:
				*f = number(c.typ, int64(uint32(v.Int32())))
			case fromInt64:
				*f = number(c.typ, v.Int64())
			case fromUint64:
				u := v.Uint64()
				switch {
				case c.typ == event.Float64:
					*f = event.FloatValue(float64(u))
				case u > math.MaxInt64:
					msg = strconv.FormatUint(u, 10) + " is out of the int64 range"
				default:
					*f = event.IntValue(int64(u))
				}
			case fromFloat, fromDouble:
				x := v.Double()
				if c.conv == fromFloat {
					x = float64(v.Float())
				}
				msg = event.FloatProblem(x)
				*f = event.FloatValue(x)
			case fromBytes:
				*f, msg = r.dec.ParseText(event.String, v.ByteArray())
			case fromBoolean:
				*f = event.BoolValue(v.Boolean())
			default:
				return fmt.Errorf("column %s: no conversion", c.name) // cannot be
			}
			if msg != "" {
				bad(i, c, msg)
			}
		}
	}
	// Problems were noted column by column: put them in row order, each
	// row's in column order.
	slices.SortStableFunc(b.problems, func(p, q Problem) int { return p.Row - q.Row })
	return nil
}

// number is an integer as a value of type t (int64 or float64).
func number(t event.Type, n int64) event.Value {
	if t == event.Float64 {
		return event.FloatValue(float64(n))
	}
	return event.IntValue(n)
}

// floorDiv is a / b rounded down, for b > 0: a time before 1970 stays
// before it.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// emitParquet hands row i of the batch, which is row of the file, to fn.
func (r *rows) emitParquet(b *parquetBatchBuf, row, i int) error {
	for b.next < len(b.problems) && b.problems[b.next].Row == row {
		r.problems = append(r.problems, b.problems[b.next])
		b.next++
	}
	nf := len(r.src.Fields)
	r.ev.TS = b.ts[i]
	copy(r.ev.Fields, b.fields[i*nf:(i+1)*nf])
	return r.emit(row, &r.ev)
}

// parquetColumns maps the file's columns to the source's fields, or says
// all that is wrong with its schema.
func (r *rows) parquetColumns(f *parquet.File) ([]*parquetColumn, error) {
	var errs []error
	bad := func(column, msg string) { errs = append(errs, r.fileError(0, column, msg)) }
	s := f.Schema()
	var cols []*parquetColumn
	has := map[string]bool{}
	for _, fd := range s.Fields() {
		name := fd.Name()
		slot := timeColumn
		if name != r.src.EventTime {
			if slot = r.src.FieldIndex(name); slot < 0 {
				bad(name, eventjson.UnknownField(r.src))
				continue
			}
		}
		if has[name] {
			bad(name, "given twice")
			continue
		}
		has[name] = true
		want := "the event time"
		typ := event.Null
		if slot != timeColumn {
			typ = r.src.Fields[slot].Type
			want = typ.String()
		}
		if !fd.Leaf() || fd.Repeated() {
			bad(name, fmt.Sprintf("is a nested or repeated column; source %s declares it %s: write it as a flat column", r.src.Name, want))
			continue
		}
		leaf, ok := s.Lookup(name)
		if !ok || leaf.MaxRepetitionLevel != 0 || leaf.ColumnIndex < 0 {
			bad(name, "is not a flat column")
			continue
		}
		c := &parquetColumn{name: name, index: leaf.ColumnIndex, slot: slot, typ: typ}
		if c.conv, c.perMs = conversionOf(fd.Type(), typ); c.conv == 0 {
			if slot == timeColumn {
				bad(name, fmt.Sprintf("is %s; the event time must be INT64 epoch milliseconds, a TIMESTAMP, or a string (RFC 3339 or epoch milliseconds)", typeName(fd.Type())))
			} else {
				bad(name, fmt.Sprintf("is %s; source %s declares it %s: %s", typeName(fd.Type()), r.src.Name, typ, wantParquet(typ)))
			}
			continue
		}
		cols = append(cols, c)
	}
	errs = append(errs, r.missingColumns(0, has)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cols, nil
}

// wantParquet says which Parquet types a field of type t may have.
func wantParquet(t event.Type) string {
	switch t {
	case event.Int64:
		return "write it as INT32 or INT64"
	case event.Float64:
		return "write it as FLOAT, DOUBLE, INT32 or INT64"
	case event.String:
		return "write it as a BYTE_ARRAY STRING"
	case event.Bool:
		return "write it as BOOLEAN"
	}
	return ""
}

// typeName names a Parquet type as a person who wrote the file may know
// it: the physical type, and its logical type if it has one.
func typeName(t parquet.Type) string {
	kind := t.Kind()
	name := kind.String()
	lt := t.LogicalType()
	if lt == nil || lt.Value == nil {
		return name
	}
	// INT(32, signed) and INT(64, signed) say no more than INT32 and INT64.
	if it, ok := lt.Value.(*format.IntType); ok && it.IsSigned &&
		(kind == parquet.Int32 && it.BitWidth == 32 || kind == parquet.Int64 && it.BitWidth == 64) {
		return name
	}
	return name + " (" + lt.String() + ")"
}

// conversionOf is how values of Parquet type pt become values of field
// type t (event.Null: the event time); 0 when they cannot without loss or
// guesswork. perMs is a TIMESTAMP's units per millisecond.
func conversionOf(pt parquet.Type, t event.Type) (conv conversion, perMs int64) {
	var lt format.LogicalTypeValue
	if l := pt.LogicalType(); l != nil {
		lt = l.Value
	}
	kind := pt.Kind()
	// An integer: INT32 or INT64, unannotated or INT(bits, signed).
	integer := func() conversion {
		signed := true
		switch it := lt.(type) {
		case nil:
		case *format.IntType:
			signed = it.IsSigned
		default:
			return 0
		}
		switch {
		case kind == parquet.Int32 && signed:
			return fromInt32
		case kind == parquet.Int32:
			return fromUint32
		case kind == parquet.Int64 && signed:
			return fromInt64
		case kind == parquet.Int64:
			return fromUint64
		}
		return 0
	}
	text := func() bool {
		switch lt.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
			return kind == parquet.ByteArray
		}
		return false
	}
	switch t {
	case event.Int64:
		return integer(), 0
	case event.Float64:
		switch {
		case kind == parquet.Float && lt == nil:
			return fromFloat, 0
		case kind == parquet.Double && lt == nil:
			return fromDouble, 0
		}
		return integer(), 0
	case event.String:
		if text() {
			return fromBytes, 0
		}
	case event.Bool:
		if kind == parquet.Boolean && lt == nil {
			return fromBoolean, 0
		}
	case event.Null: // the event time
		if ts, ok := lt.(*format.TimestampType); ok && kind == parquet.Int64 {
			switch ts.Unit.Value.(type) {
			case *format.MilliSeconds:
				return fromTimestamp, 1
			case *format.MicroSeconds:
				return fromTimestamp, 1000
			case *format.NanoSeconds:
				return fromTimestamp, 1_000_000
			}
			return 0, 0
		}
		if integer() == fromInt64 {
			return fromEpochMs, 0
		}
		if text() {
			return fromTimeText, 0
		}
	}
	return 0, 0
}

// checkCodecs refuses, before a row is read, compression that the Parquet
// library cannot read, and LZ4: its LZ4 decoder takes a damaged page for
// too small a buffer and doubles the buffer without end.
func (r *rows) checkCodecs(f *parquet.File) error {
	for _, rg := range f.Metadata().RowGroups {
		for _, c := range rg.Columns {
			codec := c.MetaData.Codec
			switch codec {
			case format.Uncompressed, format.Snappy, format.Gzip, format.Brotli, format.Zstd:
				continue
			}
			return r.fileError(0, "", fmt.Sprintf("compressed with %v, which this reader does not take: write it compressed with zstd, snappy, gzip or brotli, or not compressed", codec))
		}
	}
	return nil
}

// Limits on one page of a Parquet file, above what writers make: the
// Parquet library allocates what a page header declares before it reads
// the page, so checkPages holds every header to these first.
const (
	// maxPageBytes bounds a page's size, compressed and not.
	maxPageBytes = 256 << 20
	// maxPageValues bounds the values of a page.
	maxPageValues = 64 << 20
	// maxPageHeaderBytes bounds a page header (with its statistics).
	maxPageHeaderBytes = 16 << 20
)

// checkPages reads the header of every page of every column chunk of f,
// a file of size bytes read from in, and refuses the file if a chunk lies
// outside it, or a page outside its chunk or past the limits above: a
// damaged header must not make the Parquet library allocate gigabytes.
// Only the headers are read, a few hundred bytes a page.
func checkPages(in io.ReaderAt, size int64, f *parquet.File) error {
	var proto thrift.CompactProtocol
	var buf []byte
	for g, rg := range f.Metadata().RowGroups {
		for _, c := range rg.Columns {
			m := &c.MetaData
			where := fmt.Sprintf("column %s of row group %d", strings.Join(m.PathInSchema, "."), g)
			start := m.DataPageOffset
			if m.DictionaryPageOffset != 0 {
				start = m.DictionaryPageOffset
			}
			end := start + m.TotalCompressedSize
			if start < 0 || m.TotalCompressedSize < 0 || start > size || m.TotalCompressedSize > size-start {
				return fmt.Errorf("%s lies outside the file", where)
			}
			for off := start; off < end; {
				// Read a window that holds the header, larger until it does.
				var h format.PageHeader
				var read int
				for window := int64(4 << 10); ; window *= 4 {
					n := min(window, end-off)
					buf = slices.Grow(buf[:0], int(n))[:n]
					if _, err := in.ReadAt(buf, off); err != nil && err != io.EOF {
						return err
					}
					r := proto.NewReaderFromBytes(buf)
					err := thrift.NewDecoder(r).Decode(&h)
					if err == nil {
						read = r.BytesRead()
						break
					}
					if n == end-off || n >= maxPageHeaderBytes {
						return fmt.Errorf("%s: a page header at byte %d cannot be read: %v", where, off, err)
					}
					h = format.PageHeader{}
				}
				off += int64(read)
				values := int32(0)
				switch {
				case h.DataPageHeader.Valid:
					values = h.DataPageHeader.V.NumValues
				case h.DataPageHeaderV2.Valid:
					values = max(h.DataPageHeaderV2.V.NumValues, h.DataPageHeaderV2.V.NumRows)
				case h.DictionaryPageHeader.Valid:
					values = h.DictionaryPageHeader.V.NumValues
				}
				if h.CompressedPageSize < 0 || int64(h.CompressedPageSize) > end-off ||
					h.UncompressedPageSize < 0 || h.UncompressedPageSize > maxPageBytes || h.CompressedPageSize > maxPageBytes ||
					values < 0 || values > maxPageValues {
					return fmt.Errorf("%s: a page at byte %d declares %d bytes (%d compressed) and %d values, out of bounds",
						where, off, h.UncompressedPageSize, h.CompressedPageSize, values)
				}
				off += int64(h.CompressedPageSize)
			}
		}
	}
	return nil
}
