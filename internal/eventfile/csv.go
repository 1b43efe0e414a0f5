package eventfile

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-dev/kiln/internal/eventjson"
)

// readBufferBytes is the buffer of a CSV or JSON lines file.
const readBufferBytes = 64 << 10

// timeColumn is the slot of the event-time column in csvHeader.slot and
// parquet's column plans.
const timeColumn = -1

// csvHeader maps the columns of a CSV file to the source's fields.
type csvHeader struct {
	// names[c] is the name of column c; slot[c] its field index, or
	// timeColumn.
	names []string
	slot  []int
}

// readCSV reads a CSV file of size bytes from in.
func (r *rows) readCSV(in io.Reader, size int64) error {
	counted := &countingReader{r: in}
	lim := newLineLimiter(counted, r.opts.MaxLineBytes)
	cr := csv.NewReader(bufio.NewReaderSize(lim, readBufferBytes))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // a ragged row is a problem of its own, worded here

	names, err := cr.Read()
	if err != nil {
		return r.csvHeaderError(err)
	}
	h, err := r.csvHeader(names)
	if err != nil {
		return err
	}
	ncols := len(h.slot)
	done := func() int64 { return counted.n }
	var cell []byte // the cell being read, as bytes
	var pe *csv.ParseError
	for {
		record, err := cr.Read()
		if err == io.EOF {
			break
		}
		line := 0
		if len(record) > 0 {
			line, _ = cr.FieldPos(0)
		}
		switch {
		case errors.Is(err, errLineTooLong):
			// The line cut short: a record cut short in a quoted cell
			// may have no field to tell where it began.
			line = lim.longLine
			r.problem(line, "", r.tooLong())
		case errors.As(err, &pe):
			line = pe.StartLine
			r.problem(line, "", fmt.Sprintf("malformed CSV at line %d, character %d: %v", pe.Line, pe.Column, pe.Err))
		case err != nil:
			return fmt.Errorf("%s: %w", r.name, err)
		case len(record) != ncols:
			r.problem(line, "", fmt.Sprintf("%d cells, but the header (line 1) names %d columns; quote a cell that holds a comma", len(record), ncols))
		default:
			r.ev.TS = 0
			clear(r.ev.Fields)
			sawTime := false
			for c, text := range record {
				cell = append(cell[:0], text...)
				r.csvCell(line, h.names[c], h.slot[c], cell, &sawTime)
			}
			if !sawTime {
				r.problem(line, r.src.EventTime, eventjson.MissingEventTime)
			}
		}
		if err := r.emit(line, &r.ev); err != nil {
			return err
		}
		if err := r.tick(done, size); err != nil {
			return err
		}
	}
	r.finish(size)
	return nil
}

// csvCell reads one cell, of column name, into slot of the current event:
// empty is null.
func (r *rows) csvCell(line int, name string, slot int, text []byte, sawTime *bool) {
	if slot == timeColumn {
		if len(text) == 0 {
			return
		}
		*sawTime = true
		ts, msg := eventjson.EventTime(r.src, text, r.opts.Now)
		if msg != "" {
			r.problem(line, name, msg)
		}
		r.ev.TS = ts
		return
	}
	if len(text) == 0 {
		if r.keys[slot] {
			r.problem(line, name, eventjson.NullKey)
		}
		return
	}
	v, msg := r.dec.ParseText(r.src.Fields[slot].Type, text)
	if msg != "" {
		r.problem(line, name, msg)
		return
	}
	r.ev.Fields[slot] = v
}

func (r *rows) tooLong() string {
	return fmt.Sprintf("line is longer than %d bytes, the most a line may hold; it was skipped", r.opts.MaxLineBytes)
}

// csvHeaderError words why the header row could not be read.
func (r *rows) csvHeaderError(err error) error {
	var pe *csv.ParseError
	switch {
	case err == io.EOF:
		return r.fileError(0, "", "the file is empty: a CSV file starts with a header row naming its columns, "+r.columnsWanted())
	case errors.Is(err, errLineTooLong):
		return r.fileError(1, "", "the header row is longer than the most a line may hold: is this a CSV file?")
	case errors.As(err, &pe):
		return r.fileError(1, "", fmt.Sprintf("malformed CSV header at character %d: %v", pe.Column, pe.Err))
	}
	return fmt.Errorf("%s: %w", r.name, err)
}

// columnsWanted names the columns a file of the source has.
func (r *rows) columnsWanted() string {
	names := make([]string, 0, len(r.src.Fields)+1)
	names = append(names, r.src.EventTime)
	for _, f := range r.src.Fields {
		names = append(names, f.Name)
	}
	return "from " + strings.Join(names, ", ")
}

// csvHeader maps the header's names to fields, or says all that is wrong
// with it.
func (r *rows) csvHeader(names []string) (*csvHeader, error) {
	// A spreadsheet may begin a UTF-8 file with a byte order mark.
	if len(names) > 0 {
		names[0] = strings.TrimPrefix(names[0], "\uFEFF")
	}
	names = append([]string(nil), names...) // the reader reuses its record
	h := &csvHeader{names: names, slot: make([]int, len(names))}
	var errs []error
	bad := func(column, msg string) { errs = append(errs, r.fileError(1, column, msg)) }
	seen := map[string]bool{}
	for c, name := range names {
		switch {
		case name == "":
			bad("", fmt.Sprintf("column %d has no name: the header row names every column", c+1))
			continue
		case seen[name]:
			bad(name, "given twice")
			continue
		case name == r.src.EventTime:
			h.slot[c] = timeColumn
		default:
			if h.slot[c] = r.src.FieldIndex(name); h.slot[c] >= 0 {
				break
			}
			if t := strings.TrimSpace(name); t != name && (t == r.src.EventTime || r.src.FieldIndex(t) >= 0) {
				bad(name, fmt.Sprintf("%q has spaces around it: the header names each column exactly as its field", name))
			} else {
				bad(name, eventjson.UnknownField(r.src))
			}
		}
		seen[name] = true
	}
	errs = append(errs, r.missingColumns(1, seen)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return h, nil
}

// missingColumns are the problems of a header or schema (at row) without
// the event time or a key field, given the columns it has.
func (r *rows) missingColumns(row int, has map[string]bool) []error {
	var errs []error
	if !has[r.src.EventTime] {
		errs = append(errs, r.fileError(row, r.src.EventTime, eventjson.MissingEventTime))
	}
	for i, f := range r.src.Fields {
		if r.keys[i] && !has[f.Name] {
			errs = append(errs, r.fileError(row, f.Name, eventjson.MissingKey(r.src)))
		}
	}
	return errs
}
