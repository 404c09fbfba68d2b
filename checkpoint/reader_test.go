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

	"github.com/megha-ml/megha/checkpoint"
)

// twoRounds saves rounds 1 and 2 of different states and returns the
// store and round 2's manifest.
func twoRounds(t *testing.T) (*checkpoint.MemStore, *checkpoint.Manifest) {
	t.Helper()
	store := checkpoint.NewMemStore("read")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	save(t, w, results, snapshot(1, 1))
	save(t, w, results, snapshot(2, 2))
	c, err := checkpoint.Load(ctxT(t), store, testJob, 2)
	if err != nil {
		t.Fatal(err)
	}
	return store, c.Manifest
}

// logRecorder collects log lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// fallsBack checks that LoadLatest restores round 1 intact and logs why
// round 2 was skipped.
func fallsBack(t *testing.T, store checkpoint.Store, why string) {
	t.Helper()
	var log logRecorder
	c, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, log.logf)
	if err != nil {
		t.Fatalf("LoadLatest: %v", err)
	}
	sameState(t, c, snapshot(1, 1))
	if s := log.String(); !strings.Contains(s, "skipping round 2") || !strings.Contains(s, why) {
		t.Errorf("log %q does not say round 2 was skipped because %q", s, why)
	}
}

func TestCorruptChunk(t *testing.T) {
	store, m := twoRounds(t)
	bad := m.Tensors[1].Chunks[1] // head.bias's second chunk, only in round 2
	if !store.Corrupt(checkpoint.ChunkKey(testJob, bad.SHA256), 100) {
		t.Fatal("chunk not found")
	}
	_, err := checkpoint.Load(ctxT(t), store, testJob, 2)
	want := fmt.Sprintf("checkpoint round 2 of job %s in mem://read: checkpoint: corrupt: chunk %s… of tensor head.bias (chunk 1): sha256 mismatch", testJob, bad.SHA256[:12])
	if !errors.Is(err, checkpoint.ErrCorrupt) || err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Load: %v\nwant %s…", err, want)
	}
	fallsBack(t, store, "sha256 mismatch")

	rep, err := checkpoint.Verify(ctxT(t), store, testJob, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], bad.SHA256[:12]) || rep.Chunks != 12 || rep.Bytes != 12000 {
		t.Fatalf("Verify round 2: %+v", rep)
	}
	if rep, err := checkpoint.Verify(ctxT(t), store, testJob, 1); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Verify round 1: %+v %v", rep, err)
	}
}

func TestMissingChunks(t *testing.T) {
	store, m := twoRounds(t)
	gone := []checkpoint.ChunkRef{m.Tensors[0].Chunks[3], m.Optimizer.Tensors[1].Chunks[0]}
	for _, c := range gone {
		if err := store.Delete(ctxT(t), checkpoint.ChunkKey(testJob, c.SHA256)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := checkpoint.Load(ctxT(t), store, testJob, 2)
	if !errors.Is(err, checkpoint.ErrNotFound) || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("Load: %v, want a missing chunk", err)
	}
	fallsBack(t, store, "is missing")

	// Verify finds both, in manifest order, and goes on past the first.
	rep, err := checkpoint.Verify(ctxT(t), store, testJob, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("chunk %s… of tensor embed (chunk 3) is missing", gone[0].SHA256[:12]),
		fmt.Sprintf("chunk %s… of optimizer tensor head.bias (chunk 0) is missing", gone[1].SHA256[:12]),
	}
	if fmt.Sprint(rep.Problems) != fmt.Sprint(want) {
		t.Fatalf("Verify problems:\n%q\nwant\n%q", rep.Problems, want)
	}
}

func TestWrongSizeChunk(t *testing.T) {
	store, m := twoRounds(t)
	c := m.Tensors[1].Chunks[1]
	key := checkpoint.ChunkKey(testJob, c.SHA256)
	if err := store.Put(ctxT(t), key, bytes.NewReader(make([]byte, 10)), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Load(ctxT(t), store, testJob, 2); !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "the store holds 10 bytes, the manifest says 976") {
		t.Fatalf("Load: %v", err)
	}
	if err := store.Put(ctxT(t), key, bytes.NewReader(make([]byte, 2000)), 2000); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Load(ctxT(t), store, testJob, 2); !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "more than the 976 bytes") {
		t.Fatalf("Load: %v", err)
	}
	fallsBack(t, store, "more than the 976 bytes")
}

