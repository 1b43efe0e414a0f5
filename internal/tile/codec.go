package tile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/kiln-dev/kiln/internal/event"
)

// RowVersion is the version of the row encoding written by AppendRow.
//
// Layout (integers are varints unless said otherwise):
//
//	version            1 byte (RowVersion)
//	fingerprint        4 bytes little-endian: Plan.Fingerprint
//	clock, newest      zigzag varints (Unix ms)
//	levels             uvarint count, equal to len(Plan.Levels); per level:
//	  tiles            uvarint count; per tile:
//	    start          first tile: zigzag varint start/hop; then uvarint gap
//	                   in hops from the previous tile (≥ 1)
//	    presence       ⌈slots/8⌉ bytes: bit j set when slot j is not empty
//	    slots          per present slot: counts as uvarints, the rest as
//	                   8-byte little-endian float64
//	lasts              per "last" feature: 0, or 1 + zigzag ts + value
//	pending            uvarint count; per event: zigzag ts + one value per
//	                   source field
//	positions          (version 2) uvarint count; per stream, ascending:
//	                   8 bytes little-endian stream id + uvarint offset
//	checksum           4 bytes little-endian: CRC-32C of all bytes before it
//
// A value is a kind byte (event.Type) and its payload: zigzag varint for
// int64, 8-byte float64, uvarint length + bytes for strings, one byte for
// bools, nothing for null.
//
// Version 1 rows (no positions) are still read.
const RowVersion = 2

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of DecodeRow. Every error it returns wraps ErrCorrupt or ErrLayout.
var (
	// ErrCorrupt: the bytes are not a row (truncated, damaged, or invalid).
	ErrCorrupt = errors.New("tile: corrupt row")
	// ErrLayout: the row is intact but was written for another layout of
	// the view (its features or windows changed since).
	ErrLayout = errors.New("tile: row written for another definition of the view")
)

// Limits that keep a damaged row from allocating without bound.
const (
	maxRowBytes   = 64 << 20
	maxPending    = 1 << 16
	maxStringSize = 1 << 20
)

// AppendRow appends the encoding of r to dst and returns it. The row's
// clock should be current (Advance) so expired tiles are not written.
func (p *Plan) AppendRow(dst []byte, r *Row) []byte {
	begin := len(dst)
	dst = append(dst, RowVersion)
	dst = binary.LittleEndian.AppendUint32(dst, p.Fingerprint)
	dst = binary.AppendVarint(dst, r.Clock)
	dst = binary.AppendVarint(dst, r.Newest)
	dst = binary.AppendUvarint(dst, uint64(len(p.Levels)))
	for li := range p.Levels {
		l := &p.Levels[li]
		lo, hi := r.level(li)
		dst = binary.AppendUvarint(dst, uint64((hi-lo)/l.stride))
		hop := l.Window.Hop
		if hop == 0 {
			hop = 1
		}
		// Ascending by start: the row holds them newest first.
		for at := hi - l.stride; at >= lo; at -= l.stride {
			start := startAt(r.tiles, at)
			if at == hi-l.stride {
				dst = binary.AppendVarint(dst, start/hop)
			} else {
				dst = binary.AppendUvarint(dst, uint64((start-startAt(r.tiles, at+l.stride))/hop))
			}
			vals := r.tiles[at+1 : at+l.stride]
			mask := len(dst)
			for range (l.Slots + 7) / 8 {
				dst = append(dst, 0)
			}
			for j, k := range l.kinds {
				v := vals[j]
				if v == l.empty[j] {
					continue
				}
				dst[mask+j/8] |= 1 << (j % 8)
				if k == slotCount {
					dst = binary.AppendUvarint(dst, uint64(v))
				} else {
					dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
				}
			}
		}
	}
	for _, st := range r.lasts {
		if st.Value.Kind == event.Null {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = binary.AppendVarint(dst, st.TS)
		dst = appendValue(dst, &st.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.pending)))
	for i := range r.pending {
		dst = appendTimeAndFields(dst, &r.pending[i].ev)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.applied)))
	for _, o := range r.applied {
		dst = binary.LittleEndian.AppendUint64(dst, o.Stream)
		dst = binary.AppendUvarint(dst, o.Offset)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[begin:], castagnoli))
}

