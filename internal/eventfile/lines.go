package eventfile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errLineTooLong is what a lineLimiter returns in place of the part of a
// line past its limit.
var errLineTooLong = errors.New("line too long")

var nl = []byte{'\n'}

// lineLimiter passes on what it reads but for the part of each line past
// max bytes: it returns the first max bytes of such a line, then
// errLineTooLong, then — without holding it — drops the rest of the line
// with its '\n', and goes on with the next line. A reader above it (bufio,
// encoding/csv) thus sees a long line as a line cut short with an error,
// and then the lines after it, so one over-long line costs max bytes of
// memory and is a problem of its row, not of the file.
//
// Line numbers stay right: the dropped '\n' ended the line that the reader
// above took when it saw the error.
type lineLimiter struct {
	r   io.Reader
	max int
	// run is the length of the current line so far.
	run int
	// skipping says the current line is past max: drop up to its '\n'.
	skipping bool
	err      error // of r, to return once what came before it has been
	// lines counts the '\n's passed on; longLine is the number of the
	// last line found too long (1-based), for the reader above, which
	// may not know where a line it got cut short began.
	lines, longLine int
}

func newLineLimiter(r io.Reader, max int) *lineLimiter { return &lineLimiter{r: r, max: max} }

func (l *lineLimiter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if l.err != nil {
			err := l.err
			if err != io.EOF {
				l.err = nil // as bufio: an error is said once
			}
			return 0, err
		}
		// At most max+1 bytes of a line: enough to see that it is too
		// long, and, since every line before the last '\n' read is then
		// shorter than max, only the last can be.
		want := min(len(p), l.max+1-l.run)
		if l.skipping {
			want = min(len(p), l.max+1)
		}
		n, err := l.r.Read(p[:want])
		l.err = err
		if l.skipping {
			i := bytes.IndexByte(p[:n], '\n')
			if i < 0 {
				if n == 0 && err == nil {
					return 0, nil // no progress; let the caller retry
				}
				continue // dropped: read on
			}
			l.skipping, l.run = false, 0
			l.lines++ // the '\n' dropped ended a line
			n = copy(p, p[i+1:n])
		}
		if n == 0 {
			if err != nil {
				continue
			}
			return 0, nil
		}
		if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
			l.run = n - i - 1
			l.lines += bytes.Count(p[:i+1], nl)
		} else {
			l.run += n
		}
		if l.run > l.max {
			// One byte past max, and no '\n' in what was read: the line
			// is too long.
			l.skipping, l.run = true, 0
			l.longLine = l.lines + 1
			return n - 1, errLineTooLong
		}
		return n, nil
	}
}

// readLine returns the next line of br with its '\n' (if any), and
// ReadSlice's error; a line longer than br's buffer is gathered in *long,
// which the line is then valid until the next call.
func readLine(br *bufio.Reader, long *[]byte) ([]byte, error) {
	b, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return b, err
	}
	*long = append((*long)[:0], b...)
	for err == bufio.ErrBufferFull {
		b, err = br.ReadSlice('\n')
		*long = append(*long, b...)
	}
	return *long, err
}
