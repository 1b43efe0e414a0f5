package eventfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
)

// Format is a file format.
type Format uint8

const (
	// CSV is comma-separated values with a header row (.csv).
	CSV Format = iota + 1
	// JSONLines is one JSON event object per line (.jsonl, .ndjson, .json).
	JSONLines
	// Parquet is Apache Parquet (.parquet).
	Parquet
)

func (f Format) String() string {
	switch f {
	case CSV:
		return "CSV"
	case JSONLines:
		return "JSON lines"
	case Parquet:
		return "Parquet"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Extensions lists the file extensions FormatOf accepts, for messages.
const Extensions = ".parquet, .csv, .jsonl, .ndjson, .json (JSON lines)"

// FormatOf returns the format of the file at path, by its extension (in
// any case): .parquet, .csv, or .jsonl, .ndjson and .json for JSON lines.
func FormatOf(path string) (Format, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".parquet":
		return Parquet, nil
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson", ".json":
		return JSONLines, nil
	case "":
		return 0, fmt.Errorf("%s: no file extension to tell its format by; name it for its format: %s", path, Extensions)
	default:
		return 0, fmt.Errorf("%s: %s files cannot be read; name the file for its format: %s", path, ext, Extensions)
	}
}

// DefaultMaxLineBytes is Options.MaxLineBytes when it is zero: 1 MiB, as
// large as a streamed message may be (definition.DefaultMaxMessageBytes).
const DefaultMaxLineBytes = definition.DefaultMaxMessageBytes

// Options tune Read.
type Options struct {
	// Now is the clock, in Unix milliseconds, that event times are checked
	// against: an event more than the source's MaxFutureSkew after Now is
	// refused, as a push is. Required: the caller reads the clock once
	// (time.Now().UnixMilli()), so that every file of one import is judged
	// alike.
	Now int64
	// MaxLineBytes bounds a line of a CSV or JSON lines file, in bytes
	// (without its end of line). A longer line is a problem of its row,
	// skipped without being held in memory. 0 means DefaultMaxLineBytes.
	MaxLineBytes int
	// Progress, if set, is called as reading goes: every thousand rows or
	// so and once at the end, with done == total. done and total count
	// bytes of the file for CSV and JSON lines, rows for Parquet. It runs on
	// Read's goroutine, between calls of fn.
	Progress func(done, total int64)
}

// Problem is one thing wrong with one row of a file, or, from Read's
// error, with the file as a whole.
type Problem struct {
	File string
	// Row is the line number for CSV (the header is line 1) and JSON lines,
	// the row's index + 1 for Parquet; 0 for the file as a whole.
	Row int
	// Column is the column (field) at fault, "" when the row (or file) is.
	Column  string
	Message string
}

// Error writes "file:row:column: message", without the column when it is
// "", and as "file: column C: message" when the problem is not a row's.
func (p Problem) Error() string {
	switch {
	case p.Row > 0 && p.Column != "":
		return p.File + ":" + strconv.Itoa(p.Row) + ":" + p.Column + ": " + p.Message
	case p.Row > 0:
		return p.File + ":" + strconv.Itoa(p.Row) + ": " + p.Message
	case p.Column != "":
		return p.File + ": column " + p.Column + ": " + p.Message
	}
	return p.File + ": " + p.Message
}

// RowFunc receives the rows Read reads, in file order: the row's number
// (as Problem.Row) and either its event (problems empty) or its problems
// (ev nil). ev and problems are Read's, reused for the next row: keep
// neither past the call (the event's Values may be kept). An error stops
// Read, which returns it as it is.
type RowFunc func(row int, ev *event.Event, problems []Problem) error

// Read reads every row of the file at path as an event of src, a source of
// dec's project, calling fn once per row in file order. Its error is about
// the file as a whole, or fn's or ctx's: the file cannot be opened or is not
// of the format its extension says, a CSV header or Parquet schema does not
// fit src (a column src does not declare, no event-time column, no column
// for a key field, a Parquet column of a type that does not convert), or it
// is corrupt past some row. Errors about the header or schema come before
// the first call of fn; those that are about columns are Problems, joined
// (errors.Join) when there are several.
//
// Parquet columns convert to fields as follows: INT32 and INT64 (signed or
// unsigned integers) to int64, FLOAT and DOUBLE (and the integers) to
// float64, BYTE_ARRAY (STRING, ENUM, JSON or none) to string, BOOLEAN to
// bool. The event-time column may be INT64 epoch milliseconds, a TIMESTAMP
// of any unit (taken as UTC; finer units are cut to milliseconds), or a
// string as in CSV. A column may be required or optional; a null is null.
// Pages may be compressed with Snappy, gzip, Brotli or Zstd; LZ4 is
// refused (the Parquet library's LZ4 decoder cannot tell a damaged page).
func Read(ctx context.Context, path string, dec *eventjson.Decoder, src *definition.Source, opts Options, fn RowFunc) error {
	format, err := FormatOf(path)
	if err != nil {
		return err
	}
	if err := opts.check(); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err // names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s: is a directory; name the files to read", path)
	}
	r := newRows(ctx, path, dec, src, opts, fn)
	switch format {
	case CSV:
		return r.readCSV(f, st.Size())
	case JSONLines:
		return r.readJSONLines(f, st.Size())
	}
	return r.readParquet(f, st.Size())
}