// appendTimeAndFields appends an event's zigzag time and one value per
// field.
func appendTimeAndFields(dst []byte, ev *event.Event) []byte {
	dst = binary.AppendVarint(dst, ev.TS)
	for i := range ev.Fields {
		dst = appendValue(dst, &ev.Fields[i])
	}
	return dst
}

// AppendEvent appends the encoding of an event of the plan's source: its
// time and fields as in a row's pending events, then its origin (uvarint
// stream, and uvarint offset when the stream is not 0). DecodeEvent reads
// it back. The write path's log holds events this way.
func (p *Plan) AppendEvent(dst []byte, ev *event.Event) []byte {
	dst = appendTimeAndFields(dst, ev)
	dst = binary.AppendUvarint(dst, ev.Origin.Stream)
	if ev.Origin.Stream != 0 {
		dst = binary.AppendUvarint(dst, ev.Origin.Offset)
	}
	return dst
}

// DecodeEvent decodes the event AppendEvent wrote at the front of data into
// ev, with a new Fields slice, and returns the bytes after it. Input that is
// not such an event of the plan's source is refused with an error wrapping
// ErrCorrupt; DecodeEvent never panics.
func (p *Plan) DecodeEvent(data []byte, ev *event.Event) ([]byte, error) {
	d := decoder{b: data}
	*ev = d.event(p)
	ev.Origin.Stream = d.uvarint()
	if ev.Origin.Stream != 0 {
		ev.Origin.Offset = d.uvarint()
	}
	if d.err != nil {
		return nil, d.err
	}
	return d.b, nil
}

func appendValue(dst []byte, v *event.Value) []byte {
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
	return dst
}

// DecodeRow decodes data, written by AppendRow under the same plan, into r
// (reusing its memory). It refuses truncated, damaged or foreign input with
// an error wrapping ErrCorrupt or ErrLayout and never panics; r is then
// unspecified and must be Reset before reuse. r does not retain data.
func (p *Plan) DecodeRow(data []byte, r *Row) error {
	if len(data) < 1+4+4 {
		return corrupt("%d bytes is shorter than any row", len(data))
	}
	if len(data) > maxRowBytes {
		return corrupt("%d bytes is over the %d-byte row limit", len(data), maxRowBytes)
	}
	body := data[:len(data)-4]
	if sum := binary.LittleEndian.Uint32(data[len(data)-4:]); sum != crc32.Checksum(body, castagnoli) {
		return corrupt("checksum mismatch")
	}
	return p.decodeBody(body, r)
}

