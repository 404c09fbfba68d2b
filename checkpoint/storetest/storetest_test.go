package storetest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/checkpoint/storetest"
)

// The wrappers keep the Store contract while they inject nothing.
func TestWrappersConform(t *testing.T) {
	t.Run("FailingStore", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) checkpoint.Store {
			return storetest.NewFailingStore(checkpoint.NewMemStore(t.Name()))
		})
	})
	t.Run("SlowStore", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) checkpoint.Store {
			return &storetest.SlowStore{Store: checkpoint.NewMemStore(t.Name()), PerOp: time.Microsecond}
		})
	})
}

func TestFailingStore(t *testing.T) {
	ctx := context.Background()
	mem := checkpoint.NewMemStore("m")
	f := storetest.NewFailingStore(mem)

	storetest.Put(t, f, "a", []byte("12345"))
	storetest.Put(t, f, "a", []byte("12345"))
	if f.Puts("a") != 2 || f.Bytes("a") != 10 || f.Puts("b") != 0 {
		t.Fatalf("Puts(a) = %d, Bytes(a) = %d, Puts(b) = %d; want 2, 10, 0", f.Puts("a"), f.Bytes("a"), f.Puts("b"))
	}

	myErr := errors.New("quota")
	f.FailPutsAfter(1, myErr)
	storetest.Put(t, f, "b", []byte("1"))
	if err := f.Put(ctx, "c", bytes.NewReader([]byte("1")), 1); !errors.Is(err, myErr) {
		t.Fatalf("Put after the limit = %v, want %v", err, myErr)
	}
	if _, err := mem.Stat(ctx, "c"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatal("a refused Put reached the store")
	}
	f.FailPutsAfter(-1, nil)

	f.FailBytesAfter(3, nil)
	storetest.Put(t, f, "small", []byte("123")) // at the limit: stored
	if err := f.Put(ctx, "a", bytes.NewReader([]byte("abcdef")), 6); !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("Put past the byte limit = %v, want ErrInjected", err)
	}
	if got := storetest.Get(t, mem, "a"); string(got) != "12345" {
		t.Fatalf("a torn Put replaced the object with %q", got)
	}
	puts, failed, bytes := f.Totals()
	if puts != 6 || failed != 2 || bytes != 10+1+3+3 {
		t.Fatalf("Totals = %d puts, %d failed, %d bytes; want 6, 2, 17", puts, failed, bytes)
	}
}

func TestSlowStoreHonoursContext(t *testing.T) {
	s := &storetest.SlowStore{Store: checkpoint.NewMemStore("m"), PerOp: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Put(ctx, "k", bytes.NewReader(nil), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put = %v, want the deadline", err)
	}

	s = &storetest.SlowStore{Store: checkpoint.NewMemStore("m"), PerByte: time.Hour}
	storetest.Put(t, s.Store, "k", []byte("data"))
	ctx, cancel = context.WithCancel(context.Background())
	rc, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading a slow object after cancel = %v, want context.Canceled", err)
	}
}
