package eventjson

import (
	"math"
	"math/bits"
)

// Numbers: short integers and floats read without strconv, exactly.

// pow10 holds the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseShortFloat reads a valid JSON number (raw, checked by the scanner)
// of at most 19 significant digits, m × 10^e, rounded to the nearest
// float64 as strconv does. When m ≤ 2^53 and |e| ≤ 22, m and 10^|e| are
// exact and one multiplication or division rounds once (Clinger's fast
// path); otherwise, for |e| ≤ 19, m × 10^e or m / 10^-e is computed to 64
// significant bits in integers and rounded once (exactRound). Other
// numbers return false, for strconv.
func parseShortFloat(raw []byte) (float64, bool) {
	i, neg := 0, false
	if len(raw) > 0 && raw[0] == '-' {
		i, neg = 1, true
	}
	var m uint64
	digits, exp := 0, 0
	start := i
	for ; i < len(raw) && isDigit(raw[i]); i++ {
		m = m*10 + uint64(raw[i]-'0')
		digits++
	}
	if i == start || digits > 19 {
		return 0, false
	}
	if i < len(raw) && raw[i] == '.' {
		i++
		start = i
		for ; i < len(raw) && isDigit(raw[i]); i++ {
			m = m*10 + uint64(raw[i]-'0')
			digits++
			exp--
		}
		if i == start || digits > 19 {
			return 0, false
		}
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		sign := 1
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			if raw[i] == '-' {
				sign = -1
			}
			i++
		}
		start = i
		e := 0
		for ; i < len(raw) && isDigit(raw[i]) && e < 1000; i++ {
			e = e*10 + int(raw[i]-'0')
		}
		if i == start {
			return 0, false
		}
		exp += sign * e
	}
	if i != len(raw) {
		return 0, false
	}
	var f float64
	switch {
	case m <= 1<<53 && exp >= -22 && exp <= 22:
		f = float64(m)
		if exp < 0 {
			f /= pow10[-exp]
		} else {
			f *= pow10[exp]
		}
	case m != 0 && exp >= -19 && exp <= 19:
		f = exactRound(m, exp)
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

// exactRound returns m × 10^e rounded to the nearest float64, ties to
// even, for m > 0 and |e| ≤ 19 (10^|e| fits a uint64). The product, or
// the quotient with its remainder, is formed exactly in 128-bit integers,
// so the one rounding is correct: JSON producers write most floats with
// 16 or 17 digits, which Clinger's fast path cannot take.
func exactRound(m uint64, e int) float64 {
	if e >= 0 {
		hi, lo := bits.Mul64(m, pow10u[e])
		if hi == 0 {
			lz := bits.LeadingZeros64(lo)
			return round64(lo<<lz, -lz, false)
		}
		lz := bits.LeadingZeros64(hi)
		return round64(hi<<lz|lo>>(64-lz), 64-lz, lo<<lz != 0)
	}
	// m / d = (X / D) × 2^(lzd − lzm), X and D having their top bits set,
	// so that the quotient below has its top bit set too.
	d := pow10u[-e]
	lzm, lzd := bits.LeadingZeros64(m), bits.LeadingZeros64(d)
	x, dn := m<<lzm, d<<lzd
	if x < dn {
		q, r := bits.Div64(x, 0, dn) // ⌊X × 2^64 / D⌋
		return round64(q, lzd-lzm-64, r != 0)
	}
	q, r := bits.Div64(x>>1, x<<63, dn) // ⌊X × 2^63 / D⌋
	return round64(q, lzd-lzm-63, r != 0)
}

// round64 returns q × 2^shift rounded to the nearest float64, ties to
// even; q has its top bit set, and sticky says the exact value had more
// bits below q's that were not all zero.
func round64(q uint64, shift int, sticky bool) float64 {
	const drop = 64 - 53
	mant, low := q>>drop, q&(1<<drop-1)
	if half := uint64(1) << (drop - 1); low > half || (low == half && (sticky || mant&1 == 1)) {
		if mant++; mant == 1<<53 {
			mant >>= 1
			shift++
		}
	}
	return math.Ldexp(float64(mant), shift+drop)
}

// pow10u holds 10^0 to 10^19, the powers of ten a uint64 holds.
var pow10u = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// parseShortInt reads a JSON number of at most 18 digits and no fraction or
// exponent, which always fits an int64.
func parseShortInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(raw) {
		n = -n
	}
	return n, true
}