// decodeBody decodes a row whose checksum has been verified.
func (p *Plan) decodeBody(body []byte, r *Row) error {
	version := body[0]
	if version != 1 && version != RowVersion {
		return corrupt("unknown row version %d (this build reads versions 1 to %d)", version, RowVersion)
	}
	if fp := binary.LittleEndian.Uint32(body[1:5]); fp != p.Fingerprint {
		return fmt.Errorf("%w %s (row layout %08x, current %08x)", ErrLayout, p.View.Name, fp, p.Fingerprint)
	}
	p.Reset(r)
	d := decoder{b: body[5:]}
	r.Clock = d.varint()
	r.Newest = d.varint()
	if n := d.uvarint(); d.err == nil && n != uint64(len(p.Levels)) {
		return corrupt("row has %d levels, the view has %d", n, len(p.Levels))
	}
	for li := range p.Levels {
		l := &p.Levels[li]
		n := d.count(1 + (l.Slots+7)/8)
		if l.Window.IsAllTime() && n > 1 {
			return corrupt("all-time level with %d tiles", n)
		}
		// The level's tiles come ascending; the row holds them newest
		// first, so tile i goes at lo + (n-1-i)·stride.
		lo := len(r.tiles)
		r.tiles = slices.Grow(r.tiles, n*l.stride)[:lo+n*l.stride]
		r.end[li] = int32(len(r.tiles))
		hop := l.Window.Hop
		if hop == 0 {
			hop = 1
		}
		var start int64
		for i := 0; i < n && d.err == nil; i++ {
			if i == 0 {
				q := d.varint()
				if q > maxTime/hop || q < -maxTime/hop {
					return corrupt("tile start out of range")
				}
				start = q * hop
			} else {
				gap := d.uvarint()
				if gap == 0 || gap > uint64((maxTime-start)/hop) {
					return corrupt("tiles out of order")
				}
				start += int64(gap) * hop
			}
			if l.Window.IsAllTime() && start != 0 {
				return corrupt("all-time tile with a start")
			}
			at := lo + (n-1-i)*l.stride
			r.tiles[at] = startBits(start)
			mask := d.bytes((l.Slots + 7) / 8)
			if d.err != nil {
				break
			}
			if extra := l.Slots % 8; extra != 0 && mask[len(mask)-1]>>extra != 0 {
				return corrupt("presence bits beyond the last slot")
			}
			for j, k := range l.kinds {
				v := l.empty[j]
				if mask[j/8]&(1<<(j%8)) != 0 {
					if k == slotCount {
						c := d.uvarint()
						if c > 1<<53 {
							return corrupt("count %d out of range", c)
						}
						v = float64(c)
					} else {
						v = d.float()
						if math.IsNaN(v) || (k != slotSum && math.IsInf(v, 0)) {
							return corrupt("slot value %v", v)
						}
					}
				}
				r.tiles[at+1+j] = v
			}
		}
	}
	for i := range r.lasts {
		switch d.byte() {
		case 0:
		case 1:
			r.lasts[i].TS = d.varint()
			r.lasts[i].Value = d.value()
			if d.err == nil && r.lasts[i].Value.Kind == event.Null {
				return corrupt("last state without a value")
			}
		default:
			if d.err == nil {
				return corrupt("bad last flag")
			}
		}
	}
	n := d.count(1 + p.nFields)
	if n > maxPending {
		return corrupt("%d pending events", n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		r.pending = append(r.pending, pendingEvent{ev: d.event(p)})
	}
	if version >= 2 {
		n := d.count(8 + 1)
		for i := 0; i < n && d.err == nil; i++ {
			sb := d.bytes(8)
			off := d.uvarint()
			if d.err != nil {
				break
			}
			stream := binary.LittleEndian.Uint64(sb)
			if stream == 0 || (i > 0 && stream <= r.applied[i-1].Stream) {
				return corrupt("positions out of order")
			}
			r.applied = append(r.applied, event.Origin{Stream: stream, Offset: off})
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return corrupt("%d bytes after the row", len(d.b))
	}
	return nil
}

const maxTime = 1 << 62

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// decoder reads a row body; the first error sticks and later reads return
// zero values, so callers check once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = corrupt("truncated or invalid %s", what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks it against the bytes left, each
// element taking at least minSize bytes.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.fail("bytes")
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) float() float64 {
	s := d.bytes(8)
	if s == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(s))
}

// event reads an event's time and one value per field of p's source,
// each null or of the field's type.
func (d *decoder) event(p *Plan) event.Event {
	ev := event.Event{TS: d.varint(), Fields: make([]event.Value, p.nFields)}
	for j := range ev.Fields {
		ev.Fields[j] = d.value()
		if k := ev.Fields[j].Kind; d.err == nil && k != event.Null && k != p.fieldType[j] {
			d.err = corrupt("event field %d has type %v, want %v", j, k, p.fieldType[j])
			d.b = nil
		}
	}
	return ev
}

func (d *decoder) value() event.Value {
	switch k := event.Type(d.byte()); k {
	case event.Null:
		return event.Value{}
	case event.Int64:
		return event.IntValue(d.varint())
	case event.Float64:
		v := d.float()
		if math.IsNaN(v) || math.IsInf(v, 0) {
			d.fail("float value")
		}
		return event.FloatValue(v)
	case event.String:
		n := d.uvarint()
		if n > maxStringSize {
			d.fail("string length")
			return event.Value{}
		}
		return event.StringValue(string(d.bytes(int(n))))
	case event.Bool:
		switch d.byte() {
		case 0:
			return event.BoolValue(false)
		case 1:
			return event.BoolValue(true)
		}
		d.fail("bool")
	default:
		d.fail("value kind")
	}
	return event.Value{}
}
