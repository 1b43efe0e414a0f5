package serve

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/kiln-dev/kiln/internal/event"
)

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendValue appends a feature value as JSON; null for no value.
func appendValue(b []byte, v event.Value) []byte {
	switch v.Kind {
	case event.Int64:
		return strconv.AppendInt(b, v.Int, 10)
	case event.Float64:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, v.Float, 'g', -1, 64)
	case event.String:
		return appendString(b, v.Str)
	case event.Bool:
		return strconv.AppendBool(b, v.Bool)
	}
	return append(b, "null"...)
}
