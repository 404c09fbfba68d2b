package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/megha-ml/megha/checkpoint"
)

// ErrInjected is the error a FailingStore fails with unless told another.
var ErrInjected = errors.New("storetest: injected store failure")

// FailingStore wraps a Store, counts the Puts it passes on, and fails
// Puts on demand: after a number of successful Puts, and/or after a
// number of bytes of a Put (the wrapped store then sees its reader fail,
// as with a connection cut mid-upload, and keeps the old object). Other
// methods pass through. It is safe for concurrent use; its settings may
// change while Puts run.
type FailingStore struct {
	checkpoint.Store

	mu         sync.Mutex
	okLeft     int   // Puts that may still succeed; < 0: no limit
	bytesLimit int64 // bytes a Put may read before failing; < 0: no limit
	err        error
	puts       map[string]int
	bytes      map[string]int64
	totalPuts  int
	failedPuts int
	totalBytes int64
}

// NewFailingStore wraps s; it fails nothing until told to.
func NewFailingStore(s checkpoint.Store) *FailingStore {
	return &FailingStore{Store: s, okLeft: -1, bytesLimit: -1, puts: map[string]int{}, bytes: map[string]int64{}}
}

// FailPutsAfter makes every Put after the next n successful ones fail
// with err (ErrInjected if nil) before reaching the wrapped store; n < 0
// lifts the limit.
func (f *FailingStore) FailPutsAfter(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.okLeft, f.err = n, err
}

// FailBytesAfter makes every Put fail with err (ErrInjected if nil) once
// the wrapped store has read n bytes of it; objects of at most n bytes
// are stored as usual. n < 0 lifts the limit.
func (f *FailingStore) FailBytesAfter(n int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytesLimit, f.err = n, err
}

// Puts returns how many times Put was called for key, failed or not.
func (f *FailingStore) Puts(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts[key]
}

// Bytes returns how many bytes the wrapped store read from Puts of key.
func (f *FailingStore) Bytes(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes[key]
}

// Totals returns how many Puts were called, how many failed (injected or
// not) and how many bytes the wrapped store read, over all keys.
func (f *FailingStore) Totals() (puts, failed int, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.totalPuts, f.failedPuts, f.totalBytes
}

// Put passes the Put on unless told to fail it (see FailingStore).
func (f *FailingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	f.mu.Lock()
	f.puts[key]++
	f.totalPuts++
	injected := f.err
	if injected == nil {
		injected = ErrInjected
	}
	if f.okLeft == 0 {
		f.failedPuts++
		f.mu.Unlock()
		return fmt.Errorf("%s: put %s: %w", f, key, injected)
	}
	// Reserve one of the successes now, so that concurrent Puts cannot
	// overshoot the limit; a failed Put gives it back.
	reserved := f.okLeft > 0
	if reserved {
		f.okLeft--
	}
	limit := f.bytesLimit
	f.mu.Unlock()

	cr := &countingReader{f: f, key: key, r: r, limit: limit, err: injected}
	err := f.Store.Put(ctx, key, cr, size)
	if err != nil {
		f.mu.Lock()
		f.failedPuts++
		if reserved && f.okLeft >= 0 {
			f.okLeft++
		}
		f.mu.Unlock()
	}
	return err
}

// countingReader counts what the wrapped store reads and fails past limit.
type countingReader struct {
	f     *FailingStore
	key   string
	r     io.Reader
	n     int64
	limit int64
	err   error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit >= 0 {
		if c.n >= c.limit {
			// At the limit: fail only if there is more to read.
			var b [1]byte
			if k, err := c.r.Read(b[:]); k == 0 && err == io.EOF {
				return 0, io.EOF
			}
			return 0, c.err
		}
		if int64(len(p)) > c.limit-c.n {
			p = p[:c.limit-c.n]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.f.mu.Lock()
	c.f.bytes[c.key] += int64(n)
	c.f.totalBytes += int64(n)
	c.f.mu.Unlock()
	return n, err
}

// SlowStore wraps a Store and delays it: PerOp before every call, and
// PerByte for every byte a Put reads or a Get's reader returns. Delays end
// early, with the context's error, when the context of the call is done.
// Set the fields before use.
type SlowStore struct {
	checkpoint.Store
	PerOp   time.Duration
	PerByte time.Duration
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Put delays, then passes the Put on with a slowed reader.
func (s *SlowStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := sleep(ctx, s.PerOp); err != nil {
		return err
	}
	return s.Store.Put(ctx, key, &slowReader{ctx: ctx, r: r, perByte: s.PerByte}, size)
}

// Get delays, then returns a slowed reader.
func (s *SlowStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := sleep(ctx, s.PerOp); err != nil {
		return nil, err
	}
	rc, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&slowReader{ctx: ctx, r: rc, perByte: s.PerByte}, rc}, nil
}

// Stat delays, then passes the call on.
func (s *SlowStore) Stat(ctx context.Context, key string) (checkpoint.ObjectInfo, error) {
	if err := sleep(ctx, s.PerOp); err != nil {
		return checkpoint.ObjectInfo{}, err
	}
	return s.Store.Stat(ctx, key)
}

// List delays, then passes the call on.
func (s *SlowStore) List(ctx context.Context, prefix string) ([]checkpoint.ObjectInfo, error) {
	if err := sleep(ctx, s.PerOp); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, prefix)
}

// Delete delays, then passes the call on.
func (s *SlowStore) Delete(ctx context.Context, key string) error {
	if err := sleep(ctx, s.PerOp); err != nil {
		return err
	}
	return s.Store.Delete(ctx, key)
}

// slowReader sleeps perByte for every byte it returns.
type slowReader struct {
	ctx     context.Context
	r       io.Reader
	perByte time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if serr := sleep(s.ctx, time.Duration(n)*s.perByte); serr != nil {
		return n, serr
	}
	return n, err
}
