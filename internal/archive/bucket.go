package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ErrNotExist is returned (wrapped) by Bucket.Get for a name that does not
// exist.
var ErrNotExist = fs.ErrNotExist

// Object is a listed object: its name and size in bytes.
type Object struct {
	Name string
	Size int64
}

// Bucket is where the archive's files live: a flat namespace of immutable
// objects named by slash-separated paths, like an object store.
//
// Put must be atomic: once it returns nil the whole object is visible to Get
// and List, and after a crash the object either exists whole or not at all.
// Put over an existing name replaces it (the archive only ever rewrites a
// name with the same content). Get of a missing name returns an error that
// wraps ErrNotExist. List returns every object whose name starts with
// prefix, sorted by name.
// Delete of a missing name is not an error.
type Bucket interface {
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]Object, error)
	Delete(ctx context.Context, name string) error
}

// checkName refuses names a Bucket does not store: empty, absolute, with
// empty, "." or ".." components, or with a component starting with "." (the
// directory backend's temporary files).
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return fmt.Errorf("archive: bad object name %q", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || strings.HasPrefix(c, ".") {
			return fmt.Errorf("archive: bad object name %q", name)
		}
	}
	return nil
}

// Dir is a Bucket in a local directory: an object is a file at the object's
// path under the root. Put writes a temporary file beside the target
// (named ".tmp-*", which List never returns), syncs it, renames it into place
// and syncs the directory, so a crash leaves the old state or the new one.
// Delete removes a date's directory when it becomes empty.
type Dir struct {
	root string
}

// NewDir returns the Bucket in directory root, creating it if needed.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &Dir{root: root}, nil
}

func (d *Dir) path(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

// Put writes data at name atomically.
func (d *Dir) Put(ctx context.Context, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := d.path(name)
	dir := filepath.Dir(p)
	var err error
	// A concurrent Delete may remove the (empty) directory between MkdirAll
	// and CreateTemp; try again a few times.
	for range 3 {
		if err = d.put(dir, p, data); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("archive: put %s: %w", name, err)
	}
	return nil
}

func (d *Dir) put(dir, p string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Get reads the object name.
func (d *Dir) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.path(name))
	if err != nil {
		return nil, fmt.Errorf("archive: get %s: %w", name, err)
	}
	return b, nil
}

// List returns the objects under the root whose names start with prefix,
// sorted.
func (d *Dir) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Walk the deepest directory the prefix names whole.
	dir := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	}
	start := d.root
	if dir != "" {
		start = d.path(dir)
	}
	var objs []Object
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking, or no such prefix
			}
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && p != start {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			if err != nil {
				return err
			}
			objs = append(objs, Object{Name: name, Size: info.Size()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: list %q: %w", prefix, err)
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Name, b.Name) })
	return objs, nil
}

// Delete removes the object name, and its directory if that is left empty
// (but never the root).
func (d *Dir) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := d.path(name)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive: delete %s: %w", name, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive: delete %s: %w", name, err)
	}
	// Remove empty parents up to the root; a non-empty one stops it.
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if os.Remove(d.path(dir)) != nil {
			break
		}
	}
	return nil
}

// Mem is a Bucket in memory, for tests and for callers that archive nowhere
// durable. It is safe for concurrent use.
type Mem struct {
	mu      sync.Mutex
	objects map[string][]byte
}

// NewMem returns an empty in-memory Bucket.
func NewMem() *Mem { return &Mem{objects: map[string][]byte{}} }

// Put stores a copy of data at name.
func (m *Mem) Put(ctx context.Context, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[name] = bytes.Clone(data)
	return nil
}

// Get returns a copy of the object name.
func (m *Mem) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[name]
	if !ok {
		return nil, fmt.Errorf("archive: get %s: %w", name, ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// List returns the objects whose names start with prefix, sorted.
func (m *Mem) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var objs []Object
	for n, b := range m.objects {
		if strings.HasPrefix(n, prefix) {
			objs = append(objs, Object{Name: n, Size: int64(len(b))})
		}
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Name, b.Name) })
	return objs, nil
}

// Delete removes the object name.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, name)
	return nil
}
