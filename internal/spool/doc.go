// Package spool owns the way accepted events reach the event archive
// (package archive) exactly once: a journal on local disk that every push
// is written to, synced, before it is acknowledged, and a flusher that turns
// the journal's closed segments into archive batches.
//
// The journal is a directory of segment files, "seg-<number>.log", each a
// sequence of records: a 4-byte little-endian length, a 4-byte CRC-32C of
// the payload and the payload (one push: its source, its arrival time and
// its events, with their origins). Writers append records to the newest
// segment; concurrent appends share one write and one fsync (group commit).
// A segment is closed once it holds SegmentBytes or is FlushInterval old,
// and the flusher appends its events to the archive under the batch ID
// "<journal id>-<segment number>", writes the journal's state and only then
// deletes the segment.
//
// Why each event is archived once:
//
//   - An acknowledged event is in a synced segment. A crash before its
//     segment is archived leaves the segment on disk: Open archives it
//     again under the same batch ID, and archive.Append of the same batch
//     writes the same files with the same content. A crash after the
//     archive and before the deletion does the same, harmlessly.
//   - A crash during a write leaves at most a torn record at the end of the
//     newest segment. It was never acknowledged (the fsync had not
//     returned), and Open cuts it off.
//   - Events of a stream (a Kafka partition, a JetStream stream, an
//     imported file) carry their position in it. The journal remembers, per
//     stream, the highest position it holds, and passes over events at or
//     below it: a stream replayed after a restart, or a file imported
//     twice, is journaled once. Pushed events have no position of their
//     own: the journal numbers them, in the stream "push/<journal id>",
//     and never reuses a number.
//
// The journal's state file ("state.json", replaced atomically) records the
// highest position of every stream and the next push number, as of the
// segments already archived; Open adds what the remaining segments hold.
//
// A write or sync error makes the journal refuse every later append until
// the process restarts and Open has recovered what is on disk: after a
// failed fsync the file's content is unknown.
package spool
