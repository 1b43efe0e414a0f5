package archive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/kiln-dev/kiln/internal/event"
)

// The file writer below writes the archive's one fixed kind of file itself,
// with parquet-go's Thrift structs, Thrift encoder and RLE encoder, rather
// than through parquet.Writer: building a parquet.Value per cell and
// pushing it through generic column buffers cost several times what
// encoding the columns directly does, and the archive writes every event.
//
// The layout is the plainest Parquet there is, which every reader reads:
//   - a row group every groupRows rows (see encodeLimits);
//   - data pages of version 1, at most pageRows rows (and, for strings
//     written plain, about pageBytes bytes), Snappy-compressed;
//   - definition levels (optional columns) RLE/bit-packed with width 1;
//   - INT64, DOUBLE and BOOLEAN values PLAIN;
//   - BYTE_ARRAY values dictionary-encoded (a PLAIN dictionary page, then
//     RLE_DICTIONARY data pages) when the row group's distinct strings fit
//     in dictBytes, PLAIN otherwise;
//   - column chunk statistics: null count, and the minimum and maximum
//     (strings up to maxStatBytes long), so readers can skip row groups
//     by event time; no page index, no bloom filter.

// encodeLimits are the sizes a file's parts are cut at.
type encodeLimits struct {
	// groupRows is the most rows in one row group.
	groupRows int
	// pageRows is the most rows in one data page.
	pageRows int
	// pageBytes is the size past which a page of plain strings ends.
	pageBytes int
	// dictBytes bounds a column chunk's dictionary page (uncompressed); a
	// chunk with more distinct strings is written plain.
	dictBytes int
}

var defaultLimits = encodeLimits{groupRows: 256 << 10, pageRows: 32 << 10, pageBytes: 1 << 20, dictBytes: 1 << 20}

const (
	// encodeChunk is how many rows are gathered into the columns at a time,
	// so that a row's cells are read while it is in the processor's cache.
	encodeChunk = 1024
	// maxStatBytes is the longest string kept as a chunk's min or max.
	maxStatBytes = 1 << 10
)

var parquetMagic = []byte("PAR1")

// colKind says where a column's values come from.
type colKind int8

const (
	colField colKind = iota
	colTime
	colArrival
	colStream
	colOffset
)

// colSpec is one column of a file, in schema order.
type colSpec struct {
	name     string
	kind     colKind
	field    int        // the source field's index, for colField
	typ      event.Type // its values' type
	optional bool
	phys     format.Type
}

// column gathers one column's cells of the row group being written: its
// definition levels (optional columns) and its non-null values, strings as
// indexes into the row group's dictionary of the column.
type column struct {
	spec   *colSpec
	levels []byte
	ints   []int64
	floats []float64
	bools  []bool
	idx    []int32

	// dict maps each string to its index in dictStr; dictBytes is the size
	// of the dictionary page. plain says the dictionary outgrew its limit:
	// the chunk is written plain, from the rows.
	dict      map[string]int32
	dictStr   []string
	dictBytes int
	plain     bool
}

// reset readies c for a row group of n rows.
func (c *column) reset(n int) {
	c.levels, c.ints, c.floats, c.bools, c.idx = c.levels[:0], c.ints[:0], c.floats[:0], c.bools[:0], c.idx[:0]
	if c.spec.optional && cap(c.levels) < n {
		c.levels = make([]byte, 0, n)
	}
	switch c.spec.typ {
	case event.Int64:
		if cap(c.ints) < n {
			c.ints = make([]int64, 0, n)
		}
	case event.Float64:
		if cap(c.floats) < n {
			c.floats = make([]float64, 0, n)
		}
	case event.Bool:
		if cap(c.bools) < n {
			c.bools = make([]bool, 0, n)
		}
	case event.String:
		if cap(c.idx) < n {
			c.idx = make([]int32, 0, n)
		}
		if c.dict == nil {
			c.dict = map[string]int32{}
		}
		clear(c.dict)
		clear(c.dictStr)
		c.dictStr, c.dictBytes, c.plain = c.dictStr[:0], 0, false
	}
}

