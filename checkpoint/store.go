// Package checkpoint saves and restores training state in object storage:
// a manifest plus content-addressed chunks, written asynchronously and read
// back verified. It knows nothing of Raft or jobs' lifecycles; the worker
// calls it, and the coordinator records what it reports.
//
// Layout of one job's checkpoints in a store:
//
//	jobs/<job>/chunks/<sha256>                 content-addressed chunk, shared by every checkpoint of the job
//	jobs/<job>/ckpt/<round>/manifest.json      the checkpoint; written last, it is the commit point
//
// <round> is zero-padded to 12 digits so that listings sort by round.
package checkpoint

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by a Store for a key it does not hold.
var ErrNotFound = errors.New("not found")

// Store is a flat object store. Keys are slash-separated paths without a
// leading slash. Every method honours its context.
type Store interface {
	// Put stores size bytes from r under key, replacing what was there.
	// It is all or nothing: a reader never sees a partial object, and a
	// failed or cancelled Put leaves the previous object (or none).
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens an object for reading; ErrNotFound if it does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes an object; ErrNotFound if it does not exist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the store for messages, without credentials.
	String() string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}
