// Package storetest checks that a checkpoint.Store keeps the Store
// contract (Run), and wraps stores to inject faults and delays in tests of
// the code above them (FailingStore, SlowStore).
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
)

// LargeSize is the size of the largest object Run stores: above 2 parts
// of 5 MiB (the smallest part S3 allows), so that a store configured with
// that part size uploads it in several parts.
const LargeSize = 12<<20 + 345

// Run runs the conformance suite against the stores open returns. Every
// subtest calls open once and expects an empty store; open should register
// its own cleanup with t.
func Run(t *testing.T, open func(t *testing.T) checkpoint.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, open(t)) })
	t.Run("Cancelled", func(t *testing.T) { testCancelled(t, open(t)) })
	t.Run("FailingReader", func(t *testing.T) { testFailingReader(t, open(t)) })
	t.Run("SizeMismatch", func(t *testing.T) { testSizeMismatch(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open(t)) })
}

// Data returns n bytes of pseudo-random data determined by seed.
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// Put stores data under key and fails the test on error.
func Put(t testing.TB, s checkpoint.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("%s: Put(%q, %d bytes): %v", s, key, len(data), err)
	}
}

// Get reads the object under key and fails the test on error.
func Get(t testing.TB, s checkpoint.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: Get(%q): %v", s, key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("%s: reading %q: %v", s, key, err)
	}
	return b
}

// Keys lists prefix and returns the keys, failing the test on error.
func Keys(t testing.TB, s checkpoint.Store, prefix string) []string {
	t.Helper()
	infos, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("%s: List(%q): %v", s, prefix, err)
	}
	keys := []string{}
	for _, o := range infos {
		keys = append(keys, o.Key)
	}
	return keys
}

func wantObject(t *testing.T, s checkpoint.Store, key string, want []byte) {
	t.Helper()
	if got := Get(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("%s: Get(%q) = %d bytes, want the %d bytes put (first difference at %d)", s, key, len(got), len(want), firstDiff(got, want))
	}
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: Stat(%q): %v", s, key, err)
	}
	if info.Key != key || info.Size != int64(len(want)) || info.Modified.IsZero() {
		t.Fatalf("%s: Stat(%q) = %+v, want key %q, size %d and a modification time", s, key, info, key, len(want))
	}
}