// gather appends the column's cells of rows.
func (c *column) gather(rows []Archived, lim *encodeLimits) error {
	s := c.spec
	switch s.kind {
	case colTime:
		for i := range rows {
			c.ints = append(c.ints, rows[i].Time)
		}
		return nil
	case colArrival:
		for i := range rows {
			c.ints = append(c.ints, rows[i].Arrival)
		}
		return nil
	case colOffset:
		for i := range rows {
			c.ints = append(c.ints, rows[i].Origin.Offset)
		}
		return nil
	case colStream:
		// Consecutive events mostly share a stream.
		last, lastIdx := "", int32(-1)
		for i := range rows {
			if c.plain {
				return nil
			}
			if str := rows[i].Origin.Stream; lastIdx >= 0 && str == last {
				c.idx = append(c.idx, lastIdx)
			} else {
				lastIdx = c.add(str, lim)
				last = str
			}
		}
		return nil
	}
	j := s.field
	for i := range rows {
		if j >= len(rows[i].Fields) {
			return fmt.Errorf("%d fields, the source has more", len(rows[i].Fields))
		}
		v := &rows[i].Fields[j]
		if v.Kind == event.Null {
			c.levels = append(c.levels, 0)
			continue
		}
		if v.Kind != s.typ {
			return fmt.Errorf("field %q is %v, declared %v", s.name, v.Kind, s.typ)
		}
		c.levels = append(c.levels, 1)
		switch s.typ {
		case event.Int64:
			c.ints = append(c.ints, v.Int)
		case event.Float64:
			c.floats = append(c.floats, v.Float)
		case event.String:
			if !c.plain {
				c.add(v.Str, lim)
			}
		case event.Bool:
			c.bools = append(c.bools, v.Bool)
		}
	}
	return nil
}

// add appends the dictionary index of str, adding it to the dictionary if
// need be; once the dictionary would outgrow lim.dictBytes, the column is
// plain.
func (c *column) add(str string, lim *encodeLimits) int32 {
	i, ok := c.dict[str]
	if !ok {
		if c.dictBytes += 4 + len(str); c.dictBytes > lim.dictBytes {
			c.plain = true
			return -1
		}
		i = int32(len(c.dictStr))
		c.dict[str] = i
		c.dictStr = append(c.dictStr, str)
	}
	c.idx = append(c.idx, i)
	return i
}

// str returns row's string in c, if not null.
func (c *column) str(row *Archived) (string, bool) {
	if c.spec.kind == colStream {
		return row.Origin.Stream, true
	}
	v := &row.Fields[c.spec.field]
	return v.Str, v.Kind != event.Null
}

// fileWriter writes one file into out. Its buffers are reused from page to
// page and column to column.
type fileWriter struct {
	lim encodeLimits
	out []byte

	// The page being built, uncompressed and compressed, and its levels.
	page, comp, lv []byte
	// The Thrift encoder of page headers and the footer, writing to hdr.
	hdr bytes.Buffer
	enc *thrift.Encoder

	// The column chunk being written.
	chunk format.ColumnMetaData
	pages int32
}

func newFileWriter(lim encodeLimits, size int) *fileWriter {
	w := &fileWriter{lim: lim, out: make([]byte, 0, size)}
	w.enc = thrift.NewEncoder(new(thrift.CompactProtocol).NewWriter(&w.hdr))
	return w
}

// encode writes evs as one Parquet file, in the order given.
func (fs *fileSchema) encode(source string, evs []Archived) ([]byte, error) {
	return fs.encodeLimited(defaultLimits, source, evs)
}

