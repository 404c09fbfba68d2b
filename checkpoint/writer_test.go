package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/megha-ml/megha/checkpoint"
)

const testJob = "tiny-0a1b2c"

// testDeadline bounds every wait in these tests.
const testDeadline = 20 * time.Second

// values returns n deterministic float32s that differ with seed.
func values(seed, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(seed*7919+i))) * 3
	}
	return v
}

// snapshot returns a small training state: two weight tensors (of sizes
// that do not divide into the 1 KiB test chunks), an optimizer and cursors.
func snapshot(round uint64, seed int) *checkpoint.Snapshot {
	return &checkpoint.Snapshot{
		Job: testJob, Round: round, Step: round * 10, Tokens: round * 4096,
		Model: checkpoint.ModelConfig{Name: "transformer-tiny", Params: 1500, BatchSize: 8, ContextLen: 64, Seed: 1<<63 + 5, Algorithm: "diloco"},
		Tensors: []checkpoint.Tensor{
			checkpoint.Float32Tensor("embed", []int{25, 40}, values(seed, 1000)),
			checkpoint.Float32Tensor("head.bias", []int{500}, values(seed+1, 500)),
		},
		Optimizer: &checkpoint.OptimizerState{Name: "nesterov", LR: 0.7, Momentum: 0.9, Tensors: []checkpoint.Tensor{
			checkpoint.Float32Tensor("embed", []int{25, 40}, values(seed+2, 1000)),
			checkpoint.Float32Tensor("head.bias", []int{500}, values(seed+3, 500)),
		}},
		Cursors: map[string]uint64{"0": round * 3, "1": round*3 + 1},
		Meta:    map[string]string{"attempt": "1"},
	}
}

// recStore wraps a store, counting Puts per key and injecting faults.
type recStore struct {
	checkpoint.Store
	mu   sync.Mutex
	puts map[string]int
	// putHook, if set, runs before each Put; an error fails the Put.
	putHook func(key string) error
	// listErr fails List.
	listErr error
	// getHook, if set, runs before each Get; an error fails the Get.
	getHook func(key string) error
}

func newRecStore(s checkpoint.Store) *recStore {
	return &recStore{Store: s, puts: map[string]int{}}
}

func (r *recStore) Put(ctx context.Context, key string, rd io.Reader, size int64) error {
	r.mu.Lock()
	hook := r.putHook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(key); err != nil {
			return err
		}
	}
	if err := r.Store.Put(ctx, key, rd, size); err != nil {
		return err
	}
	r.mu.Lock()
	r.puts[key]++
	r.mu.Unlock()
	return nil
}

func (r *recStore) List(ctx context.Context, prefix string) ([]checkpoint.ObjectInfo, error) {
	r.mu.Lock()
	err := r.listErr
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return r.Store.List(ctx, prefix)
}

func (r *recStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r.mu.Lock()
	hook := r.getHook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(key); err != nil {
			return nil, err
		}
	}
	return r.Store.Get(ctx, key)
}

func (r *recStore) setPutHook(f func(string) error) {
	r.mu.Lock()
	r.putHook = f
	r.mu.Unlock()
}

// chunkPuts returns the number of chunk Puts so far and the largest count
// of any one chunk.
func (r *recStore) chunkPuts() (total, most int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.puts {
		if strings.Contains(k, "/chunks/") {
			total += n
			most = max(most, n)
		}
	}
	return total, most
}

// testWriter returns a writer with 1 KiB chunks whose results arrive on the
// returned channel; it is closed when the test ends.
func testWriter(t *testing.T, s checkpoint.Store, opts checkpoint.WriterOptions) (*checkpoint.Writer, <-chan checkpoint.Result) {
	t.Helper()
	results := make(chan checkpoint.Result, 64)
	if opts.ChunkSize == 0 {
		opts.ChunkSize = 1024
	}
	opts.OnDone = func(r checkpoint.Result) { results <- r }
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	w := checkpoint.NewWriter(s, testJob, opts)
	t.Cleanup(func() { w.Close() })
	return w, results
}

// result waits for the next outcome.
func result(t *testing.T, ch <-chan checkpoint.Result) checkpoint.Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testDeadline):
		t.Fatal("no checkpoint result within the deadline")
		return checkpoint.Result{}
	}
}

