// Package store defines the online store: the place rows live between the
// write path and the read path. A backend (store/pebble for the embedded
// store, store/redis for Redis and Redis Cluster) implements Store;
// everything above it sees only this interface.
//
// A key is an opaque byte string made by the caller (see package tile for
// the row key layout); a value is an encoded row. The store never interprets
// either.
//
// A backend may also declare optional abilities, which callers discover
// with a type assertion, as database/sql/driver's optional interfaces are:
// ConditionalWriter (Redis) and LogKeeper (the embedded store). Keys that
// begin with ReservedPrefix belong to Kiln's own records, never to a row;
// KeyHash is the hash of a row key every part of Kiln agrees on.
package store

import (
	"context"
	"errors"
)

// Store is a batch key-value store.
type Store interface {
	// Get looks up keys and calls fn once per key, in order, with the value
	// stored under keys[i], or with found == false when there is none. The
	// value belongs to the store and is only valid during the call: fn must
	// not modify it, and must copy what it keeps.
	//
	// An error that wraps ErrUnavailable means the store could not be
	// reached or did not answer in time; the same Get may succeed later.
	Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
	// Write stores every pair of the batch. Each pair (a row) is applied
	// atomically: a reader sees a key's old value or its new one, never a
	// mix. Backends that can apply the whole batch atomically do so (Pebble,
	// and Redis on a single server), so that a reader never sees part of a
	// batch; a batch that spans hash slots of a Redis Cluster is applied row
	// by row, and readers may see part of it while Write runs. Later pairs
	// win over earlier pairs with the same key.
	//
	// When Write returns nil the whole batch is stored, as durably as the
	// backend promises (Pebble syncs its log first; Redis replicates
	// asynchronously, so a failover can lose acknowledged writes: see
	// store/redis). When it returns an error the caller must assume that any
	// subset of the batch was applied, none or all included; writing the same
	// batch again is always safe. An error that wraps ErrUnavailable is
	// retryable. Write does not retain the batch or its slices.
	Write(ctx context.Context, batch []KV) error
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// ConditionalWriter is a Store that several processes may write at once
// and that can write a row only over the value a writer last saw (Redis:
// store/redis). The write path writes through it when the store has it, so
// that two writers of one row never lose each other's update.
type ConditionalWriter interface {
	// WriteIf writes each row of batch only if the store still holds the
	// row's Old value (or no row, when Old is nil), atomically per row,
	// and calls conflict(i) for each row i it did not write because
	// another writer had changed it. Rows are independent: some may be
	// written while others conflict. An error has the meaning of
	// Store.Write's: any subset of the batch may have been written.
	WriteIf(ctx context.Context, batch []CondKV, conflict func(i int)) error
}

// LogKeeper is a Store that can keep a log beside its rows: it commits a
// batch of rows together with the deletion of a key range, atomically, and
// scans a key range (the embedded store: store/pebble). The write path
// keeps its event log this way (write-behind) when the store has it, under
// keys that begin with ReservedPrefix.
type LogKeeper interface {
	// Apply stores the batch and deletes every key in del, as one atomic
	// commit: after a crash either all of it is in the store or none of
	// it is. The batch's keys are written after the deletion. With sync,
	// Apply returns once the commit is durable; without it, the commit
	// is durable once a later synced commit returns or the store is
	// closed. Apply does not keep batch, del or their slices.
	Apply(ctx context.Context, batch []KV, del Range, sync bool) error
	// Scan calls fn with every key in r and its value, in key order,
	// until fn returns an error, which Scan returns. The key and value
	// are valid only during the call; fn must not call the store.
	Scan(ctx context.Context, r Range, fn func(key, value []byte) error) error
}

// KV is one key and value of a write batch.
type KV struct {
	Key, Value []byte
}

// Range is the keys from Start (included) to End (excluded). The zero
// Range is empty.
type Range struct {
	Start, End []byte
}

// Empty reports whether r holds no key.
func (r Range) Empty() bool { return string(r.Start) >= string(r.End) }

// CondKV is one row of a conditional write: Value replaces Old, the value
// the writer last read or wrote under Key (nil: the writer saw no row).
type CondKV struct {
	Key, Value, Old []byte
}

// ErrConflict is wrapped by errors reporting rows that another writer
// changed since the caller read them.
var ErrConflict = errors.New("store: row changed by another writer")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrUnavailable is wrapped by the errors of calls that failed because the
// store could not be reached or did not answer in time (a connection
// refused or lost, a timeout, a cluster failing over). Such a call is
// retryable: the API answers it with a retryable status. Errors caused by
// the caller's own context ending wrap ctx.Err() instead.
var ErrUnavailable = errors.New("store: unavailable (retryable): the store could not be reached or timed out")
