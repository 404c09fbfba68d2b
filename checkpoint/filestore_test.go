package checkpoint

// These tests are in the package (not checkpoint_test) to reach fsWrite,
// the seam that simulates a full disk. The conformance suite runs against
// FileStore in open_test.go.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newTestFileStore(t *testing.T) *FileStore {
	t.Helper()
	s, err := NewFileStore(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fsPut(t *testing.T, s Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func fsGet(t *testing.T, s Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tempFiles returns the temporary files under dir.
func fsTempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestFileStoreDiskFull fills the disk in the middle of a Put (through the
// fsWrite seam, as a real ENOSPC would come from write(2)).
func TestFileStoreDiskFull(t *testing.T) {
	s := newTestFileStore(t)
	fsPut(t, s, "jobs/j/ckpt/000000000001/manifest.json", []byte("old"))

	written := 0
	orig := fsWrite
	fsWrite = func(f *os.File, p []byte) (int, error) {
		if written+len(p) > 4096 {
			return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		written += len(p)
		return f.Write(p)
	}
	t.Cleanup(func() { fsWrite = orig })

	data := bytes.Repeat([]byte("x"), 1<<20)
	err := s.Put(context.Background(), "jobs/j/ckpt/000000000001/manifest.json", bytes.NewReader(data), int64(len(data)))
	if err == nil {
		t.Fatal("Put on a full disk succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"disk full writing jobs/j/ckpt/000000000001/manifest.json", s.Dir(), "free space or point checkpoint.store elsewhere"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %v does not wrap ENOSPC", err)
	}
	fsWrite = orig
	if got := fsGet(t, s, "jobs/j/ckpt/000000000001/manifest.json"); string(got) != "old" {
		t.Errorf("after a failed Put the object is %q, want the old one", got)
	}
	if tmp := fsTempFiles(t, s.Dir()); len(tmp) != 0 {
		t.Errorf("a failed Put left temporary files %q", tmp)
	}
}

// TestFileStoreWriteErrors checks the words for each way a disk refuses.
func TestFileStoreWriteErrors(t *testing.T) {
	s := &FileStore{dir: "/data/ckpt"}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{syscall.ENOSPC, []string{"checkpoint store /data/ckpt: disk full writing k: free space or point checkpoint.store elsewhere"}},
		{syscall.EDQUOT, []string{"disk full writing k"}},
		{syscall.EROFS, []string{"/data/ckpt", "read-only file system writing k", "point checkpoint.store elsewhere"}},
		{syscall.EACCES, []string{"/data/ckpt", "permission denied writing k", "write access"}},
		{syscall.EIO, []string{"/data/ckpt", "writing k", "input/output error"}},
	} {
		err := s.putError("k", &fs.PathError{Op: "write", Path: "/data/ckpt/.tmp-k-1", Err: tc.err})
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not contain %q", tc.err, err, w)
			}
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: error does not wrap it", tc.err)
		}
	}
}

// TestFileStoreKilledWriter leaves a temporary file as a writer killed
// mid-Put would, and checks that nothing trips over it.
func TestFileStoreKilledWriter(t *testing.T) {
	ctx := context.Background()
	s := newTestFileStore(t)
	fsPut(t, s, "a/obj", []byte("old"))
	stale := filepath.Join(s.Dir(), "a", tempPrefix+"obj-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	infos, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Key != "a/obj" {
		t.Fatalf("List = %+v, want only a/obj", infos)
	}
	if _, err := s.Stat(ctx, "a/"+tempPrefix+"obj-123"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat of a temporary file = %v, want an invalid-key error", err)
	}
	fsPut(t, s, "a/obj", []byte("new"))
	if got := fsGet(t, s, "a/obj"); string(got) != "new" {
		t.Fatalf("Get = %q", got)
	}

	// A Put under way is younger than the age and survives a cleanup.
	young := filepath.Join(s.Dir(), "a", tempPrefix+"obj-456")
	if err := os.WriteFile(young, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := s.CleanTemp(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want 1 removed", n, err)
	}
	if got := fsTempFiles(t, s.Dir()); !slices.Equal(got, []string{young}) {
		t.Fatalf("temporary files after CleanTemp: %q, want %q", got, young)
	}
}

func TestFileStoreRelativeDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := NewFileStore("rel/ckpt")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "rel", "ckpt")
	if s.Dir() != want || s.String() != "file://"+want {
		t.Fatalf("Dir = %q, String = %q; want %q", s.Dir(), s, want)
	}
	if fi, err := os.Stat(want); err != nil || !fi.IsDir() {
		t.Fatalf("store directory not created: %v", err)
	}
}

func TestFileStoreNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewFileStore(f)
	if err == nil || !strings.Contains(err.Error(), "not a directory") || !strings.Contains(err.Error(), f) {
		t.Fatalf("NewFileStore on a file = %v, want an error naming it", err)
	}
}

func TestFileStoreKeyIsAlsoADirectory(t *testing.T) {
	s := newTestFileStore(t)
	fsPut(t, s, "a/b", []byte("x"))
	err := s.Put(context.Background(), "a/b/c", bytes.NewReader([]byte("y")), 1)
	if err == nil || !strings.Contains(err.Error(), "cannot hold both") {
		t.Fatalf("Put below an object = %v, want an error that says why", err)
	}
}

func TestFileStoreDeleteRemovesEmptyDirs(t *testing.T) {
	ctx := context.Background()
	s := newTestFileStore(t)
	fsPut(t, s, "jobs/j/ckpt/000000000001/manifest.json", []byte("m"))
	fsPut(t, s, "jobs/j/chunks/abc", []byte("c"))
	if err := s.Delete(ctx, "jobs/j/ckpt/000000000001/manifest.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "jobs", "j", "ckpt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directories left after Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "jobs", "j", "chunks", "abc")); err != nil {
		t.Errorf("Delete removed a neighbour: %v", err)
	}
	if err := s.Delete(ctx, "jobs/j/chunks/abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Errorf("Delete removed the store directory: %v", err)
	}
	fsPut(t, s, "jobs/j/chunks/abc", []byte("again"))
}

func TestFileStoreStaysInside(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	s, err := NewFileStore(filepath.Join(parent, "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"../outside", "a/../../outside", "/tmp/outside"} {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
	}
	for _, p := range []string{"../", "a/../../", "../store/"} {
		if _, err := s.List(ctx, p); err == nil {
			t.Errorf("List(%q) succeeded", p)
		}
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Fatalf("files appeared next to the store: %v", entries)
	}
}
