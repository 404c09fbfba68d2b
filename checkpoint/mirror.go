package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// mirror is a Store that keeps the same objects in several stores.
type mirror struct {
	stores []Store
}

// NewMirror returns a Store that writes every object to all of stores and
// reads from the first that has it. It panics if stores is empty.
//
// Put streams the object to all stores at once and fails if any of them
// fails, so an object, and in particular a manifest written last, counts
// as committed only when it is on all of them. A failed Put may still have
// completed on some stores (each store's Put stays all or nothing); a
// retry overwrites those copies.
//
// Get and Stat try the stores in order and return the first success;
// they report ErrNotFound only if no store has the object. List asks only
// the first store, Delete all of them.
func NewMirror(stores ...Store) Store {
	if len(stores) == 0 {
		panic("checkpoint: NewMirror of no stores")
	}
	return &mirror{stores: append([]Store(nil), stores...)}
}

// String joins the stores' names with " + ".
func (m *mirror) String() string {
	names := make([]string, len(m.stores))
	for i, s := range m.stores {
		names[i] = s.String()
	}
	return strings.Join(names, " + ")
}

// Put copies r once, through one pipe per store, to Puts running in
// parallel. The first failure cancels the others.
func (m *mirror) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	readers := make([]*io.PipeReader, len(m.stores))
	writers := make([]io.Writer, len(m.stores))
	pipes := make([]*io.PipeWriter, len(m.stores))
	for i := range m.stores {
		readers[i], pipes[i] = io.Pipe()
		writers[i] = pipes[i]
	}

	errs := make([]error, len(m.stores))
	var wg sync.WaitGroup
	for i, s := range m.stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(ctx, key, readers[i], size)
			if errs[i] != nil {
				cancel()
			}
			// Unblock the copy if this store stopped reading early.
			readers[i].CloseWithError(errStoreDone)
		}()
	}

	// A write to a pipe returns once its store has read the bytes, so the
	// copy runs at the pace of the slowest store and buffers nothing.
	_, cerr := io.Copy(io.MultiWriter(writers...), ctxReader{ctx, r})
	for _, p := range pipes {
		p.CloseWithError(cerr) // nil: a clean EOF
	}
	wg.Wait()

	// Report the failures that caused the others: not the stores we
	// stopped (errStoreDone, or our cancel when the caller did not cancel).
	var failed, knockOn []error
	for i, err := range errs {
		if err == nil {
			continue
		}
		err = fmt.Errorf("%s: %w", m.stores[i], err)
		if errors.Is(err, errStoreDone) || (errors.Is(err, context.Canceled) && parent.Err() == nil) {
			knockOn = append(knockOn, err)
		} else {
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		failed = knockOn
	}
	if len(failed) == 0 && cerr != nil {
		failed = append(failed, cerr) // the source failed and no store noticed
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: put %s: %w", m, key, errors.Join(failed...))
	}
	return nil
}

// errStoreDone closes a store's pipe once its Put has returned.
var errStoreDone = errors.New("checkpoint: mirror: store finished reading")

// Get returns the object from the first store that has it.
func (m *mirror) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var errs []error
	for _, s := range m.stores {
		rc, err := s.Get(ctx, key)
		if err == nil {
			return rc, nil
		}
		errs = append(errs, err)
	}
	return nil, m.readError(key, errs)
}

// Stat describes the object in the first store that has it.
func (m *mirror) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	var errs []error
	for _, s := range m.stores {
		info, err := s.Stat(ctx, key)
		if err == nil {
			return info, nil
		}
		errs = append(errs, err)
	}
	return ObjectInfo{}, m.readError(key, errs)
}

// readError is ErrNotFound if every store said so, else the other errors:
// a store that could not answer might have had the object.
func (m *mirror) readError(key string, errs []error) error {
	var other []error
	for _, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			other = append(other, err)
		}
	}
	if len(other) == 0 {
		return fmt.Errorf("%s: %s: %w", m, key, ErrNotFound)
	}
	return fmt.Errorf("%s: %s: no store had it and some could not be asked: %w", m, key, errors.Join(other...))
}

// List lists the first store, which holds everything a successful Put wrote.
func (m *mirror) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	return m.stores[0].List(ctx, prefix)
}

// Delete removes the object from every store.
func (m *mirror) Delete(ctx context.Context, key string) error {
	var errs []error
	for _, s := range m.stores {
		if err := s.Delete(ctx, key); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: delete %s: %w", m, key, errors.Join(errs...))
	}
	return nil
}