func (fs *fileSchema) encodeLimited(lim encodeLimits, source string, evs []Archived) ([]byte, error) {
	// About 20 bytes an event compressed; the buffer grows past it if need be.
	w := newFileWriter(lim, 4096+24*len(evs))
	w.out = append(w.out, parquetMagic...)
	cols := make([]column, len(fs.cols))
	for i := range cols {
		cols[i].spec = &fs.cols[i]
	}
	meta := format.FileMetaData{
		Version:   2,
		Schema:    fs.elements,
		NumRows:   int64(len(evs)),
		CreatedBy: createdBy,
		KeyValueMetadata: []format.KeyValue{
			{Key: metaFormat, Value: formatV1},
			{Key: metaSource, Value: source},
		},
	}
	for range cols {
		meta.ColumnOrders = append(meta.ColumnOrders, format.ColumnOrder{Value: &format.TypeDefinedOrder{}})
	}
	for len(evs) > 0 {
		group := evs[:min(len(evs), w.lim.groupRows)]
		evs = evs[len(group):]
		for i := range cols {
			cols[i].reset(len(group))
		}
		for rest := group; len(rest) > 0; {
			part := rest[:min(len(rest), encodeChunk)]
			rest = rest[len(part):]
			for i := range cols {
				if err := cols[i].gather(part, &w.lim); err != nil {
					return nil, fmt.Errorf("archive: encode: %w", err)
				}
			}
		}
		rg := format.RowGroup{NumRows: int64(len(group)), FileOffset: int64(len(w.out)), Ordinal: int16(len(meta.RowGroups))}
		for i := range cols {
			cc, err := w.writeChunk(&cols[i], group)
			if err != nil {
				return nil, fmt.Errorf("archive: encode: column %s: %w", cols[i].spec.name, err)
			}
			rg.Columns = append(rg.Columns, cc)
			rg.TotalByteSize += cc.MetaData.TotalUncompressedSize
			rg.TotalCompressedSize += cc.MetaData.TotalCompressedSize
		}
		meta.RowGroups = append(meta.RowGroups, rg)
	}
	if meta.RowGroups == nil {
		meta.RowGroups = []format.RowGroup{}
	}
	w.hdr.Reset()
	if err := w.enc.Encode(&meta); err != nil {
		return nil, fmt.Errorf("archive: encode: footer: %w", err)
	}
	w.out = append(w.out, w.hdr.Bytes()...)
	w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.hdr.Len()))
	w.out = append(w.out, parquetMagic...)
	return w.out, nil
}

// writeChunk writes column c's chunk of the row group of rows.
func (w *fileWriter) writeChunk(c *column, rows []Archived) (format.ColumnChunk, error) {
	s, n := c.spec, len(rows)
	w.chunk = format.ColumnMetaData{
		Type:         s.phys,
		PathInSchema: []string{s.name},
		Codec:        format.Snappy,
		NumValues:    int64(n),
	}
	w.pages = 0
	start := int64(len(w.out))
	m := &w.chunk
	if s.optional {
		m.Statistics.NullCount = int64(n - count1(c.levels))
	}
	var err error
	switch s.phys {
	case format.Int64:
		err = w.writeInt64s(c, n)
	case format.Double:
		err = w.writeDoubles(c, n)
	case format.Boolean:
		err = w.writeBools(c, n)
	case format.ByteArray:
		err = w.writeStrings(c, rows)
	default:
		err = fmt.Errorf("no writer for %v", s.phys)
	}
	if err != nil {
		return format.ColumnChunk{}, err
	}
	if m.DictionaryPageOffset == 0 {
		m.DataPageOffset = start
	}
	dataEnc := format.Plain
	if m.DictionaryPageOffset != 0 {
		dataEnc = format.RLEDictionary
	}
	m.Encoding = []format.Encoding{format.Plain}
	if s.optional {
		m.Encoding = append(m.Encoding, format.RLE)
	}
	if dataEnc != format.Plain {
		m.Encoding = append(m.Encoding, dataEnc)
	}
	m.EncodingStats = append(m.EncodingStats, format.PageEncodingStats{PageType: format.DataPage, Encoding: dataEnc, Count: w.pages})
	return format.ColumnChunk{FileOffset: start, MetaData: w.chunk}, nil
}

// pages calls page for each page of a column of n rows: rows [r0, r1)
// whose values are [v0, v1) of the column's non-null values.
func (c *column) pages(n, pageRows int, page func(r0, r1, v0, v1 int) error) error {
	v0 := 0
	for r0 := 0; r0 < n; {
		r1 := min(n, r0+pageRows)
		v1 := v0 + r1 - r0
		if c.spec.optional {
			v1 = v0 + count1(c.levels[r0:r1])
		}
		if err := page(r0, r1, v0, v1); err != nil {
			return err
		}
		r0, v0 = r1, v1
	}
	return nil
}

func count1(levels []byte) int {
	n := 0
	for _, l := range levels {
		n += int(l)
	}
	return n
}