func TestTruncatedManifest(t *testing.T) {
	store, _ := twoRounds(t)
	key := checkpoint.ManifestKey(testJob, 2)
	b := getObject(t, store, key)
	putObject(t, store, key, b[:len(b)/2])
	if _, err := checkpoint.Load(ctxT(t), store, testJob, 2); !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("Load: %v", err)
	}
	fallsBack(t, store, "not valid JSON")
	infos, err := checkpoint.List(ctxT(t), store, testJob)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Round != 2 || infos[0].Err == nil || infos[0].Manifest != nil || infos[1].Round != 1 || infos[1].Err != nil || infos[1].Manifest.Round != 1 {
		t.Fatalf("List: %+v", infos)
	}
	if _, err := checkpoint.Verify(ctxT(t), store, testJob, 2); !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("Verify: %v", err)
	}
}

func TestManifestBadChecksum(t *testing.T) {
	store, _ := twoRounds(t)
	key := checkpoint.ManifestKey(testJob, 2)
	b := getObject(t, store, key)
	// Change a step count but not the checksum: still valid JSON and a
	// consistent manifest, so only the checksum can tell.
	b2 := bytes.Replace(b, []byte(`"step": 20,`), []byte(`"step": 21,`), 1)
	if bytes.Equal(b, b2) {
		t.Fatal("no step in the manifest")
	}
	putObject(t, store, key, b2)
	_, err := checkpoint.Load(ctxT(t), store, testJob, 2)
	if !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "checksum: manifest content hashes to") {
		t.Fatalf("Load: %v", err)
	}
	fallsBack(t, store, "checksum")
}

func TestManifestOfAnotherRound(t *testing.T) {
	store, _ := twoRounds(t)
	// Round 1's manifest copied to round 2's key.
	putObject(t, store, checkpoint.ManifestKey(testJob, 2), getObject(t, store, checkpoint.ManifestKey(testJob, 1)))
	if _, err := checkpoint.Load(ctxT(t), store, testJob, 2); !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), "describes job "+testJob+" round 1") {
		t.Fatalf("Load: %v", err)
	}
}

func TestManifestNamesMissingChunk(t *testing.T) {
	store, m := twoRounds(t)
	// A manifest whose (valid, checksummed) chunk list names a chunk that
	// was never written.
	m.Round = 3
	m.Tensors[0].Chunks[0].SHA256 = strings.Repeat("ab", 32)
	m.Tensors[0].SHA256 = checkpoint.TensorDigest(m.Tensors[0].Chunks)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, store, checkpoint.ManifestKey(testJob, 3), b)
	_, err = checkpoint.Load(ctxT(t), store, testJob, 3)
	if !errors.Is(err, checkpoint.ErrNotFound) || !strings.Contains(err.Error(), "chunk abababababab… of tensor embed (chunk 0) is missing") {
		t.Fatalf("Load: %v", err)
	}
	var log logRecorder
	c, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, log.logf)
	if err != nil || c.Manifest.Round != 2 {
		t.Fatalf("LoadLatest: %v", err)
	}
	if !strings.Contains(log.String(), "skipping round 3") {
		t.Errorf("log: %q", log.String())
	}
}

func TestLoadLatestAtMost(t *testing.T) {
	store := checkpoint.NewMemStore("atmost")
	if _, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, nil); !errors.Is(err, checkpoint.ErrNoCheckpoint) {
		t.Fatalf("empty store: %v", err)
	}
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	for r := uint64(1); r <= 3; r++ {
		save(t, w, results, snapshot(r, int(r)))
	}
	for _, tc := range []struct{ atMost, want uint64 }{{0, 3}, {5, 3}, {3, 3}, {2, 2}, {1, 1}} {
		c, err := checkpoint.LoadLatest(ctxT(t), store, testJob, tc.atMost, nil)
		if err != nil || c.Manifest.Round != tc.want {
			t.Fatalf("atMost %d: %v, want round %d", tc.atMost, err, tc.want)
		}
		sameState(t, c, snapshot(tc.want, int(tc.want)))
	}
	// Every checkpoint damaged: none to restore.
	for r := uint64(1); r <= 3; r++ {
		putObject(t, store, checkpoint.ManifestKey(testJob, r), []byte("{}"))
	}
	_, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 2, nil)
	if !errors.Is(err, checkpoint.ErrNoCheckpoint) || !strings.Contains(err.Error(), "at or before round 2") || !strings.Contains(err.Error(), "all 2 found are damaged") {
		t.Fatalf("all damaged: %v", err)
	}
}

