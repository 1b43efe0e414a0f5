// Package store defines the online store: the place rows live between the
// write path and the read path. A backend (store/pebble for the embedded
// store, store/redis for Redis and Redis Cluster) implements Store;
// everything above it sees only this interface.
//
// A key is an opaque byte string made by the caller (see package tile for
// the row key layout); a value is an encoded row. The store never interprets
// either.
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
