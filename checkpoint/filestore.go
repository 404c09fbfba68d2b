package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// tempPrefix starts the name of every file a FileStore is still writing.
// List, Get and Stat never show such files, and keys may not contain a
// segment that starts with it.
const tempPrefix = ".tmp-"

// FileStore is a Store in a local directory, one file per object: key
// "a/b/c" is the file DIR/a/b/c. It is safe for concurrent use, also by
// several processes sharing the directory.
//
// A Put writes a temporary file next to its target, fsyncs it, renames it
// into place and fsyncs the directory, so a reader sees the old object or
// the new one, never part of one, and a Put that returned is on disk. A
// writer killed mid-Put leaves only a temporary file, which List ignores,
// a later Put of the same key does not notice, and CleanTemp removes.
//
// Because a file cannot also be a directory, a FileStore cannot hold both
// "a/b" and "a/b/c"; the checkpoint layout never needs both.
type FileStore struct {
	dir string
}

// fsWrite writes to a temporary object file. Tests replace it to simulate
// a full or failing disk.
var fsWrite = (*os.File).Write

// NewFileStore returns a store in dir, created if missing. A relative dir
// is resolved against the working directory now, so a later chdir does
// not move the store.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("file store: empty directory: write file://./DIR or file:///ABSOLUTE/DIR")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file store %s: %w", dir, err)
	}
	s := &FileStore{dir: abs}
	if err := s.mkdirs(abs); err != nil {
		return nil, s.writeError("creating the store directory", err)
	}
	return s, nil
}

// Dir returns the store's absolute directory.
func (s *FileStore) Dir() string { return s.dir }

// String returns "file://" followed by the store's absolute directory.
func (s *FileStore) String() string { return "file://" + s.dir }

// Put stores size bytes from r under key atomically (see FileStore). A
// negative size means "whatever r holds".
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	f, err := s.createTemp(dir, filepath.Base(path))
	if err != nil {
		return s.putError(key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	src := io.Reader(ctxReader{ctx, r})
	if size >= 0 {
		// One byte more than promised is enough to tell a longer reader.
		src = io.LimitReader(src, size+1)
	}
	n, err := io.Copy(fileWriter{f}, src)
	if err != nil {
		return s.putError(key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%s: put %s: read %d bytes, expected %d", s, key, n, size)
	}
	if err := f.Sync(); err != nil {
		return s.putError(key, err)
	}
	if err := f.Close(); err != nil {
		return s.putError(key, err)
	}
	// Last chance to honour a cancellation: after the rename the Put is done.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return s.putError(key, err)
	}
	if err := syncDir(dir); err != nil {
		return s.putError(key, err)
	}
	return nil
}

// createTemp creates a temporary file for base in dir, creating dir first.
// A concurrent Delete may remove dir once it is empty, between our mkdir
// and our create; then we simply make it again.
func (s *FileStore) createTemp(dir, base string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		if err := s.mkdirs(dir); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(dir, tempPrefix+base+"-*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 5 {
			return f, err
		}
	}
}

// mkdirs creates dir and its missing parents, fsyncing each parent after
// creating a child in it so that the new directories survive a crash.
func (s *FileStore) mkdirs(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := s.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// Get opens the object under key.
func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, s.readError("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, s.readError("get", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	}
	return f, nil
}

// Stat describes the object under key.
func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := s.checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("%s: stat %s: %w", s, key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return ObjectInfo{}, s.readError("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// List returns the objects whose keys start with prefix, sorted by key. It
// walks only the directory that holds every such key: for "a/b/c" that is
// DIR/a/b, for "a/b/" DIR/a/b.
func (s *FileStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
		if err := checkKey(base); err != nil {
			return nil, fmt.Errorf("%s: list: invalid prefix %q: %w", s, prefix, err)
		}
	}
	if strings.ContainsAny(prefix, "\\\x00") {
		return nil, fmt.Errorf("%s: list: invalid prefix %q: backslash or NUL", s, prefix)
	}
	root := s.dir
	if base != "" {
		root = s.path(base)
	}
	var out []ObjectInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Descend only into directories that can hold matching keys.
			if p == root || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return fs.SkipDir
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, nil
}

// Delete removes the object under key and then the directories it leaves
// empty (up to the store's directory), so that stores that keep many
// rounds do not collect empty directories.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %s: %w", s, key, err)
	}
	path := s.path(key)
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil // a "directory" key holds no object
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return s.writeError("deleting "+key, err)
	}
	// Removing a non-empty directory fails, which is what stops us.
	for dir := filepath.Dir(path); dir != s.dir && strings.HasPrefix(dir, s.dir); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// CleanTemp removes the temporary files that writers killed mid-Put left
// behind, if they are older than age (so that Puts still under way, maybe
// in another process, are spared). It returns how many it removed.
func (s *FileStore) CleanTemp(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	n := 0
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("%s: removing temporary files: %w", s, err)
	}
	return n, nil
}

// checkKey applies checkKey and refuses keys the store keeps for itself.
func (s *FileStore) checkKey(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, tempPrefix) {
			return fmt.Errorf("%s: invalid object key %q: segments starting with %q are the store's temporary files", s, key, tempPrefix)
		}
	}
	return nil
}

func (s *FileStore) path(key string) string {
	return filepath.Join(s.dir, filepath.FromSlash(key))
}

// readError turns a failed open or stat into ErrNotFound where the object
// simply is not there (also when a parent of it is a file).
func (s *FileStore) readError(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	}
	return fmt.Errorf("%s: %s %s: %w", s, op, key, err)
}

func (s *FileStore) putError(key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s: put %s: a parent of the key is an object, and a file store cannot hold both \"a/b\" and \"a/b/c\": %w", s, key, err)
	}
	return s.writeError("writing "+key, err)
}

// writeError says what went wrong in words an operator can act on: a full
// disk, a read-only file system, missing permissions. what is "writing
// KEY" or similar.
func (s *FileStore) writeError(what string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("checkpoint store %s: disk full %s: free space or point checkpoint.store elsewhere: %w", s.dir, what, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("checkpoint store %s: read-only file system %s: remount it read-write or point checkpoint.store elsewhere: %w", s.dir, what, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("checkpoint store %s: permission denied %s: give the user running megha write access to the directory or point checkpoint.store elsewhere: %w", s.dir, what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %s: %w", s, what, err)
	}
	return fmt.Errorf("checkpoint store %s: %s: %w", s.dir, what, err)
}

// fileWriter writes through fsWrite and hides (*os.File).ReadFrom, so
// that every byte goes through the seam.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) { return fsWrite(w.f, p) }

// syncDir fsyncs a directory so that a rename or create in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems cannot fsync a directory; the rename still holds.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}
