package tile

import (
	"encoding/binary"

	"github.com/kiln-dev/kiln/internal/event"
)

// AppendKey appends the store key of the row of a view for one entity key
// (the values of the entity's key fields, in order) and returns it:
//
//	view name, 0x00, then per key value its kind byte and an int64 as 8
//	big-endian bytes with the sign bit flipped, or a string as a uvarint
//	length and its bytes.
//
// Distinct (view, key) pairs give distinct keys. A key of a view whose name
// is not empty and does not begin with a 0 byte (every view the project
// loader accepts) never begins with store.ReservedPrefix, which belongs to
// Kiln's own records.
func AppendKey(dst []byte, view string, key []event.Value) []byte {
	dst = append(dst, view...)
	dst = append(dst, 0)
	for _, v := range key {
		dst = append(dst, byte(v.Kind))
		switch v.Kind {
		case event.Int64:
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.Int)^(1<<63))
		case event.String:
			dst = binary.AppendUvarint(dst, uint64(len(v.Str)))
			dst = append(dst, v.Str...)
		default:
			dst = appendValue(dst[:len(dst)-1], &v)
		}
	}
	return dst
}
