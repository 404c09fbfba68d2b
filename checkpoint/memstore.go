package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemStore is a Store in memory, for tests and for the `mem://` URL. It is
// safe for concurrent use.
type MemStore struct {
	mu   sync.Mutex
	objs map[string]memObject
	name string
}

type memObject struct {
	data     []byte
	modified time.Time
}

// NewMemStore returns an empty in-memory store; name appears in messages.
func NewMemStore(name string) *MemStore {
	return &MemStore{objs: map[string]memObject{}, name: name}
}

func (m *MemStore) String() string { return "mem://" + m.name }

func (m *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	var buf bytes.Buffer
	if size >= 0 {
		buf.Grow(int(size))
	}
	n, err := io.Copy(&buf, ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("put %s: read %d bytes, expected %d", key, n, size)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = memObject{data: buf.Bytes(), modified: time.Now()}
	return nil
}

func (m *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %s: %w", m, key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func (m *MemStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return ObjectInfo{}, fmt.Errorf("%s: %s: %w", m, key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: int64(len(o.data)), Modified: o.modified}, nil
}

func (m *MemStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ObjectInfo
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, ObjectInfo{Key: k, Size: int64(len(o.data)), Modified: o.modified})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, nil
}

func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

// Corrupt flips one byte of an object in place (for tests of verification).
func (m *MemStore) Corrupt(key string, at int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok || at >= len(o.data) {
		return false
	}
	d := append([]byte(nil), o.data...)
	d[at] ^= 0xff
	m.objs[key] = memObject{data: d, modified: time.Now()}
	return true
}

// ctxReader stops a copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// checkKey refuses keys a store could misread: empty, absolute, with
// empty, "." or ".." segments, or with a backslash or NUL.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("invalid object key %q: want a relative slash-separated path", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid object key %q: empty, \".\" or \"..\" segment", key)
		}
	}
	return nil
}
