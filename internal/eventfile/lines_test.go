package eventfile

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// A lineLimiter passes lines up to max bytes as they are, cuts longer
// ones at max bytes with errLineTooLong (knowing their number), drops the
// rest of them, and goes on; whatever the sizes of the reads below it.
func TestLineLimiter(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	for range 500 {
		max := 1 + r.IntN(20)
		var lines []string
		for range r.IntN(12) {
			lines = append(lines, strings.Repeat(string(rune('a'+r.IntN(26))), r.IntN(2*max+2)))
		}
		in := strings.Join(lines, "\n")
		if r.IntN(2) == 0 && len(lines) > 0 {
			in += "\n"
		}
		var under io.Reader = strings.NewReader(in)
		switch r.IntN(3) {
		case 0:
			under = iotest.OneByteReader(under)
		case 1:
			under = iotest.HalfReader(under)
		}
		lim := newLineLimiter(under, max)
		br := bufio.NewReaderSize(lim, 16)
		var long []byte
		for i := 0; ; i++ {
			b, err := readLine(br, &long)
			if len(b) == 0 && err == io.EOF {
				if i < len(lines) && !(i == len(lines)-1 && lines[i] == "") {
					t.Fatalf("seed %d: %q (max %d): ended at line %d of %d", seed, in, max, i+1, len(lines))
				}
				break
			}
			if i >= len(lines) {
				t.Fatalf("seed %d: %q (max %d): line %d %q", seed, in, max, i+1, b)
			}
			got := strings.TrimSuffix(string(b), "\n")
			want := lines[i]
			switch {
			case len(want) > max:
				if !errors.Is(err, errLineTooLong) || got != want[:max] || lim.longLine != i+1 {
					t.Fatalf("seed %d: %q (max %d): line %d %q, %v (long line %d)", seed, in, max, i+1, got, err, lim.longLine)
				}
			case got != want || (err != nil && err != io.EOF):
				t.Fatalf("seed %d: %q (max %d): line %d %q, %v; want %q", seed, in, max, i+1, got, err, want)
			}
			if err == io.EOF {
				break
			}
		}
	}
}