func wantMissing(t *testing.T, s checkpoint.Store, key string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Stat(ctx, key); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("%s: Stat(%q) error = %v, want ErrNotFound", s, key, err)
	}
	rc, err := s.Get(ctx, key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("%s: Get(%q) error = %v, want ErrNotFound", s, key, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testRoundTrip(t *testing.T, s checkpoint.Store) {
	for i, n := range []int{0, 1, 1000, LargeSize} {
		key := fmt.Sprintf("round/trip-%d", n)
		data := Data(uint64(i), n)
		Put(t, s, key, data)
		wantObject(t, s, key, data)
	}
}

func testOverwrite(t *testing.T, s checkpoint.Store) {
	old, new := Data(1, 5000), Data(2, 300)
	Put(t, s, "over/write", old)
	Put(t, s, "over/write", new)
	wantObject(t, s, "over/write", new)
	if keys := Keys(t, s, "over/"); !slices.Equal(keys, []string{"over/write"}) {
		t.Fatalf("%s: List(\"over/\") = %q after an overwrite, want one object", s, keys)
	}
}

func testList(t *testing.T, s checkpoint.Store) {
	// "a.x" and "a-y" sort before "a/..." ('-' < '.' < '/'), which a store
	// that walks a directory tree has to get right. No key is a "directory"
	// of another: a file store cannot hold both "a/b" and "a/b/c".
	all := []string{"a-y", "a.x", "a/b/c", "a/b/d/e", "a/bc", "a/c", "ab", "b/x"}
	for i, k := range slices.Backward(all) {
		Put(t, s, k, Data(uint64(i), i+1))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", all[:7]},
		{"a/", []string{"a/b/c", "a/b/d/e", "a/bc", "a/c"}},
		{"a/b", []string{"a/b/c", "a/b/d/e", "a/bc"}},
		{"a/b/", []string{"a/b/c", "a/b/d/e"}},
		{"a/b/d/e", []string{"a/b/d/e"}},
		{"a/bc", []string{"a/bc"}},
		{"b/", []string{"b/x"}},
		{"nope", []string{}},
		{"nope/deeper/", []string{}},
	} {
		if got := Keys(t, s, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("%s: List(%q) = %q, want %q", s, tc.prefix, got, tc.want)
		}
	}
	infos, err := s.List(context.Background(), "a/b/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range infos {
		i := slices.Index(all, o.Key)
		if o.Size != int64(i+1) || o.Modified.IsZero() {
			t.Errorf("%s: List entry %+v, want size %d and a modification time", s, o, i+1)
		}
	}
}

func testMissing(t *testing.T, s checkpoint.Store) {
	wantMissing(t, s, "no/such/key")
	Put(t, s, "dir/sub/obj", []byte("x"))
	wantMissing(t, s, "dir/sub")   // a "directory" is no object
	wantMissing(t, s, "dir/sub/o") // a prefix of a key is no object
	wantMissing(t, s, "dir/sub/obj/below")
}

func testDelete(t *testing.T, s checkpoint.Store) {
	ctx := context.Background()
	Put(t, s, "del/one", []byte("1"))
	Put(t, s, "del/two", []byte("2"))
	if err := s.Delete(ctx, "del/one"); err != nil {
		t.Fatalf("%s: Delete: %v", s, err)
	}
	wantMissing(t, s, "del/one")
	wantObject(t, s, "del/two", []byte("2"))
	if keys := Keys(t, s, "del/"); !slices.Equal(keys, []string{"del/two"}) {
		t.Fatalf("%s: List after Delete = %q, want [del/two]", s, keys)
	}
	for _, k := range []string{"del/one", "never/was", "del/two/below"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("%s: Delete(%q) of a missing object = %v, want nil", s, k, err)
		}
	}
	// A Put after deleting everything under a prefix works again.
	if err := s.Delete(ctx, "del/two"); err != nil {
		t.Fatal(err)
	}
	Put(t, s, "del/three", []byte("3"))
	wantObject(t, s, "del/three", []byte("3"))
}

func testInvalidKeys(t *testing.T, s checkpoint.Store) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "a//b", "a/", "./a", "a/./b", "../escape", "a/../../escape", "a/..", "a\\b", "a\x00b"} {
		err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1)
		if err == nil || errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("%s: Put(%q) = %v, want an invalid-key error", s, k, err)
		}
		if rc, err := s.Get(ctx, k); err == nil {
			rc.Close()
			t.Errorf("%s: Get(%q) succeeded, want an error", s, k)
		}
	}
	if keys := Keys(t, s, ""); len(keys) != 0 {
		t.Fatalf("%s: invalid Puts stored %q", s, keys)
	}
}