// beginPage starts a data page of rows [r0, r1) of c: the definition levels
// of an optional column, with their length before them.
func (w *fileWriter) beginPage(c *column, r0, r1 int) error {
	w.page = w.page[:0]
	if !c.spec.optional {
		return nil
	}
	var err error
	w.lv, err = (&rle.Encoding{BitWidth: 1}).EncodeLevels(w.lv, c.levels[r0:r1])
	if err != nil {
		return err
	}
	w.page = binary.LittleEndian.AppendUint32(w.page, uint32(len(w.lv)))
	w.page = append(w.page, w.lv...)
	return nil
}

// grow extends w.page by n bytes and returns them.
func (w *fileWriter) grow(n int) []byte {
	w.page = slices.Grow(w.page, n)
	w.page = w.page[:len(w.page)+n]
	return w.page[len(w.page)-n:]
}

// endPage compresses w.page and writes it as a data page of rows [r0, r1)
// of c with values in encoding enc.
func (w *fileWriter) endPage(c *column, r0, r1 int, enc format.Encoding) error {
	nulls := 0
	if c.spec.optional {
		nulls = (r1 - r0) - count1(c.levels[r0:r1])
	}
	h := format.PageHeader{Type: format.DataPage}
	h.DataPageHeader.Set(format.DataPageHeader{
		NumValues:               int32(r1 - r0),
		Encoding:                enc,
		DefinitionLevelEncoding: format.RLE,
		RepetitionLevelEncoding: format.RLE,
		Statistics:              format.Statistics{NullCount: int64(nulls)},
	})
	w.pages++
	return w.writePage(&h)
}

// writePage compresses w.page and writes it with header h (whose sizes it
// sets), adding its sizes to the chunk's.
func (w *fileWriter) writePage(h *format.PageHeader) error {
	if len(w.page) > math.MaxInt32 {
		return fmt.Errorf("page of %d bytes", len(w.page))
	}
	w.comp = s2.EncodeSnappy(w.comp[:cap(w.comp)], w.page)
	h.UncompressedPageSize = int32(len(w.page))
	h.CompressedPageSize = int32(len(w.comp))
	w.hdr.Reset()
	if err := w.enc.Encode(h); err != nil {
		return err
	}
	w.out = append(w.out, w.hdr.Bytes()...)
	w.out = append(w.out, w.comp...)
	w.chunk.TotalUncompressedSize += int64(w.hdr.Len() + len(w.page))
	w.chunk.TotalCompressedSize += int64(w.hdr.Len() + len(w.comp))
	return nil
}

func (w *fileWriter) writeInt64s(c *column, n int) error {
	if len(c.ints) > 0 {
		lo, hi := c.ints[0], c.ints[0]
		for _, v := range c.ints {
			lo, hi = min(lo, v), max(hi, v)
		}
		w.chunk.Statistics.MinValue = binary.LittleEndian.AppendUint64(nil, uint64(lo))
		w.chunk.Statistics.MaxValue = binary.LittleEndian.AppendUint64(nil, uint64(hi))
	}
	return c.pages(n, w.lim.pageRows, func(r0, r1, v0, v1 int) error {
		if err := w.beginPage(c, r0, r1); err != nil {
			return err
		}
		b := w.grow(8 * (v1 - v0))
		for i, v := range c.ints[v0:v1] {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
		}
		return w.endPage(c, r0, r1, format.Plain)
	})
}

func (w *fileWriter) writeDoubles(c *column, n int) error {
	// The bounds leave NaN out (the archive holds none), and are -0 and +0
	// when zero, as the format asks.
	lo, hi, seen := math.Inf(1), math.Inf(-1), false
	for _, v := range c.floats {
		if v == v {
			lo, hi, seen = min(lo, v), max(hi, v), true
		}
	}
	if seen {
		if lo == 0 {
			lo = math.Copysign(0, -1)
		}
		if hi == 0 {
			hi = 0
		}
		w.chunk.Statistics.MinValue = binary.LittleEndian.AppendUint64(nil, math.Float64bits(lo))
		w.chunk.Statistics.MaxValue = binary.LittleEndian.AppendUint64(nil, math.Float64bits(hi))
	}
	return c.pages(n, w.lim.pageRows, func(r0, r1, v0, v1 int) error {
		if err := w.beginPage(c, r0, r1); err != nil {
			return err
		}
		b := w.grow(8 * (v1 - v0))
		for i, v := range c.floats[v0:v1] {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
		}
		return w.endPage(c, r0, r1, format.Plain)
	})
}

