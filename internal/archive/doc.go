// Package archive owns the event archive: every accepted event of a source,
// kept in append-only, immutable Parquet files, so that history survives the
// tiles, training sets can be built from it, and a changed view can be
// rebuilt. It is not yet wired into the write path.
//
// # Layout
//
// An Archive stores files in a Bucket (Dir for a local directory, Mem in
// memory, package s3bucket for an S3-compatible object store) under
//
//	source=<source name>/date=<YYYY-MM-DD>/<file>.parquet
//
// where the date is the UTC day of the events' event time. A file is written
// once and never changed; it is either
//
//   - "b-<batch ID>.parquet": the events of one Append on that date, or
//   - "c-<hash>.parquet": the result of a Compact of that date, the hash
//     (of the sorted names of the files it replaced) making the name unique.
//
// A row holds the source's fields, each an optional column of its type
// (int64 → INT64, float64 → DOUBLE, string → BYTE_ARRAY/UTF8, bool →
// BOOLEAN), and four required columns: event_time and arrival (INT64
// timestamps, Unix milliseconds, UTC), origin_stream (UTF8) and
// origin_offset (INT64). Parquet orders a group's columns by name. Rows
// within a file are in Scan's order. docs/archive.md describes the format
// for other tools.
//
// # Identity and exactly-once reading
//
// An event's identity is its Origin (origin_stream, origin_offset). Scan
// reads every file of a date and yields one event per origin, so neither
// a file written twice (a batch replayed under the same ID, which writes the
// same names with the same content), nor an event archived twice under
// different batch IDs (a stream replayed after a crash), nor a file that
// survives beside the compacted file that contains its events, ever makes
// an event appear twice. Of several copies of one origin Scan picks the one
// with the earliest arrival, then by the other columns: a choice that depends
// only on the set of copies, not on which files hold them, so Compact never
// changes what Scan yields.
//
// Crashes. Bucket.Put is atomic, so a crash leaves each file whole or
// absent. A crash inside Append leaves some of the batch's files: those
// events are readable (once each), the rest are not, until the caller
// appends the batch again. Compact writes the merged file before it deletes
// any input, so at every point every event is in at least one file, and
// dedupe hides the overlap; running Compact again finishes the job. Scan
// copes with a concurrent Compact: a file that vanishes between List and Get
// had its events written to a new file first, so Scan lists the date again.
// Retain deletes whole dates only; a crash part way leaves some files of an
// expired date, which the next Retain deletes (as it does a file that a
// Compact running at the same time writes into an expired date).
//
// # Schema changes
//
// Files are read by column name against the source as it is now: a field
// the file lacks (added since) reads as null; a column the source no longer
// has (removed) is ignored; a column whose type differs from the field's is
// an error naming the file and the column, as is a missing or mistyped fixed
// column. A source may not have a field named like a fixed column.
//
// # What the caller must do
//
//   - Give every event a unique Origin within its source, stable across
//     replays: the Kafka "topic/partition" and offset, the JetStream stream
//     and sequence, or for pushes an empty stream and the write path's own
//     sequence number, which must never be reused (it must survive
//     restarts). The same origin must always carry the same event time (its
//     date), or dedupe will not see the copies.
//   - Choose batch IDs deterministically from the batch (e.g. the partition
//     and its first sequence number, "p03-000000000123"), so a replay after a
//     crash rewrites the same files instead of adding new ones, and treat
//     events as archived only after Append returns nil; on an error, append
//     the same batch again with the same ID.
//   - Run Compact for dates that no longer receive events (e.g. yesterday),
//     and Retain as the retention policy says. Compact and Scan load a whole
//     date into memory.
package archive
