package eventfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/kiln-dev/kiln/internal/eventjson"
)

// readJSONLines reads a JSON lines file of size bytes from in.
func (r *rows) readJSONLines(in io.Reader, size int64) error {
	counted := &countingReader{r: in}
	br := bufio.NewReaderSize(newLineLimiter(counted, r.opts.MaxLineBytes), readBufferBytes)
	done := func() int64 { return counted.n }
	var long []byte // a line longer than br's buffer
	line, sawEvent := 0, false
	for {
		b, err := readLine(br, &long)
		if len(b) == 0 && err == io.EOF {
			break
		}
		line++
		switch {
		case errors.Is(err, errLineTooLong):
			r.problem(line, "", r.tooLong())
		case err != nil && err != io.EOF:
			return fmt.Errorf("%s: %w", r.name, err)
		default:
			b = bytes.TrimSpace(b) // a line may end in "\r\n"
			if len(b) == 0 {
				continue
			}
			if !sawEvent && b[0] == '[' {
				return r.fileError(line, "", "a JSON array: this reads JSON lines, one event object per line (jq -c '.[]' turns an array into that)")
			}
			sawEvent = true
			if derr := r.dec.DecodeEvent(r.src, b, r.opts.Now, &r.ev); derr != nil {
				r.jsonProblems(line, derr)
			}
		}
		if err := r.emit(line, &r.ev); err != nil {
			return err
		}
		if err := r.tick(done, size); err != nil {
			return err
		}
		if err == io.EOF {
			break
		}
	}
	r.finish(size)
	return nil
}

// jsonProblems turns DecodeEvent's error into problems of the line.
func (r *rows) jsonProblems(line int, err error) {
	var re *eventjson.RequestError
	if !errors.As(err, &re) {
		r.problem(line, "", err.Error())
		return
	}
	for _, d := range re.Details {
		r.problem(line, d.Field, d.Message)
	}
	if len(re.Details) == 0 {
		r.problem(line, "", re.Message)
	}
}