func TestLoadLatestStoreFailing(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("down"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	save(t, w, results, snapshot(1, 1))
	save(t, w, results, snapshot(2, 2))
	rec.mu.Lock()
	rec.getHook = func(key string) error {
		if key == checkpoint.ManifestKey(testJob, 2) {
			return errors.New("dial tcp 10.0.0.1:9000: connection refused")
		}
		return nil
	}
	rec.mu.Unlock()
	// A store that does not answer is no reason to go back a round.
	_, err := checkpoint.LoadLatest(ctxT(t), rec, testJob, 0, t.Logf)
	if err == nil || errors.Is(err, checkpoint.ErrNoCheckpoint) || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "not falling back") {
		t.Fatalf("LoadLatest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := checkpoint.Load(ctx, rec, testJob, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a cancelled context: %v", err)
	}
}

func TestListIgnoresStrayKeys(t *testing.T) {
	store, _ := twoRounds(t)
	putObject(t, store, "jobs/"+testJob+"/ckpt/notaround/manifest.json", []byte("x"))
	putObject(t, store, "jobs/"+testJob+"/ckpt/000000000007/other.json", []byte("x"))
	putObject(t, store, "jobs/"+testJob+"/ckpt/7/manifest.json", []byte("x"))
	infos, err := checkpoint.List(ctxT(t), store, testJob)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Round != 2 || infos[1].Round != 1 || infos[0].Key != checkpoint.ManifestKey(testJob, 2) {
		t.Fatalf("List: %+v", infos)
	}
	if _, err := checkpoint.List(ctxT(t), store, "../etc"); err == nil {
		t.Fatal("List accepted job ../etc")
	}
}

func getObject(t *testing.T, s checkpoint.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putObject(t *testing.T, s checkpoint.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(ctxT(t), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestTensorHashMismatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *checkpoint.Manifest)
		want   string
	}{
		// Chunks intact, but listed in the wrong order: only the
		// tensor's digest of its chunk list can tell.
		{"chunk order", func(m *checkpoint.Manifest) {
			c := m.Tensors[0].Chunks
			c[0], c[1] = c[1], c[0]
		}, "tensor embed: the digest of its chunk list is"},
		{"one-chunk tensor", func(m *checkpoint.Manifest) {
			m.Tensors = append(m.Tensors, checkpoint.TensorEntry{Name: "one", DType: "uint8", Shape: []int{976}, Size: 976,
				SHA256: m.Tensors[0].Chunks[0].SHA256, Chunks: m.Tensors[1].Chunks[1:]})
			m.Bytes += 976
		}, "tensor one: the digest of its chunk list is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, m := twoRounds(t)
			m.Round = 3
			tc.mutate(m)
			putObject(t, store, checkpoint.ManifestKey(testJob, 3), encode(t, m))
			_, err := checkpoint.Load(ctxT(t), store, testJob, 3)
			if !errors.Is(err, checkpoint.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want %q", err, tc.want)
			}
			rep, err := checkpoint.Verify(ctxT(t), store, testJob, 3)
			if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "the digest of its chunk list") {
				t.Fatalf("Verify: %+v, %v", rep, err)
			}
		})
	}
}

// BenchmarkLoad is the reader's cost (verifying, assembling) of a 64 MiB
// checkpoint from memory.
func BenchmarkLoad(b *testing.B) {
	store := checkpoint.NewMemStore("bench")
	results := make(chan checkpoint.Result, 1)
	w := checkpoint.NewWriter(store, testJob, checkpoint.WriterOptions{OnDone: func(r checkpoint.Result) { results <- r }})
	defer w.Close()
	v := values(1, 16<<20)
	w.Save(&checkpoint.Snapshot{Round: 1, Tensors: []checkpoint.Tensor{checkpoint.Float32Tensor("w", []int{len(v)}, v)}})
	if r := <-results; r.Err != nil {
		b.Fatal(r.Err)
	}
	b.SetBytes(4 << 24)
	for b.Loop() {
		if _, err := checkpoint.Load(context.Background(), store, testJob, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// shortReadStore's first Get of a chunk ends halfway, as a dropped
// connection would.
type shortReadStore struct {
	checkpoint.Store
	mu   sync.Mutex
	seen map[string]bool
}

func (s *shortReadStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/chunks/") {
		return rc, err
	}
	s.mu.Lock()
	first := len(s.seen) == 0
	s.seen[key] = true
	s.mu.Unlock()
	if !first {
		return rc, nil
	}
	b, _ := io.ReadAll(rc)
	return io.NopCloser(bytes.NewReader(b[:len(b)/2])), nil
}

func TestLoadRetriesShortRead(t *testing.T) {
	store, _ := twoRounds(t)
	c, err := checkpoint.Load(ctxT(t), &shortReadStore{Store: store, seen: map[string]bool{}}, testJob, 2)
	if err != nil {
		t.Fatalf("Load through reads that end early: %v", err)
	}
	sameState(t, c, snapshot(2, 2))
}
