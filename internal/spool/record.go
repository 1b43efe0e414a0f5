package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// recordVersion is the first byte of every record's payload.
//
// Payload layout (integers are varints unless said otherwise): the
// version; the source's name (length, bytes); the hash of the source's
// schema as 4 little-endian bytes (schemaOf); the arrival time (zigzag
// Unix ms); the stream names the record's events refer to (a count, then
// each as length and bytes); the number of events; then per event its time
// (zigzag), the index of its stream in that list, its position (unsigned),
// and per field of the source its kind as one byte followed by the value:
// int64 zigzag, float64 as 8 little-endian bytes, string as length and
// bytes, bool as one byte; null has no value.
const recordVersion = 1

// headerBytes is the length and CRC before each payload.
const headerBytes = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a record cut short or failing its checksum.
var errTorn = errors.New("torn or corrupt record")

// record is one decoded journal record.
type record struct {
	source  string
	arrival int64
	streams []string
	events  []journaled
}

// journaled is one event of a record.
type journaled struct {
	ts     int64
	stream int // index in record.streams
	pos    uint64
	fields []event.Value
}

// appendRecord appends the framed record of events (whose positions are
// pos[i], in stream streamOf[i]) to dst.
func appendRecord(dst []byte, source string, schemaHash uint32, arrival int64, streams []string, events []event.Event, streamOf []int, pos []uint64) []byte {
	at := len(dst)
	dst = append(dst, make([]byte, headerBytes)...)
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(source)))
	dst = append(dst, source...)
	dst = binary.LittleEndian.AppendUint32(dst, schemaHash)
	dst = binary.AppendVarint(dst, arrival)
	dst = binary.AppendUvarint(dst, uint64(len(streams)))
	for _, s := range streams {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	n := 0
	for i := range events {
		if streamOf[i] >= 0 {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i := range events {
		if streamOf[i] < 0 {
			continue // passed over: the journal holds it already
		}
		ev := &events[i]
		dst = binary.AppendVarint(dst, ev.TS)
		dst = binary.AppendUvarint(dst, uint64(streamOf[i]))
		dst = binary.AppendUvarint(dst, pos[i])
		for _, v := range ev.Fields {
			dst = append(dst, byte(v.Kind))
			switch v.Kind {
			case event.Int64:
				dst = binary.AppendVarint(dst, v.Int)
			case event.Float64:
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Float))
			case event.String:
				dst = binary.AppendUvarint(dst, uint64(len(v.Str)))
				dst = append(dst, v.Str...)
			case event.Bool:
				b := byte(0)
				if v.Bool {
					b = 1
				}
				dst = append(dst, b)
			}
		}
	}
	payload := dst[at+headerBytes:]
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[at+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// nextRecord splits the first framed record off b. It returns errTorn when
// b ends inside a record or the record fails its checksum.
func nextRecord(b []byte) (payload, rest []byte, err error) {
	if len(b) < headerBytes {
		return nil, nil, errTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-headerBytes) {
		return nil, nil, errTorn
	}
	payload = b[headerBytes : headerBytes+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, nil, errTorn
	}
	return payload, b[headerBytes+int(n):], nil
}

// decoder reads a payload; the first problem sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errTorn, what)
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string) string { return string(d.bytes(d.uvarint(what), what)) }

// view is str without a copy: the string shares the payload's memory, so
// it is only good while the payload is.
func (d *decoder) view(what string) string {
	b := d.bytes(d.uvarint(what), what)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// recordHeader reads the source and the number of events of a payload.
func recordHeader(payload []byte) (source string, events int, err error) {
	d := decoder{b: payload}
	d.bytes(1, "version")
	source = d.view("source")
	d.bytes(4, "schema")
	d.varint("arrival")
	ns := d.uvarint("stream count")
	for range min(ns, uint64(len(d.b))) {
		d.view("stream")
	}
	n := d.uvarint("event count")
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("event count")
	}
	return source, int(n), d.err
}

// schema is what a record must agree on with the project that reads it.
type schema struct {
	fields int
	hash   uint32
}

// schemaOf returns the schema of src: its fields' names and types, in
// order.
func schemaOf(src *definition.Source) schema {
	h := crc32.New(castagnoli)
	for _, f := range src.Fields {
		fmt.Fprintf(h, "%s:%v\n", f.Name, f.Type)
	}
	return schema{fields: len(src.Fields), hash: h.Sum32()}
}

// decodeRecord decodes a payload of a source schemaOf knows. Its events'
// string values share the payload's memory.
func decodeRecord(payload []byte, schemaOf func(source string) (schema, bool)) (record, error) {
	d := decoder{b: payload}
	if v := d.bytes(1, "version"); d.err == nil && v[0] != recordVersion {
		return record{}, fmt.Errorf("journal record version %d; this build reads version %d", v[0], recordVersion)
	}
	var r record
	r.source = d.str("source")
	hb := d.bytes(4, "schema")
	r.arrival = d.varint("arrival")
	ns := d.uvarint("stream count")
	if ns > uint64(len(d.b)) {
		d.fail("stream count")
	}
	for range ns {
		r.streams = append(r.streams, d.str("stream"))
	}
	ne := d.uvarint("event count")
	if d.err != nil {
		return record{}, d.err
	}
	sc, ok := schemaOf(r.source)
	if !ok {
		return record{}, fmt.Errorf("events of source %q, which the project does not declare: start once with the project file that declares it, so that the journal reaches the archive", r.source)
	}
	if binary.LittleEndian.Uint32(hb) != sc.hash {
		return record{}, fmt.Errorf("events of source %q written with other fields than the project declares: start once with the project file that wrote them, so that the journal reaches the archive", r.source)
	}
	nf := sc.fields
	if ne > uint64(len(d.b)) {
		d.fail("event count")
		return record{}, d.err
	}
	r.events = make([]journaled, 0, ne)
	vals := make([]event.Value, int(ne)*nf)
	for i := range ne {
		ev := journaled{ts: d.varint("event time"), stream: int(d.uvarint("stream index")), pos: d.uvarint("position")}
		if ev.stream >= len(r.streams) {
			d.fail("stream index")
		}
		ev.fields = vals[int(i)*nf : int(i+1)*nf : int(i+1)*nf]
		for j := range nf {
			k := d.bytes(1, "field kind")
			if d.err != nil {
				break
			}
			switch event.Type(k[0]) {
			case event.Null:
			case event.Int64:
				ev.fields[j] = event.IntValue(d.varint("int"))
			case event.Float64:
				b := d.bytes(8, "float")
				if d.err == nil {
					ev.fields[j] = event.FloatValue(math.Float64frombits(binary.LittleEndian.Uint64(b)))
				}
			case event.String:
				ev.fields[j] = event.StringValue(d.view("string"))
			case event.Bool:
				b := d.bytes(1, "bool")
				if d.err == nil {
					ev.fields[j] = event.BoolValue(b[0] != 0)
				}
			default:
				d.fail("field kind")
			}
		}
		if d.err != nil {
			return record{}, d.err
		}
		r.events = append(r.events, ev)
	}
	if len(d.b) != 0 {
		return record{}, fmt.Errorf("%w: %d bytes after the last event", errTorn, len(d.b))
	}
	return r, nil
}