func testCancelled(t *testing.T, s checkpoint.Store) {
	Put(t, s, "ctx/old", []byte("old"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "ctx/new", bytes.NewReader([]byte("new")), 3); err == nil {
		t.Errorf("%s: Put with a cancelled context succeeded", s)
	}
	if err := s.Put(ctx, "ctx/old", bytes.NewReader([]byte("new")), 3); err == nil {
		t.Errorf("%s: Put with a cancelled context succeeded", s)
	}
	if rc, err := s.Get(ctx, "ctx/old"); err == nil {
		rc.Close()
		t.Errorf("%s: Get with a cancelled context succeeded", s)
	}
	if _, err := s.Stat(ctx, "ctx/old"); err == nil {
		t.Errorf("%s: Stat with a cancelled context succeeded", s)
	}
	if _, err := s.List(ctx, ""); err == nil {
		t.Errorf("%s: List with a cancelled context succeeded", s)
	}
	if err := s.Delete(ctx, "ctx/old"); err == nil {
		t.Errorf("%s: Delete with a cancelled context succeeded", s)
	}

	// Cancelled in the middle of the data.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	data := Data(3, 1<<20)
	r := &hookReader{r: bytes.NewReader(data), at: 300 << 10, hook: cancel}
	if err := s.Put(ctx, "ctx/old", r, int64(len(data))); err == nil {
		t.Errorf("%s: Put cancelled midway succeeded", s)
	}
	wantObject(t, s, "ctx/old", []byte("old"))
	wantMissing(t, s, "ctx/new")
}

// hookReader calls hook once at least at bytes have been read.
type hookReader struct {
	r    io.Reader
	at   int
	n    int
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.n < h.at && len(p) > h.at-h.n {
		p = p[:h.at-h.n]
	}
	n, err := h.r.Read(p)
	h.n += n
	if h.n >= h.at && h.hook != nil {
		h.hook()
		h.hook = nil
	}
	return n, err
}

// errReader is the error FailingReader fails with.
var errReader = errors.New("storetest: reader failed")

// FailingReader returns the first n bytes of data, then err (a test
// error if nil).
func FailingReader(data []byte, n int, err error) io.Reader {
	if err == nil {
		err = errReader
	}
	return io.MultiReader(bytes.NewReader(data[:n]), iotestErrReader{err})
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func testFailingReader(t *testing.T, s checkpoint.Store) {
	ctx := context.Background()
	for _, n := range []int{1000, LargeSize} {
		key := fmt.Sprintf("fail/%d", n)
		old := Data(4, 777)
		Put(t, s, key, old)
		data := Data(5, n)
		// Fail past the first 5 MiB part of a large object, so that a
		// multipart upload has a part to abandon.
		at := min(n/2, 7<<20)
		if err := s.Put(ctx, key, FailingReader(data, at, nil), int64(n)); err == nil {
			t.Fatalf("%s: Put(%q) with a reader failing after %d of %d bytes succeeded", s, key, at, n)
		}
		wantObject(t, s, key, old)
		fresh := key + "-fresh"
		if err := s.Put(ctx, fresh, FailingReader(data, at, nil), int64(n)); err == nil {
			t.Fatalf("%s: Put(%q) with a failing reader succeeded", s, fresh)
		}
		wantMissing(t, s, fresh)
	}
	if keys := Keys(t, s, "fail/"); !slices.Equal(keys, []string{"fail/1000", fmt.Sprintf("fail/%d", LargeSize)}) {
		t.Fatalf("%s: List after failed Puts = %q, want only the old objects", s, keys)
	}
}

func testSizeMismatch(t *testing.T, s checkpoint.Store) {
	ctx := context.Background()
	Put(t, s, "size/old", []byte("old"))
	for _, tc := range []struct {
		data int
		size int64
	}{{5, 10}, {15, 10}, {1, 0}, {0, 1}} {
		data := Data(6, tc.data)
		for _, key := range []string{"size/old", "size/new"} {
			if err := s.Put(ctx, key, bytes.NewReader(data), tc.size); err == nil {
				t.Errorf("%s: Put(%q) of %d bytes declared as %d succeeded", s, key, tc.data, tc.size)
			}
		}
	}
	wantObject(t, s, "size/old", []byte("old"))
	wantMissing(t, s, "size/new")
}

func testConcurrent(t *testing.T, s checkpoint.Store) {
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			d := Data(uint64(100+i), 1000+i)
			errs[i] = s.Put(ctx, fmt.Sprintf("conc/%02d", i), bytes.NewReader(d), int64(len(d)))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: concurrent Put %d: %v", s, i, err)
		}
	}
	for i := range n {
		wantObject(t, s, fmt.Sprintf("conc/%02d", i), Data(uint64(100+i), 1000+i))
	}

	// Concurrent Puts of one key: the last wins whole, never a mix.
	versions := make([][]byte, 8)
	for i := range versions {
		versions[i] = Data(uint64(200+i), 64<<10+i)
	}
	for i, v := range versions {
		wg.Go(func() { errs[i] = s.Put(ctx, "conc/same", bytes.NewReader(v), int64(len(v))) })
	}
	wg.Wait()
	for i, err := range errs[:len(versions)] {
		if err != nil {
			t.Fatalf("%s: concurrent Put %d of one key: %v", s, i, err)
		}
	}
	got := Get(t, s, "conc/same")
	if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
		t.Fatalf("%s: after concurrent Puts of one key, Get returned %d bytes that no Put wrote", s, len(got))
	}
}
