// Package rowcache is the read path's in-process cache of encoded rows: a
// bounded, sharded map from a row key to the row's bytes, or to the fact that
// the store has no such row (a cached absence — most candidate entities of a
// ranking request have no row, and asking the store again for each of them
// would cost as much as the rows that exist).
//
// Keys and values are opaque byte strings. The cache copies what it is given
// and owns its memory: Set and loads copy their bytes in, and callers never
// hold cache memory past a callback.
//
// # Who calls what
//
// The read path calls Load (or Get, for a look at memory only). Load answers
// hits from memory and sends the misses to one call of the caller's load
// function — normally the store's multi-get (store.Store.Get has the right
// shape) — and caches what it returns. Concurrent loads of the same key are
// coalesced: a key being loaded by one goroutine is waited for, not loaded
// again. ReadThrough wraps a cache and a store into something with the store's Get
// contract, for the query engine; its GetUnordered (LoadUnordered) drops the
// order, so the cached rows can be handed out while the store is read for the
// others.
//
// The write path calls Update (or Set) right after a row's store write
// commits, with the row's new bytes, and Delete when it cannot tell what the
// store holds (a failed write). Update refreshes a row the cache holds and
// otherwise only stops loads in flight from filling an old value, so writes
// do not crowd the rows readers use out of the cache. For one key, these
// must be called in the order the store committed the writes — Kiln's
// single writer per partition does that.
//
// # Freshness
//
// A value served from memory is never older than what the cache was told:
//
//   - A Load that waited for another's load of a key reads the key's entry
//     once that load has filled the cache, with the freshness checks of a
//     hit; if the entry is gone (the fill lost to a write, was too old, or
//     was evicted), it loads the key itself.
//   - A fill (the result of a load) loses to any Set or Delete of its key that
//     happened after the load began: the Set's value stays, the fill is
//     dropped (Stats.FillsDropped). Each key being loaded is registered
//     before the load function is called; Set and Delete mark the
//     registration stale and detach it, so later readers start a new load
//     instead of waiting for the old one (Update does the same). Hence: once
//     Set(k, v) or Update(k, v) has returned, every Get or Load that starts
//     afterwards sees v or a newer value (after Update, by loading it).
//   - With Options.MaxAge > 0 an entry is served only while
//     now − stamp ≤ MaxAge, where the stamp of a fill is the time its load
//     began (before the store was read — conservative) and the stamp of a Set
//     is the time of the Set. Older entries are misses. Use MaxAge when some
//     writes reach the store without passing through this process's Set (the
//     scale-out mode, where ingest runs elsewhere); leave it 0 when every
//     write goes through Set (the embedded mode).
//   - With MaxAge > 0, a Load's hit on an entry older than half of MaxAge
//     has the row read again in the background (Stats.Refreshed), once per
//     entry until it is put anew, at most a few such reads at a time. A row
//     read often then stays in memory instead of expiring under its readers,
//     each of whom would wait for the store. The refill is an ordinary
//     flight: stamped when its read began, losing to any Set or Delete that
//     races it, and waited for by readers that miss the row meanwhile.
//
// # Memory
//
// Options.MaxBytes bounds the sum over entries of len(key) + len(value) +
// EntryOverheadBytes (the entry record, its index slot and bookkeeping). Each
// of the Options.Shards shards gets an equal part of the budget and evicts
// on its own, so Stats.Bytes never exceeds MaxBytes. An entry bigger than a
// quarter of its shard's part is not cached (Stats.Oversize). Memory held by
// loads in flight and by Load's per-call scratch is not counted.
//
// Eviction is CLOCK (second chance) per shard: a hit sets the entry's
// reference bit; the hand, looking for room, clears set bits and evicts the
// first entry whose bit is already clear. Recently read rows survive a scan
// of cold ones.
//
// # Memos
//
// A reader that derives the same thing from a row on every read — the query
// engine evaluates the row's windows — can keep the result with the row:
// LoadMemo (ReadThrough.GetMemo) hands each row out with its memo and keeps the
// memo the reader returns (see MemoFunc). A memo lives at the end of the
// entry's buffer and is accounted with it. It is dropped whenever the row's
// bytes change, and only then: a Set, Update or refill with exactly the bytes
// the cache holds moves the entry's stamp and keeps its memo, so a hot row
// refreshed every MaxAge keeps its memo for as long as it does not change. An
// expired entry therefore stays in place (a miss) until its refill replaces
// it or eviction takes it.
//
// # Concurrency
//
// All methods are safe for concurrent use. Each shard has its own mutex;
// keys are spread over shards by store.KeyHash. Callbacks given to Get and Load run
// while the key's shard is locked (for hits) or after the load (for misses):
// they must be quick, must not keep the value past their return, and must not
// call back into the cache.
package rowcache
