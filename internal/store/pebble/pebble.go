// Package pebble is the embedded online store: a store.Store kept in a
// Pebble (LSM key-value) database in one local directory.
//
// The package owns the directory it is given: the Pebble data files, the
// write-ahead log and the directory lock all live there, and nothing else
// should write into it. Only one process may open a directory at a time; a
// second Open of the same directory, from this process or another, fails
// until the first store is closed.
//
// Durability: Write commits the whole batch as one Pebble batch with a synced
// write-ahead log (concurrent writers share fsyncs through Pebble's group
// commit), so when Write returns nil the batch survives a process crash or a
// power loss, and a batch is never visible or recovered in part. Get reads
// the latest committed value of each key; it does not read all keys from one
// snapshot, so a Get that races a Write may see some keys from before it and
// some from after it, though once any key of a batch is visible, all of it
// is.
//
// Pebble's own logging goes to the Options.Logger: its informational messages
// at debug level and its errors at error level. When Pebble reports a fatal
// condition (such as on-disk corruption) the message is logged at error
// level and the store panics, as Pebble cannot go on safely.
package pebble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"syscall"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kiln-dev/kiln/internal/store"
)

// DefaultCacheBytes is the block cache size used when Options.CacheBytes is
// 0. The write path reads every row it does not hold in memory, one key at a
// time, and most of a large entity's rows are cold: a cache that holds the
// hot part of the store saves a disk read and a block decode per row (the
// RW1 store at S = 1 is about 300 MB). Memory is taken as blocks are read.
const DefaultCacheBytes = 512 << 20

// Options configures Open. The zero value is ready to use.
type Options struct {
	// CacheBytes is the size of Pebble's block cache, in bytes, which keeps
	// recently read data blocks in memory. 0 means DefaultCacheBytes (512 MiB).
	CacheBytes int64
	// Logger receives Pebble's log messages. nil discards them.
	Logger *slog.Logger
	// FS is the file system the store lives on. nil means the local disk;
	// tests may pass vfs.NewMem().
	FS vfs.FS
}

// Store is a store.Store on a Pebble database. It is safe for concurrent
// use. Make one with Open.
type Store struct {
	dir string

	// mu guards db and lock: Get and Write hold it for reading for as long
	// as they use db, Close holds it for writing while it closes db, and
	// sets db to nil, which marks the store closed.
	mu   sync.RWMutex
	db   *pebbledb.DB   // guarded by mu; nil once closed
	lock *pebbledb.Lock // guarded by mu; the directory lock, released by Close
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.LogKeeper = (*Store)(nil)
)

// Open opens the store in directory dir, creating the directory and an empty
// store if there is none. Close the store to release the directory.
func Open(dir string, opts Options) (*Store, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = DefaultCacheBytes
	}
	if cacheBytes < 0 {
		return nil, fmt.Errorf("store/pebble: CacheBytes is %d; it must be 0 (for the default) or more", cacheBytes)
	}

	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store/pebble: cannot create data directory %q (check the path and its permissions): %w", dir, err)
	}
	// Take the directory lock ourselves, rather than leave it to
	// pebble.Open, so that a lock conflict can be told apart from the other
	// errors of opening a database.
	lock, err := pebbledb.LockDirectory(dir, fsys)
	if err != nil {
		if isLockConflict(err) {
			return nil, fmt.Errorf("store/pebble: data directory %q is in use by another store (is another kiln serve running on this --data directory?): %w", dir, err)
		}
		return nil, fmt.Errorf("store/pebble: cannot lock data directory %q (check its permissions): %w", dir, err)
	}

	cache := pebbledb.NewCache(cacheBytes)
	// The DB takes its own reference to the cache; ours goes when Open does.
	defer cache.Unref()
	popts := &pebbledb.Options{
		FS:     fsys,
		Cache:  cache,
		Lock:   lock,
		Logger: slogLogger{logger.With("component", "pebble")},
		// New stores get the newest stable on-disk format; existing stores
		// are upgraded to it when opened.
		FormatMajorVersion: pebbledb.FormatNewest,
		// Most of what the write path writes soon goes away: its event
		// log is deleted at the next checkpoint (up to 32 MiB per
		// partition), and rows are rewritten whole. A memtable that holds
		// a whole checkpoint interval of log lets both die in memory
		// instead of being flushed and compacted (Pebble's default is
		// 4 MiB; 64 MiB gave 14 % fewer events per core in
		// BenchmarkPushRW1). Memory is taken as the memtable fills.
		MemTableSize: 256 << 20,
	}
	// Reads are point lookups: bloom filters let them skip the sstables
	// that cannot hold the key, which matters most for missing keys.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebbledb.Open(dir, popts)
	if err != nil {
		// The lock is ours until Open succeeds: a failed Open has already
		// dropped the reference it took, if any.
		_ = lock.Close()
		if pebbledb.IsCorruptionError(err) {
			return nil, fmt.Errorf("store/pebble: data in %q is corrupt; restore the directory from a backup or move it aside and rebuild the store: %w", dir, err)
		}
		return nil, fmt.Errorf("store/pebble: cannot open store in %q: %w", dir, err)
	}
	return &Store{dir: dir, db: db, lock: lock}, nil
}

