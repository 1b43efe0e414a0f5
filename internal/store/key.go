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
