package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/checkpoint/storetest"
)

// TestMirrorConformance runs the suite against a mirror of a file store
// and an in-memory one.
func TestMirrorConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) checkpoint.Store {
		return checkpoint.NewMirror(open(t, "file://"+t.TempDir()), checkpoint.NewMemStore(t.Name()))
	})
}

func TestMirrorPutFailsIfAnyFails(t *testing.T) {
	ctx := context.Background()
	data := storetest.Data(1, 100<<10)
	for _, failing := range []int{0, 1} {
		t.Run(fmt.Sprintf("store%d", failing), func(t *testing.T) {
			a, b := checkpoint.NewMemStore("a"), checkpoint.NewMemStore("b")
			stores := []checkpoint.Store{a, b}
			f := storetest.NewFailingStore(stores[failing])
			stores[failing] = f
			m := checkpoint.NewMirror(stores...)

			storetest.Put(t, m, "old", []byte("old"))
			f.FailBytesAfter(10<<10, nil)
			err := m.Put(ctx, "new", bytes.NewReader(data), int64(len(data)))
			if !errors.Is(err, storetest.ErrInjected) {
				t.Fatalf("Put with a failing store = %v, want the injected error", err)
			}
			if strings.Count(err.Error(), "injected") != 1 {
				t.Errorf("error %q should report the failure once, not the stores it stopped", err)
			}
			if _, err := f.Stat(ctx, "new"); !errors.Is(err, checkpoint.ErrNotFound) {
				t.Errorf("the failing store holds the object: %v", err)
			}
			// Nothing half-written replaced the old object anywhere.
			err = m.Put(ctx, "old", bytes.NewReader(data), int64(len(data)))
			if err == nil {
				t.Fatal("overwrite with a failing store succeeded")
			}
			if got := storetest.Get(t, f, "old"); string(got) != "old" {
				t.Errorf("failing store's old object = %d bytes, want the old one", len(got))
			}

			f.FailBytesAfter(-1, nil)
			f.FailPutsAfter(0, nil)
			if err := m.Put(ctx, "new", bytes.NewReader(data), int64(len(data))); !errors.Is(err, storetest.ErrInjected) {
				t.Fatalf("Put with a store refusing Puts = %v, want the injected error", err)
			}
			f.FailPutsAfter(-1, nil)
			storetest.Put(t, m, "new", data)
			for _, s := range []checkpoint.Store{a, b} {
				if got := storetest.Get(t, s, "new"); !bytes.Equal(got, data) {
					t.Errorf("%s holds %d bytes, want %d", s, len(got), len(data))
				}
			}
		})
	}
}

// TestMirrorPutSourceFails checks that a failing source fails the Put on
// every store.
func TestMirrorPutSourceFails(t *testing.T) {
	a, b := checkpoint.NewMemStore("a"), checkpoint.NewMemStore("b")
	m := checkpoint.NewMirror(a, b)
	data := storetest.Data(2, 1<<20)
	srcErr := errors.New("source broke")
	if err := m.Put(context.Background(), "k", storetest.FailingReader(data, 500<<10, srcErr), int64(len(data))); !errors.Is(err, srcErr) {
		t.Fatalf("Put = %v, want the source's error", err)
	}
	for _, s := range []checkpoint.Store{a, b} {
		if keys := storetest.Keys(t, s, ""); len(keys) != 0 {
			t.Errorf("%s holds %q after a failed Put", s, keys)
		}
	}
}

// brokenStore answers every read with an error other than ErrNotFound.
type brokenStore struct{ checkpoint.Store }

var errBroken = errors.New("store unreachable")

func (brokenStore) Get(context.Context, string) (io.ReadCloser, error) { return nil, errBroken }
func (brokenStore) Stat(context.Context, string) (checkpoint.ObjectInfo, error) {
	return checkpoint.ObjectInfo{}, errBroken
}

func TestMirrorReads(t *testing.T) {
	ctx := context.Background()
	a, b := checkpoint.NewMemStore("a"), checkpoint.NewMemStore("b")
	m := checkpoint.NewMirror(a, b)
	storetest.Put(t, b, "only-in-b", []byte("b"))
	storetest.Put(t, a, "in-both", []byte("from a"))
	storetest.Put(t, b, "in-both", []byte("from b"))

	if got := storetest.Get(t, m, "only-in-b"); string(got) != "b" {
		t.Errorf("Get falls back to the second store: got %q", got)
	}
	if got := storetest.Get(t, m, "in-both"); string(got) != "from a" {
		t.Errorf("Get reads the first store first: got %q", got)
	}
	if info, err := m.Stat(ctx, "only-in-b"); err != nil || info.Size != 1 {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	if _, err := m.Stat(ctx, "nowhere"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Stat of a missing object = %v, want ErrNotFound", err)
	}
	// List asks the first store only.
	if keys := storetest.Keys(t, m, ""); strings.Join(keys, " ") != "in-both" {
		t.Errorf("List = %q, want the first store's keys", keys)
	}

	// A store that cannot answer might hold the object: not ErrNotFound.
	mb := checkpoint.NewMirror(brokenStore{a}, b)
	if got := storetest.Get(t, mb, "only-in-b"); string(got) != "b" {
		t.Errorf("Get past a broken store = %q", got)
	}
	_, err := mb.Stat(ctx, "nowhere")
	if errors.Is(err, checkpoint.ErrNotFound) || !errors.Is(err, errBroken) {
		t.Errorf("Stat with a broken store = %v, want its error and not ErrNotFound", err)
	}

	if err := m.Delete(ctx, "in-both"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []checkpoint.Store{a, b} {
		if _, err := s.Stat(ctx, "in-both"); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("Delete left the object in %s", s)
		}
	}
	if m.String() != "mem://a + mem://b" {
		t.Errorf("String() = %q", m)
	}
}

// barrierStore's Put waits until every store of the barrier is in Put.
type barrierStore struct {
	checkpoint.Store
	arrived *sync.WaitGroup
	all     <-chan struct{}
}

func (b barrierStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	b.arrived.Done()
	select {
	case <-b.all:
	case <-time.After(10 * time.Second):
		return errors.New("the other store's Put did not start: Puts run one after another")
	}
	return b.Store.Put(ctx, key, r, size)
}

// TestMirrorPutRunsInParallel puts to two stores that each wait for the
// other to be in Put too.
func TestMirrorPutRunsInParallel(t *testing.T) {
	var arrived sync.WaitGroup
	arrived.Add(2)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	a := barrierStore{checkpoint.NewMemStore("a"), &arrived, all}
	b := barrierStore{checkpoint.NewMemStore("b"), &arrived, all}
	storetest.Put(t, checkpoint.NewMirror(a, b), "k", []byte("v"))
}
