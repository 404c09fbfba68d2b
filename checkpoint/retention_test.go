package checkpoint_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
)

// roundSnapshot has a tensor every round shares and one of its own.
func roundSnapshot(r uint64) *checkpoint.Snapshot {
	return &checkpoint.Snapshot{Round: r, Tensors: []checkpoint.Tensor{
		checkpoint.Float32Tensor("shared", []int{512}, values(0, 512)),
		checkpoint.Float32Tensor("own", []int{256}, values(int(r), 256)),
	}}
}

// chunkSet lists the chunk hashes in a store.
func chunkSet(t *testing.T, s checkpoint.Store) map[string]bool {
	t.Helper()
	prefix := checkpoint.JobPrefix(testJob) + "chunks/"
	objs, err := s.List(ctxT(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, o := range objs {
		out[strings.TrimPrefix(o.Key, prefix)] = true
	}
	return out
}

func rounds(t *testing.T, s checkpoint.Store) []uint64 {
	t.Helper()
	infos, err := checkpoint.List(ctxT(t), s, testJob)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, i := range infos {
		out = append(out, i.Round)
	}
	return out
}

func TestRetention(t *testing.T) {
	store := checkpoint.NewMemStore("keep")
	w, results := testWriter(t, store, checkpoint.WriterOptions{Keep: 2, KeepEvery: 3})
	var pruned []uint64
	for r := uint64(1); r <= 7; r++ {
		pruned = append(pruned, save(t, w, results, roundSnapshot(r)).Pruned...)
	}
	// The last two (7, 6) and every third (6, 3).
	if got := fmt.Sprint(rounds(t, store)); got != "[7 6 3]" {
		t.Fatalf("rounds kept %s, want [7 6 3]", got)
	}
	if got := fmt.Sprint(pruned); got != "[1 2 4 5]" {
		t.Fatalf("rounds pruned %s, want [1 2 4 5]", got)
	}
	// Chunks: the shared tensor's 2, and the own tensor's 1 per kept round.
	chunks := chunkSet(t, store)
	want := map[string]bool{}
	for _, r := range []uint64{7, 6, 3} {
		c, err := checkpoint.Load(ctxT(t), store, testJob, r)
		if err != nil {
			t.Fatalf("round %d after retention: %v", r, err)
		}
		for _, e := range c.Manifest.Tensors {
			for _, ch := range e.Chunks {
				want[ch.SHA256] = true
			}
		}
	}
	if len(want) != 5 || fmt.Sprint(chunks) != fmt.Sprint(want) {
		t.Fatalf("chunks in the store %v, want those of the kept rounds %v", chunks, want)
	}
}

func TestPruneProtectAndKeepAll(t *testing.T) {
	store := checkpoint.NewMemStore("protect")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	for r := uint64(1); r <= 3; r++ {
		save(t, w, results, roundSnapshot(r))
	}
	// Two chunks nobody references (a crashed upload's, say); one is
	// protected (an upload in progress).
	orphan, inflight := strings.Repeat("0", 64), strings.Repeat("1", 64)
	putObject(t, store, checkpoint.ChunkKey(testJob, orphan), []byte("x"))
	putObject(t, store, checkpoint.ChunkKey(testJob, inflight), []byte("y"))
	putObject(t, store, checkpoint.JobPrefix(testJob)+"chunks/not-a-hash", []byte("z"))
	before := len(chunkSet(t, store))

	pruned, err := checkpoint.Prune(ctxT(t), store, testJob, 0, 0, map[string]bool{inflight: true})
	if err != nil || len(pruned) != 0 {
		t.Fatalf("keep all: pruned %v, %v", pruned, err)
	}
	after := chunkSet(t, store)
	if len(after) != before-1 || after[orphan] || !after[inflight] || !after["not-a-hash"] {
		t.Fatalf("chunks after Prune: %v", after)
	}

	pruned, err = checkpoint.Prune(ctxT(t), store, testJob, 1, 0, nil)
	if err != nil || fmt.Sprint(pruned) != "[1 2]" || fmt.Sprint(rounds(t, store)) != "[3]" {
		t.Fatalf("keep 1: pruned %v (%v), left %v", pruned, err, rounds(t, store))
	}
	if _, err := checkpoint.Load(ctxT(t), store, testJob, 3); err != nil {
		t.Fatal(err)
	}
	if n := len(chunkSet(t, store)); n != 3+1 { // 2 shared + 1 own + not-a-hash
		t.Fatalf("%d chunks left, want 4", n)
	}
}

func TestPruneLeavesDamagedManifest(t *testing.T) {
	store := checkpoint.NewMemStore("damaged")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	for r := uint64(1); r <= 4; r++ {
		save(t, w, results, roundSnapshot(r))
	}
	putObject(t, store, checkpoint.ManifestKey(testJob, 4), []byte("{"))
	// Round 4 is damaged: it neither counts towards the last 2 nor goes.
	pruned, err := checkpoint.Prune(ctxT(t), store, testJob, 2, 0, nil)
	if err != nil || fmt.Sprint(pruned) != "[1]" || fmt.Sprint(rounds(t, store)) != "[4 3 2]" {
		t.Fatalf("pruned %v (%v), left %v", pruned, err, rounds(t, store))
	}
	c, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, t.Logf)
	if err != nil || c.Manifest.Round != 3 {
		t.Fatalf("LoadLatest: %v", err)
	}
}

func TestPruneStopsWhenStoreFails(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("flaky"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	for r := uint64(1); r <= 3; r++ {
		save(t, w, results, roundSnapshot(r))
	}
	before := len(chunkSet(t, rec))
	rec.mu.Lock()
	rec.getHook = func(key string) error {
		if key == checkpoint.ManifestKey(testJob, 3) {
			return fmt.Errorf("read: connection reset")
		}
		return nil
	}
	rec.mu.Unlock()
	// Round 3 unreadable for now: its chunks must not be collected.
	if _, err := checkpoint.Prune(ctxT(t), rec, testJob, 1, 0, nil); err == nil || !strings.Contains(err.Error(), "nothing deleted") {
		t.Fatalf("Prune: %v", err)
	}
	if len(chunkSet(t, rec)) != before || len(rounds(t, rec)) != 3 {
		t.Fatal("Prune deleted something while the store was failing")
	}
}

func TestWriterReuploadsPrunedChunks(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("again"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{Keep: 1})
	a := func(r uint64) *checkpoint.Snapshot {
		return &checkpoint.Snapshot{Round: r, Tensors: []checkpoint.Tensor{checkpoint.Float32Tensor("w", []int{100}, values(1, 100))}}
	}
	b := &checkpoint.Snapshot{Round: 2, Tensors: []checkpoint.Tensor{checkpoint.Float32Tensor("w", []int{100}, values(2, 100))}}
	save(t, w, results, a(1))
	if r := save(t, w, results, b); fmt.Sprint(r.Pruned) != "[1]" {
		t.Fatalf("round 2 pruned %v", r.Pruned)
	}
	// Round 1's chunk is gone; round 3 has the same bytes and must send them again.
	if r := save(t, w, results, a(3)); r.Uploaded != 400 {
		t.Fatalf("round 3 uploaded %d bytes, want 400", r.Uploaded)
	}
	if _, err := checkpoint.Load(ctxT(t), rec, testJob, 3); err != nil {
		t.Fatal(err)
	}
}
