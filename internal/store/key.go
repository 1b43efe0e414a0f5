package store

import "github.com/cespare/xxhash/v2"

// KeyHash is the hash of a row key that every part of Kiln agrees on: the
// write path routes a key to its partition by it and finds the row in
// memory by it, and the read cache (rowcache) shards and indexes by it. It
// is xxhash.Sum64 (XXH64, seed 0) of the key. Whoever holds a key's hash
// already may hand it on instead of hashing again
// (rowcache.Cache.ChangedHashed), which is right only because all of them
// use KeyHash.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// ReservedPrefix begins every key of Kiln's own records in a store (the
// write path's event log) and never the key of a row: a row key begins
// with its view's name (tile.AppendKey), which is never empty and never
// begins with a 0 byte (a view name is a lower-case name, checked when the
// project is loaded). So Kiln's records can share a store with the rows
// and never meet one.
const ReservedPrefix = "\x00"

// Reserved reports whether key belongs to Kiln's own records rather than
// to a row: whether it begins with ReservedPrefix.
func Reserved(key []byte) bool {
	return len(key) >= len(ReservedPrefix) && string(key[:len(ReservedPrefix)]) == ReservedPrefix
}