// save saves a snapshot and waits for it to commit.
func save(t *testing.T, w *checkpoint.Writer, ch <-chan checkpoint.Result, s *checkpoint.Snapshot) checkpoint.Result {
	t.Helper()
	w.Save(s)
	r := result(t, ch)
	if r.Err != nil || r.Round != s.Round {
		t.Fatalf("save round %d: %+v", s.Round, r)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// sameState fails unless a restored checkpoint holds exactly a snapshot.
func sameState(t *testing.T, c *checkpoint.Checkpoint, s *checkpoint.Snapshot) {
	t.Helper()
	m := c.Manifest
	if m.Job != testJob || m.Round != s.Round || m.Step != s.Step || m.Tokens != s.Tokens || m.Model != s.Model {
		t.Errorf("manifest job %s round %d step %d tokens %d model %+v; want %d %d %d %+v", m.Job, m.Round, m.Step, m.Tokens, m.Model, s.Round, s.Step, s.Tokens, s.Model)
	}
	if fmt.Sprint(m.Cursors) != fmt.Sprint(s.Cursors) || fmt.Sprint(m.Meta) != fmt.Sprint(s.Meta) {
		t.Errorf("cursors %v meta %v, want %v %v", m.Cursors, m.Meta, s.Cursors, s.Meta)
	}
	sameTensors(t, "weights", c.Tensors, s.Tensors)
	if (c.Optimizer == nil) != (s.Optimizer == nil) {
		t.Fatalf("optimizer %v, want %v", c.Optimizer, s.Optimizer)
	}
	if s.Optimizer != nil {
		o, want := c.Optimizer, s.Optimizer
		if o.Name != want.Name || o.LR != want.LR || o.Momentum != want.Momentum {
			t.Errorf("optimizer %s lr %v momentum %v, want %s %v %v", o.Name, o.LR, o.Momentum, want.Name, want.LR, want.Momentum)
		}
		sameTensors(t, "optimizer", o.Tensors, want.Tensors)
	}
}

func sameTensors(t *testing.T, what string, got, want []checkpoint.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s[%d]: got %s %s %v (%d bytes), want %s %s %v (%d bytes)", what, i, g.Name, g.DType, g.Shape, len(g.Data), w.Name, w.DType, w.Shape, len(w.Data))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	store := checkpoint.NewMemStore("rt")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	s := snapshot(1, 1)
	want := snapshot(1, 1) // the writer owns s
	r := save(t, w, results, s)
	if r.Key != checkpoint.ManifestKey(testJob, 1) || r.Bytes != 4*3000 || r.Uploaded != r.Bytes || r.Reused != 0 {
		t.Errorf("result %+v: want key %s, 12000 bytes all uploaded", r, checkpoint.ManifestKey(testJob, 1))
	}
	if err := w.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	c, err := checkpoint.Load(ctxT(t), store, testJob, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, c, want)
	emb, ok := c.Tensor("embed")
	if !ok {
		t.Fatal("no tensor embed")
	}
	v, err := emb.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range values(1, 1000) {
		if v[i] != x {
			t.Fatalf("embed[%d] = %v, want %v", i, v[i], x)
		}
	}
	if m := c.Manifest; m.Bytes != 12000 || len(m.Tensors[0].Chunks) != 4 || m.Created.IsZero() {
		t.Errorf("manifest bytes %d, %d chunks of embed, created %v", m.Bytes, len(m.Tensors[0].Chunks), m.Created)
	}
	latest, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, latest, want)
}

func TestNoOptimizerNoCursorsEmptyTensor(t *testing.T) {
	store := checkpoint.NewMemStore("min")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	s := &checkpoint.Snapshot{Round: 4, Tensors: []checkpoint.Tensor{
		checkpoint.Float32Tensor("empty", []int{0, 3}, nil),
		checkpoint.Float32Tensor("scalar", nil, []float32{2.5}),
	}}
	save(t, w, results, s)
	c, err := checkpoint.Load(ctxT(t), store, testJob, 4)
	if err != nil {
		t.Fatal(err)
	}
	if c.Optimizer != nil || len(c.Tensors) != 2 || len(c.Tensors[0].Data) != 0 {
		t.Fatalf("restored %+v", c)
	}
	if v, err := c.Tensors[1].Float32s(); err != nil || len(v) != 1 || v[0] != 2.5 {
		t.Fatalf("scalar: %v %v", v, err)
	}
}

func TestDedupUnchanged(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("dedup"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	r1 := save(t, w, results, snapshot(1, 1))
	first, _ := rec.chunkPuts()
	if first == 0 || r1.Reused != 0 {
		t.Fatalf("round 1: %d chunk puts, %d reused", first, r1.Reused)
	}

	r2 := save(t, w, results, snapshot(2, 1))
	total, most := rec.chunkPuts()
	if total != first || most != 1 || r2.Uploaded != 0 || r2.Reused != first {
		t.Fatalf("round 2 of unchanged tensors: %d chunk puts (most per chunk %d), uploaded %d, reused %d; want %d, 1, 0, %d", total, most, r2.Uploaded, r2.Reused, first, first)
	}

	// A new writer (a restarted worker) finds the chunks by listing them…
	w2, results2 := testWriter(t, rec, checkpoint.WriterOptions{})
	if r := save(t, w2, results2, snapshot(3, 1)); r.Uploaded != 0 {
		t.Fatalf("new writer uploaded %d bytes of unchanged chunks", r.Uploaded)
	}
	// …or, if the store cannot list, by asking about each.
	rec.mu.Lock()
	rec.listErr = errors.New("list: access denied")
	rec.mu.Unlock()
	w3, results3 := testWriter(t, rec, checkpoint.WriterOptions{})
	if r := save(t, w3, results3, snapshot(4, 1)); r.Uploaded != 0 {
		t.Fatalf("writer without listing uploaded %d bytes of unchanged chunks", r.Uploaded)
	}
	if total, _ := rec.chunkPuts(); total != first {
		t.Fatalf("%d chunk puts in all, want %d", total, first)
	}
}

func TestChangedTensorUploadsOnlyChangedChunks(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("delta"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	r1 := save(t, w, results, snapshot(1, 1))
	before, _ := rec.chunkPuts()

	s := snapshot(2, 1)
	v := values(1, 1000)
	v[600] += 1 // bytes 2400..2403: the third 1 KiB chunk of embed
	s.Tensors[0] = checkpoint.Float32Tensor("embed", []int{25, 40}, v)
	r2 := save(t, w, results, s)
	after, most := rec.chunkPuts()
	if after-before != 1 || most != 1 || r2.Uploaded != 1024 || r2.Reused != before-1 {
		t.Fatalf("one changed value: %d new chunk puts, uploaded %d bytes, reused %d; want 1, 1024, %d", after-before, r2.Uploaded, r2.Reused, before-1)
	}
	if r1.Bytes != r2.Bytes {
		t.Fatalf("sizes %d, %d", r1.Bytes, r2.Bytes)
	}
	c, err := checkpoint.Load(ctxT(t), rec, testJob, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Tensors[0].Float32s()
	if got[600] != v[600] || got[599] != v[599] {
		t.Fatalf("restored %v, want %v", got[599:601], v[599:601])
	}
}

func TestRepeatedChunkUploadedOnce(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("zeros"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{Parallel: 8})
	s := &checkpoint.Snapshot{Round: 1, Tensors: []checkpoint.Tensor{
		checkpoint.Float32Tensor("m1", []int{2048}, make([]float32, 2048)),
		checkpoint.Float32Tensor("m2", []int{2048}, make([]float32, 2048)),
	}}
	r := save(t, w, results, s)
	if total, _ := rec.chunkPuts(); total != 1 || r.Uploaded != 1024 || r.Reused != 15 {
		t.Fatalf("16 all-zero chunks: %d puts, uploaded %d, reused %d; want 1, 1024, 15", total, r.Uploaded, r.Reused)
	}
	c, err := checkpoint.Load(ctxT(t), rec, testJob, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "zeros", c.Tensors, []checkpoint.Tensor{
		checkpoint.Float32Tensor("m1", []int{2048}, make([]float32, 2048)),
		checkpoint.Float32Tensor("m2", []int{2048}, make([]float32, 2048)),
	})
}

func TestProgress(t *testing.T) {
	var mu sync.Mutex
	var seen []checkpoint.Progress
	store := checkpoint.NewMemStore("progress")
	w, results := testWriter(t, store, checkpoint.WriterOptions{Progress: func(p checkpoint.Progress) {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	}})
	save(t, w, results, snapshot(1, 1))
	mu.Lock()
	defer mu.Unlock()
	// embed and its momentum: 4 chunks each; the biases 2 each.
	if len(seen) != 12 {
		t.Fatalf("%d progress calls, want 12", len(seen))
	}
	for i, p := range seen {
		if p.Round != 1 || p.Total != 12000 || p.ChunksTotal != 12 || p.Chunks != i+1 || i > 0 && p.Done <= seen[i-1].Done {
			t.Fatalf("progress %d: %+v", i, p)
		}
	}
	if last := seen[len(seen)-1]; last.Done != last.Total {
		t.Fatalf("last progress %+v", last)
	}
}

func TestFailedUploadKeepsPrevious(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(key string, chunkPuts int) bool
		want string
	}{
		{"chunk", func(key string, n int) bool { return strings.Contains(key, "/chunks/") && n >= 3 }, "uploading chunk "},
		{"manifest", func(key string, n int) bool { return strings.HasSuffix(key, "manifest.json") }, "writing manifest jobs/" + testJob + "/ckpt/000000000002/manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecStore(checkpoint.NewMemStore("full"))
			w, results := testWriter(t, rec, checkpoint.WriterOptions{Retries: -1, Parallel: 1})
			save(t, w, results, snapshot(1, 1))

			var mu sync.Mutex
			n := 0
			rec.setPutHook(func(key string) error {
				mu.Lock()
				defer mu.Unlock()
				if tc.fail(key, n) {
					return errors.New("write /data/x: no space left on device")
				}
				if strings.Contains(key, "/chunks/") {
					n++
				}
				return nil
			})
			w.Save(snapshot(2, 2))
			r := result(t, results)
			if r.Err == nil || r.Round != 2 {
				t.Fatalf("result %+v, want an error", r)
			}
			msg := r.Err.Error()
			for _, want := range []string{"round 2", "mem://full", tc.want, "no space left on device", "no manifest written"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if err := w.Flush(ctxT(t)); err == nil || err.Error() != msg {
				t.Errorf("Flush: %v, want the upload's error", err)
			}
			if _, err := rec.Stat(ctxT(t), checkpoint.ManifestKey(testJob, 2)); !errors.Is(err, checkpoint.ErrNotFound) {
				t.Fatalf("manifest of the failed round: %v", err)
			}
			c, err := checkpoint.LoadLatest(ctxT(t), rec, testJob, 0, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			sameState(t, c, snapshot(1, 1))

			// Once the store takes writes again, the next save commits.
			rec.setPutHook(nil)
			save(t, w, results, snapshot(3, 3))
			if err := w.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("flaky"))
	var mu sync.Mutex
	failed := map[string]bool{}
	rec.setPutHook(func(key string) error {
		mu.Lock()
		defer mu.Unlock()
		// The first chunk and the manifest fail once each.
		if first := len(failed) == 0 || strings.HasSuffix(key, "manifest.json"); first && !failed[key] {
			failed[key] = true
			return errors.New("503 slow down")
		}
		return nil
	})
	var logMu sync.Mutex
	var logs []string
	w, results := testWriter(t, rec, checkpoint.WriterOptions{Retries: 2, Logf: func(f string, a ...any) {
		logMu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		logMu.Unlock()
	}})
	save(t, w, results, snapshot(1, 1))
	if _, err := checkpoint.Load(ctxT(t), rec, testJob, 1); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "503 slow down; retrying in") {
		t.Errorf("no retry logged: %q", logs)
	}
}

// gate blocks Puts of chunks until opened, telling when one is blocked.
type gate struct {
	open    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{}), blocked: make(chan struct{})} }

func (g *gate) hook(key string) error {
	if !strings.Contains(key, "/chunks/") {
		return nil
	}
	g.once.Do(func() { close(g.blocked) })
	<-g.open
	return nil
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testDeadline):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestSupersede(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("supersede"))
	g := newGate()
	rec.setPutHook(g.hook)
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	w.Save(snapshot(1, 1))
	waitFor(t, g.blocked, "round 1 to start uploading")
	w.Save(snapshot(2, 2))
	w.Save(snapshot(3, 3)) // replaces round 2, which never started

	r := result(t, results)
	if r.Round != 2 || !r.Superseded || !errors.Is(r.Err, checkpoint.ErrSuperseded) {
		t.Fatalf("first outcome %+v, want round 2 superseded", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush while blocked: %v", err)
	}
	close(g.open)
	for _, want := range []uint64{1, 3} {
		if r := result(t, results); r.Round != want || r.Err != nil || r.Superseded {
			t.Fatalf("outcome %+v, want round %d committed", r, want)
		}
	}
	if err := w.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	infos, err := checkpoint.List(ctxT(t), rec, testJob)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Round != 3 || infos[1].Round != 1 {
		t.Fatalf("checkpoints %+v, want rounds 3 and 1", infos)
	}
}

func TestCloseCancels(t *testing.T) {
	rec := newRecStore(checkpoint.NewMemStore("close"))
	w, results := testWriter(t, rec, checkpoint.WriterOptions{})
	save(t, w, results, snapshot(1, 1))

	// Round 2 blocks in its chunk uploads until its context ends.
	blocked := make(chan struct{})
	stuck := &ctxBlockStore{Store: rec, blocked: blocked}
	w2, results2 := testWriter(t, stuck, checkpoint.WriterOptions{})
	w2.Save(snapshot(2, 2))
	waitFor(t, blocked, "round 2 to start uploading")
	w2.Save(snapshot(3, 3))
	if err := w2.Close(); !errors.Is(err, checkpoint.ErrClosed) {
		t.Fatalf("Close: %v, want ErrClosed", err)
	}
	got := map[uint64]checkpoint.Result{}
	for range 2 {
		r := result(t, results2)
		got[r.Round] = r
	}
	if !errors.Is(got[2].Err, checkpoint.ErrClosed) || !errors.Is(got[3].Err, checkpoint.ErrClosed) || got[3].Superseded {
		t.Fatalf("outcomes %+v, want rounds 2 and 3 not saved (ErrClosed)", got)
	}
	w2.Save(snapshot(4, 4))
	if r := result(t, results2); r.Round != 4 || !errors.Is(r.Err, checkpoint.ErrClosed) {
		t.Fatalf("save after Close: %+v", r)
	}
	c, err := checkpoint.LoadLatest(ctxT(t), rec, testJob, 0, t.Logf)
	if err != nil || c.Manifest.Round != 1 {
		t.Fatalf("latest after Close: %v %v", c, err)
	}
}

// ctxBlockStore's chunk Puts block until their context ends.
type ctxBlockStore struct {
	checkpoint.Store
	blocked chan struct{}
	once    sync.Once
}

func (s *ctxBlockStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, "/chunks/") {
		s.once.Do(func() { close(s.blocked) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.Put(ctx, key, r, size)
}

func (s *ctxBlockStore) List(ctx context.Context, prefix string) ([]checkpoint.ObjectInfo, error) {
	return nil, nil // every chunk looks new, so round 2 must upload
}

func TestInvalidSnapshot(t *testing.T) {
	store := checkpoint.NewMemStore("invalid")
	w, results := testWriter(t, store, checkpoint.WriterOptions{})
	for _, tc := range []struct {
		s    *checkpoint.Snapshot
		want string
	}{
		{&checkpoint.Snapshot{Round: 1, Tensors: []checkpoint.Tensor{{Name: "w", DType: "float32", Shape: []int{3}, Data: make([]byte, 8)}}},
			`tensors[0]: tensor "w": 8 bytes of data, but shape [3] of float32 needs 12`},
		{&checkpoint.Snapshot{Round: 1, Tensors: []checkpoint.Tensor{{Name: "w", DType: "complex64", Shape: []int{1}, Data: make([]byte, 8)}}},
			`unknown dtype "complex64"`},
		{&checkpoint.Snapshot{Round: 1, Tensors: []checkpoint.Tensor{checkpoint.Float32Tensor("w", nil, []float32{1}), checkpoint.Float32Tensor("w", nil, []float32{1})}},
			`tensors[1]: name "w" used twice`},
		{&checkpoint.Snapshot{Job: "other", Round: 1}, `snapshot is of job "other"`},
	} {
		w.Save(tc.s)
		r := result(t, results)
		if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
			t.Errorf("error %v, want %q", r.Err, tc.want)
		}
	}
	if _, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, t.Logf); !errors.Is(err, checkpoint.ErrNoCheckpoint) {
		t.Fatalf("LoadLatest: %v, want ErrNoCheckpoint", err)
	}
}

// nullStore takes every Put and forgets it: it measures the writer alone.
type nullStore struct{ checkpoint.Store }

func (nullStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (nullStore) List(ctx context.Context, prefix string) ([]checkpoint.ObjectInfo, error) {
	return nil, nil
}

// BenchmarkSave is the writer's own cost (hashing, scheduling) of a
// 64 MiB checkpoint, without a store's.
func BenchmarkSave(b *testing.B) {
	v := values(1, 16<<20)
	results := make(chan checkpoint.Result, 1)
	w := checkpoint.NewWriter(nullStore{}, testJob, checkpoint.WriterOptions{OnDone: func(r checkpoint.Result) { results <- r }})
	defer w.Close()
	t := checkpoint.Float32Tensor("w", []int{len(v)}, v)
	b.SetBytes(int64(len(t.Data)))
	for i := 0; b.Loop(); i++ {
		w.Save(&checkpoint.Snapshot{Round: uint64(i), Tensors: []checkpoint.Tensor{t}})
		if r := <-results; r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}
