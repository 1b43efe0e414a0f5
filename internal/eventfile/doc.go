// Package eventfile reads a source's events from files — Parquet, CSV and
// JSON lines — checking every row exactly as the push API checks a pushed
// event (package eventjson): field types, key fields, the event time
// (epoch milliseconds or RFC 3339, the source's min_event_time, its
// max_future_skew past a clock the caller passes), unknown columns, and no
// NaN or infinity. A problem is worded as the push API words it, and placed
// at its file, row and column.
//
// Read streams one file, in file order, and calls the caller once per row
// with either a valid event or that row's problems; what to do with a bad
// row (stop, skip, count) is the caller's choice. Problems of the file as a
// whole — it cannot be opened, is not of its format, its header or schema
// does not fit the source — are Read's error, found before the first row
// where the format allows. Memory stays bounded whatever the file holds: a
// CSV or JSON line longer than Options.MaxLineBytes is a problem of its row,
// read past without being kept.
//
// Per format (FormatOf chooses by extension):
//
//   - CSV: a header row names the columns, which map to the source's fields
//     by name; an empty cell is null. Values are read by
//     eventjson.Decoder.ParseText, the event time by eventjson.EventTime.
//   - JSON lines: one event object per line, exactly one element of a
//     push's "events", read by eventjson.Decoder.DecodeEvent. Blank lines
//     are skipped.
//   - Parquet: flat columns map to fields by name; a column's type must
//     convert to its field's without loss (see Read), or the file is
//     refused before any row is read. Nulls are null.
package eventfile
