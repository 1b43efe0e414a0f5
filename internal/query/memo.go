package query

import (
	"encoding/binary"
	"math"

	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/tile"
)

// A memo is what the engine keeps with a cached row (MemoRowSource): the
// row's evaluated values and the span of evaluation times they hold for
// (tile.Plan.Stable). While the row's bytes stay the same — the cache drops
// the memo when they change — and the request's time is inside the span,
// the values are the ones Eval would compute, so a hot row is decoded and
// evaluated once per hop of its shortest window instead of on every read.
//
// Layout (little-endian):
//
//	version      1 byte (memoVersion)
//	fingerprint  4 bytes: the plan's tile.Plan.Fingerprint
//	outputs      2 bytes: len(plan.Outputs)
//	newest       8 bytes: the row's newest event time (tile.NoTime: empty)
//	from, until  8 bytes each: the span
//	values       per output: a kind byte, then 8 bytes (int64 or float64
//	             bits, or 0/1 for a bool; nothing for null)
//
// Rows with a string value are not memoized (a string would have to be
// allocated on every read).
const (
	memoVersion   = 1
	memoHeader    = 1 + 4 + 2 + 8 + 8 + 8
	memoValueSize = 9
)

// appendMemo appends the memo of a row's values to dst. ok is false when
// the values cannot be memoized.
func appendMemo(dst []byte, p *tile.Plan, newest, from, until int64, vals []event.Value) ([]byte, bool) {
	dst = append(dst, memoVersion)
	dst = binary.LittleEndian.AppendUint32(dst, p.Fingerprint)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(vals)))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(newest))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(from))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(until))
	for _, v := range vals {
		var x uint64
		switch v.Kind {
		case event.Null:
		case event.Int64:
			x = uint64(v.Int)
		case event.Float64:
			x = math.Float64bits(v.Float)
		case event.Bool:
			if v.Bool {
				x = 1
			}
		default:
			return dst, false
		}
		dst = append(dst, byte(v.Kind))
		dst = binary.LittleEndian.AppendUint64(dst, x)
	}
	return dst, true
}

// readMemo reads the values of a memo into vals if it was made under plan p
// and holds at time t. It returns the row's newest event time.
func readMemo(memo []byte, p *tile.Plan, t int64, vals []event.Value) (newest int64, ok bool) {
	if len(memo) != memoHeader+memoValueSize*len(vals) || memo[0] != memoVersion ||
		binary.LittleEndian.Uint32(memo[1:]) != p.Fingerprint ||
		int(binary.LittleEndian.Uint16(memo[5:])) != len(vals) {
		return 0, false
	}
	from := int64(binary.LittleEndian.Uint64(memo[15:]))
	until := int64(binary.LittleEndian.Uint64(memo[23:]))
	if t < from || t >= until {
		return 0, false
	}
	b := memo[memoHeader:]
	for i := range vals {
		x := binary.LittleEndian.Uint64(b[1:9])
		switch k := event.Type(b[0]); k {
		case event.Null:
			vals[i] = event.Value{}
		case event.Int64:
			vals[i] = event.IntValue(int64(x))
		case event.Float64:
			vals[i] = event.FloatValue(math.Float64frombits(x))
		case event.Bool:
			vals[i] = event.BoolValue(x == 1)
		default:
			return 0, false
		}
		b = b[memoValueSize:]
	}
	return int64(binary.LittleEndian.Uint64(memo[7:])), true
}