// isLockConflict reports whether err, from pebble.LockDirectory, means that
// the lock is held by someone else, rather than that the lock file could not
// be made.
func isLockConflict(err error) bool {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		// Creating or opening the lock file failed.
		return false
	}
	// fcntl(F_SETLK) fails with EAGAIN or EACCES when another process holds
	// the lock (vfs.MemFS mimics EAGAIN); within one process Pebble's
	// vfs.Default refuses with an error of its own.
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// Get calls fn once per key, in order, with the value stored under keys[i]
// or with found == false when there is none. The value is Pebble's own
// memory, valid only during the call. fn must not call methods of this store:
// Get holds the store open while it runs, and a Close waiting for it would
// deadlock.
//
// Get checks ctx before each key and stops at the first key it finds ctx
// done, returning an error that wraps ctx.Err(). When Get returns an error, fn
// has been called for a prefix of the keys only.
func (s *Store) Get(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	db := s.db
	if db == nil {
		return store.ErrClosed
	}
	done := ctx.Done() // nil for a context that is never done
	for i, key := range keys {
		select {
		case <-done:
			return fmt.Errorf("store/pebble: get: %w", ctx.Err())
		default:
		}
		if err := getOne(db, i, key, fn); err != nil {
			return err
		}
	}
	return nil
}

// getOne looks up one key and calls fn with it, releasing Pebble's value
// after fn returns (or panics).
func getOne(db *pebbledb.DB, i int, key []byte, fn func(i int, value []byte, found bool)) (err error) {
	value, closer, err := db.Get(key)
	if err != nil {
		if errors.Is(err, pebbledb.ErrNotFound) {
			fn(i, nil, false)
			return nil
		}
		return fmt.Errorf("store/pebble: get key %d: %w", i, err)
	}
	defer func() {
		if cerr := closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store/pebble: get key %d: %w", i, cerr)
		}
	}()
	fn(i, value, true)
	return nil
}

// batchRecordOverhead bounds the bytes a Pebble batch spends on one Set
// beyond its key and value: a kind byte and two uvarint lengths.
const batchRecordOverhead = 1 + 2*5

// Write stores the batch atomically and durably: it returns once the batch
// is committed and the write-ahead log synced. Later pairs win over earlier
// pairs with the same key. An empty batch is a no-op. Write checks ctx before
// it commits; once the commit has started it runs to the end. Write does not
// keep batch or any of its slices.
func (s *Store) Write(ctx context.Context, batch []store.KV) error {
	return s.Apply(ctx, batch, store.Range{}, true)
}

// Apply stores the batch and deletes every key in del, as one atomic
// commit: after a crash either all of it is in the store or none of it is.
// An empty del deletes nothing. The batch's keys are written after the
// deletion, so a key both in del and in the batch ends up with its new
// value. With sync, Apply returns once the write-ahead log is synced; without
// it, the commit is durable only once a later synced commit returns (the log
// is written in order) or the store is closed. Apply checks ctx before it
// commits. It does not keep batch, del or their slices.
//
// The write path keeps its event log beside the rows this way: it appends
// the log with synced commits and, when it writes rows back, deletes the log
// those rows now hold in the same commit.
func (s *Store) Apply(ctx context.Context, batch []store.KV, del store.Range, sync bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	db := s.db
	if db == nil {
		return store.ErrClosed
	}
	if len(batch) == 0 && del.Empty() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/pebble: write: %w", err)
	}

	size := 12 + len(del.Start) + len(del.End) + batchRecordOverhead // the batch header and the deletion
	for _, kv := range batch {
		size += len(kv.Key) + len(kv.Value) + batchRecordOverhead
	}
	// Batches come from Pebble's pool and go back to it on Close; Close is
	// also right after Commit.
	b := db.NewBatchWithSize(size)
	defer b.Close()
	if !del.Empty() {
		if err := b.DeleteRange(del.Start, del.End, nil); err != nil {
			return fmt.Errorf("store/pebble: write: %w", err)
		}
	}
	for _, kv := range batch {
		if err := b.Set(kv.Key, kv.Value, nil); err != nil {
			return fmt.Errorf("store/pebble: write: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/pebble: write: %w", err)
	}
	opt := pebbledb.NoSync
	if sync {
		opt = pebbledb.Sync
	}
	if err := b.Commit(opt); err != nil {
		return fmt.Errorf("store/pebble: write: %w", err)
	}
	return nil
}

// Scan calls fn with every key in r and its value, in key order, until fn
// returns an error, which Scan returns. The key and value are valid only
// during the call. fn must not call methods of this store.
func (s *Store) Scan(ctx context.Context, r store.Range, fn func(key, value []byte) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	db := s.db
	if db == nil {
		return store.ErrClosed
	}
	it, err := db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: r.Start, UpperBound: r.End})
	if err != nil {
		return fmt.Errorf("store/pebble: scan: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return fmt.Errorf("store/pebble: scan: %w", err)
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), v)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store/pebble: scan: %w", err)
	}
	return nil
}

// Close waits for the Gets and Writes under way, then closes the database and
// releases the directory. Calls after the first return store.ErrClosed,
// Close included; it is safe to call Close concurrently with anything.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return store.ErrClosed
	}
	err := s.db.Close()
	s.db = nil
	if lerr := s.lock.Close(); lerr != nil {
		err = errors.Join(err, lerr)
	}
	s.lock = nil
	if err != nil {
		return fmt.Errorf("store/pebble: close %q: %w", s.dir, err)
	}
	return nil
}

// slogLogger adapts a slog.Logger to pebble.Logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Infof(format string, args ...any) {
	s.log(slog.LevelDebug, format, args)
}

func (s slogLogger) Errorf(format string, args ...any) {
	s.log(slog.LevelError, format, args)
}

// Fatalf logs and panics: Pebble calls it when it cannot go on (the default
// Pebble logger exits the process) and does not expect it to return.
func (s slogLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.l.Error(msg, "fatal", true)
	panic("store/pebble: fatal: " + msg)
}

func (s slogLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, fmt.Sprintf(format, args...))
}