func (o *Options) check() error {
	if o.Now <= 0 {
		return errors.New("eventfile: Options.Now is not set: pass the clock in Unix milliseconds")
	}
	if o.MaxLineBytes < 0 {
		return fmt.Errorf("eventfile: Options.MaxLineBytes is %d", o.MaxLineBytes)
	}
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	return nil
}

// progressRows is how many rows pass between checks of the context and
// reports of progress.
const progressRows = 1024

// rows is the state of reading one file: what a row is checked against,
// and the event and problems handed to fn, reused from row to row.
type rows struct {
	ctx  context.Context
	name string
	dec  *eventjson.Decoder
	src  *definition.Source
	opts Options
	fn   RowFunc
	// keys[i] says src.Fields[i] is a key field: never null.
	keys     []bool
	ev       event.Event
	problems []Problem
	// sinceCheck counts the rows since ctx and progress were looked at.
	sinceCheck int
	// lastProgress is the done last reported; -1 before the first report.
	lastProgress int64
}

func newRows(ctx context.Context, name string, dec *eventjson.Decoder, src *definition.Source, opts Options, fn RowFunc) *rows {
	return &rows{
		ctx: ctx, name: name, dec: dec, src: src, opts: opts, fn: fn,
		keys:         dec.KeyFields(src),
		lastProgress: -1,
		ev:           event.Event{Fields: make([]event.Value, len(src.Fields))},
	}
}

// problem notes a problem of the current row.
func (r *rows) problem(row int, column, msg string) {
	r.problems = append(r.problems, Problem{File: r.name, Row: row, Column: column, Message: msg})
}

// emit hands the current row to fn: ev when no problem was noted, else the
// problems, which it then forgets.
func (r *rows) emit(row int, ev *event.Event) error {
	var err error
	if len(r.problems) > 0 {
		err = r.fn(row, nil, r.problems)
		clear(r.problems) // keep no strings of the row alive
		r.problems = r.problems[:0]
	} else {
		err = r.fn(row, ev, nil)
	}
	return err
}

// tick is called once per row; every progressRows rows it reports
// progress (done of total, when done moved) and looks at the context.
func (r *rows) tick(done func() int64, total int64) error {
	if r.sinceCheck++; r.sinceCheck < progressRows {
		return nil
	}
	r.sinceCheck = 0
	r.progress(done(), total)
	return r.ctx.Err()
}

func (r *rows) progress(done, total int64) {
	if r.opts.Progress != nil && done != r.lastProgress {
		r.lastProgress = done
		r.opts.Progress(done, total)
	}
}

// finish reports the end of the file.
func (r *rows) finish(total int64) { r.progress(total, total) }

// fileError is a problem of the file as a whole (row 0 when it is not at
// a row).
func (r *rows) fileError(row int, column, msg string) error {
	return Problem{File: r.name, Row: row, Column: column, Message: msg}
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
