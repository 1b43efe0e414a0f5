// Package store defines the online store: the place rows live between the
// write path and the read path. A backend (store/pebble for the embedded
// store; later Redis) implements Store; everything above it sees only this
// interface.
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
	// value is only valid during the call: fn must copy what it keeps.
	Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error
	// Write stores every pair of the batch atomically and durably: when it
	// returns nil, all of the batch survives a crash; a batch is never
	// applied in part. When it returns an error the batch was applied whole
	// or not at all, and the caller cannot tell which; writing the same batch
	// again is always safe. Write does not retain the batch or its slices.
	Write(ctx context.Context, batch []KV) error
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// KV is one key and value of a write batch.
type KV struct {
	Key, Value []byte
}

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store: closed")