func (w *fileWriter) writeBools(c *column, n int) error {
	if len(c.bools) > 0 {
		lo, hi := true, false
		for _, v := range c.bools {
			lo, hi = lo && v, hi || v
		}
		w.chunk.Statistics.MinValue = []byte{b2i(lo)}
		w.chunk.Statistics.MaxValue = []byte{b2i(hi)}
	}
	return c.pages(n, w.lim.pageRows, func(r0, r1, v0, v1 int) error {
		if err := w.beginPage(c, r0, r1); err != nil {
			return err
		}
		// PLAIN booleans: one bit each, the first in the lowest bit.
		var b byte
		for i, v := range c.bools[v0:v1] {
			b |= b2i(v) << (i & 7)
			if i&7 == 7 {
				w.page, b = append(w.page, b), 0
			}
		}
		if (v1-v0)&7 != 0 {
			w.page = append(w.page, b)
		}
		return w.endPage(c, r0, r1, format.Plain)
	})
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (w *fileWriter) writeStrings(c *column, rows []Archived) error {
	n := len(rows)
	if !c.plain {
		if err := w.writeDict(c); err != nil {
			return err
		}
		return c.pages(n, w.lim.pageRows, func(r0, r1, v0, v1 int) error {
			if err := w.beginPage(c, r0, r1); err != nil {
				return err
			}
			var err error
			w.lv, err = (&rle.DictionaryEncoding{}).EncodeInt32(w.lv, c.idx[v0:v1])
			if err != nil {
				return err
			}
			w.page = append(w.page, w.lv...)
			return w.endPage(c, r0, r1, format.RLEDictionary)
		})
	}
	// Plain, from the rows: a page ends at pageRows rows or once past
	// pageBytes.
	var lo, hi string
	seen := false
	for r0 := 0; r0 < n; {
		r1, size := r0, 0
		for r1 < n && r1-r0 < w.lim.pageRows && size < w.lim.pageBytes {
			if s, ok := c.str(&rows[r1]); ok {
				size += 4 + len(s)
			}
			r1++
		}
		if err := w.beginPage(c, r0, r1); err != nil {
			return err
		}
		for i := r0; i < r1; i++ {
			s, ok := c.str(&rows[i])
			if !ok {
				continue
			}
			if !seen {
				lo, hi, seen = s, s, true
			}
			lo, hi = min(lo, s), max(hi, s)
			w.page = binary.LittleEndian.AppendUint32(w.page, uint32(len(s)))
			w.page = append(w.page, s...)
		}
		if err := w.endPage(c, r0, r1, format.Plain); err != nil {
			return err
		}
		r0 = r1
	}
	if seen {
		w.stringStats(lo, hi)
	}
	return nil
}

// writeDict writes the dictionary page of c, and the chunk's string bounds
// (which are those of its dictionary).
func (w *fileWriter) writeDict(c *column) error {
	if len(c.dictStr) > 0 {
		lo, hi := c.dictStr[0], c.dictStr[0]
		for _, s := range c.dictStr {
			lo, hi = min(lo, s), max(hi, s)
		}
		w.stringStats(lo, hi)
	}
	w.page = w.page[:0]
	for _, s := range c.dictStr {
		w.page = binary.LittleEndian.AppendUint32(w.page, uint32(len(s)))
		w.page = append(w.page, s...)
	}
	h := format.PageHeader{Type: format.DictionaryPage}
	h.DictionaryPageHeader.Set(format.DictionaryPageHeader{NumValues: int32(len(c.dictStr)), Encoding: format.Plain})
	w.chunk.DictionaryPageOffset = int64(len(w.out))
	if err := w.writePage(&h); err != nil {
		return err
	}
	w.chunk.DataPageOffset = int64(len(w.out))
	w.chunk.EncodingStats = append(w.chunk.EncodingStats, format.PageEncodingStats{PageType: format.DictionaryPage, Encoding: format.Plain, Count: 1})
	return nil
}

// stringStats sets the chunk's bounds, unless one of them is longer than
// maxStatBytes.
func (w *fileWriter) stringStats(lo, hi string) {
	if len(lo) <= maxStatBytes && len(hi) <= maxStatBytes {
		w.chunk.Statistics.MinValue = []byte(lo)
		w.chunk.Statistics.MaxValue = []byte(hi)
	}
}
