package eventjson

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON scanner. It accepts what encoding/json accepts — RFC 8259, with
// any bytes but '"', '\\' and control characters inside strings, valid
// UTF-8 or not — and nests arrays and objects as deep as maxDepth, as
// encoding/json does. Each function takes the offset of a value's first
// byte and returns the offset just past it.

// maxDepth is how deeply arrays and objects may nest (encoding/json's
// maxNestingDepth).
const maxDepth = 10000

// syntaxError is where and how a JSON text is malformed.
type syntaxError struct {
	off int // the offset of the byte at fault
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at byte %d: %s", e.off, e.msg)
}

// badChar is the error of an unexpected byte at b[i], or of the end of b.
func badChar(b []byte, i int, context string) *syntaxError {
	if i >= len(b) {
		return &syntaxError{len(b), "unexpected end of JSON input"}
	}
	c := b[i]
	var q string
	switch c {
	case '\'':
		q = `'\''`
	case '"':
		q = `'"'`
	default:
		q = strconv.QuoteRune(rune(c))
	}
	return &syntaxError{i, "invalid character " + q + " " + context}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipValue checks the value at b[i:], whose enclosing arrays and objects
// number depth. plain says, of a string, that its contents are its value
// as they stand (no escapes, nothing but ASCII); it is true of other
// values.
func skipValue(b []byte, i, depth int) (end int, plain bool, err *syntaxError) {
	if i >= len(b) {
		return 0, false, badChar(b, i, "")
	}
	switch c := b[i]; c {
	case '"':
		return scanString(b, i)
	case '{':
		end, err = skipObject(b, i, depth)
	case '[':
		end, _, err = skipArray(b, i, depth)
	case 't':
		end, err = skipLiteral(b, i, "true")
	case 'f':
		end, err = skipLiteral(b, i, "false")
	case 'n':
		end, err = skipLiteral(b, i, "null")
	default:
		if c == '-' || isDigit(c) {
			end, err = scanNumber(b, i)
		} else {
			err = badChar(b, i, "looking for beginning of value")
		}
	}
	return end, true, err
}

// scanString checks the string at b[i] == '"'; plain says its contents
// have no escapes and nothing but ASCII.
func scanString(b []byte, i int) (end int, plain bool, err *syntaxError) {
	plain = true
	for i++; i < len(b); i++ {
		c := b[i]
		if stringByte[c] {
			continue
		}
		switch {
		case c == '"':
			return i + 1, plain, nil
		case c == '\\':
			plain = false
			if i++; i == len(b) {
				return 0, false, badChar(b, i, "")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for k := 0; k < 4; k++ {
					if i++; i == len(b) || !isHex(b[i]) {
						return 0, false, badChar(b, i, `in \u hexadecimal character escape`)
					}
				}
			default:
				return 0, false, badChar(b, i, "in string escape code")
			}
		case c < ' ':
			return 0, false, badChar(b, i, "in string literal")
		default: // beyond ASCII
			plain = false
		}
	}
	return 0, false, badChar(b, i, "")
}

// stringByte[c] says c stands for itself in a string and is ASCII.
var stringByte = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func scanNumber(b []byte, i int) (int, *syntaxError) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return 0, badChar(b, i, "in numeric literal")
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) || !isDigit(b[i]) {
			return 0, badChar(b, i, "after decimal point in numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return 0, badChar(b, i, "in exponent of numeric literal")
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, nil
}

func skipLiteral(b []byte, i int, lit string) (int, *syntaxError) {
	for k := 1; k < len(lit); k++ {
		if i+k == len(b) || b[i+k] != lit[k] {
			return 0, badChar(b, i+k, fmt.Sprintf("in literal %s (expecting %s)", lit, strconv.QuoteRune(rune(lit[k]))))
		}
	}
	return i + len(lit), nil
}

func skipObject(b []byte, i, depth int) (int, *syntaxError) {
	if depth++; depth > maxDepth {
		return 0, &syntaxError{i, "exceeded max depth"}
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i == len(b) || b[i] != '"' {
			return 0, badChar(b, i, "looking for beginning of object key string")
		}
		end, _, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
			return 0, badChar(b, i, "after object key")
		}
		if end, _, err = skipValue(b, skipSpace(b, i+1), depth); err != nil {
			return 0, err
		}
		if i = skipSpace(b, end); i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		if i == len(b) || b[i] != ',' {
			return 0, badChar(b, i, "after object key:value pair")
		}
		i = skipSpace(b, i+1)
	}
}

// skipArray checks the array at b[i] == '[' and counts its elements.
func skipArray(b []byte, i, depth int) (end, n int, err *syntaxError) {
	if depth++; depth > maxDepth {
		return 0, 0, &syntaxError{i, "exceeded max depth"}
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
		return i + 1, 0, nil
	}
	for {
		if end, _, err = skipValue(b, i, depth); err != nil {
			return 0, 0, err
		}
		n++
		if i = skipSpace(b, end); i < len(b) && b[i] == ']' {
			return i + 1, n, nil
		}
		if i == len(b) || b[i] != ',' {
			return 0, 0, badChar(b, i, "after array element")
		}
		i = skipSpace(b, i+1)
	}
}

// unquote returns the value of a JSON string whose contents (between its
// quotes, already checked) are s, as encoding/json decodes it: escapes
// replaced, and invalid UTF-8 and lone surrogates made U+FFFD. It returns s
// itself when nothing changes, and otherwise appends to dst.
func unquote(dst, s []byte) []byte {
	r := 0
	for r < len(s) {
		c := s[r]
		if c == '\\' {
			break
		}
		if c < utf8.RuneSelf {
			r++
			continue
		}
		rr, size := utf8.DecodeRune(s[r:])
		if rr == utf8.RuneError && size == 1 {
			break
		}
		r += size
	}
	if r == len(s) {
		return s
	}
	b := append(dst, s[:r]...)
	for r < len(s) {
		c := s[r]
		switch {
		case c == '\\':
			switch c = s[r+1]; c {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, c)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case isDigit(c):
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
