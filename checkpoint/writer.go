package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSuperseded is the Result.Err of a save that was replaced by a newer
// one before its upload began; it was never written.
var ErrSuperseded = errors.New("checkpoint: superseded by a newer save")

// ErrClosed is the Result.Err of a save given to, or cancelled by, a
// closed writer.
var ErrClosed = errors.New("checkpoint: writer closed")

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	// ChunkSize is the size of a chunk in bytes (default 8 MiB). Smaller
	// chunks dedupe finer and cost more requests.
	ChunkSize int64
	// Parallel is how many chunks are hashed and uploaded at once
	// (default 4). It also bounds the bytes in flight: Parallel chunks.
	Parallel int
	// Retries is how many times a failed chunk or manifest upload is
	// retried (default 5; negative for none), with exponential backoff and
	// jitter from 100 ms to 5 s.
	Retries int
	// Keep and KeepEvery are the retention applied after each commit: the
	// newest Keep checkpoints are kept, and every round divisible by
	// KeepEvery. Keep 0 keeps everything.
	Keep, KeepEvery int
	// Logf, if set, receives one line per commit, retry or failure.
	Logf func(format string, args ...any)
	// Progress, if set, is called as chunks finish (one call at a time).
	Progress func(Progress)
	// OnDone, if set, is called once per Save with its outcome: committed
	// (Err nil), failed, superseded (Err ErrSuperseded) or cancelled by
	// Close (Err ErrClosed). It may be called from the writer's goroutine
	// or from Save's caller, so it must be safe for concurrent use.
	OnDone func(Result)
}

// Progress is how far the upload of one checkpoint has got.
type Progress struct {
	Round       uint64
	Done, Total int64 // bytes, reused chunks included
	Chunks      int   // chunks finished, reused ones included
	ChunksTotal int
	Reused      int // chunks already in the store
}

// Result is the outcome of one Save.
type Result struct {
	Round uint64
	// Key is the manifest's key.
	Key string
	// Bytes is the checkpoint's size; Uploaded the chunk bytes sent,
	// the rest being chunks the store already held (Reused of them).
	Bytes    int64
	Uploaded int64
	Reused   int
	// Pruned are the rounds retention removed after this commit.
	Pruned []uint64
	// Duration is the upload's, from its start to its commit.
	Duration time.Duration
	// Superseded is set when a newer Save replaced this one before its
	// upload began.
	Superseded bool
	// Err is nil if and only if the checkpoint was committed.
	Err error
}

// Writer saves checkpoints of one job in the background, one at a time.
//
//	Save ──▶ pending ──▶ uploading ──▶ committed / failed   (OnDone)
//	            │
//	            └── replaced by a newer Save ──▶ superseded  (OnDone)
//
// At most two snapshots are held: the one uploading and the one pending.
// A Writer is safe for concurrent use.
type Writer struct {
	store  Store
	job    string
	opts   WriterOptions
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	wake   chan struct{} // one token: something was queued or Close was called

	mu      sync.Mutex
	pending *Snapshot
	busy    bool
	closed  bool
	lastErr error
	changed chan struct{} // closed and replaced when busy goes false

	// known is the chunks (hash → size) this writer wrote or found in the
	// store. Only the upload goroutine and its workers use it.
	kmu   sync.Mutex
	known map[string]int64
}

// NewWriter returns a writer of job's checkpoints to store and starts its
// upload goroutine; Close stops it.
func NewWriter(store Store, job string, opts WriterOptions) *Writer {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 8 << 20
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Retries == 0 {
		opts.Retries = 5
	} else if opts.Retries < 0 {
		opts.Retries = 0
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		store: store, job: job, opts: opts, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), wake: make(chan struct{}, 1),
		changed: make(chan struct{}), known: map[string]int64{},
	}
	go w.run()
	return w
}

// Save queues a snapshot and returns at once; the snapshot belongs to the
// writer from then on. If an upload is running, the snapshot waits for it,
// replacing (superseding) any snapshot already waiting.
func (w *Writer) Save(s *Snapshot) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.finish(Result{Round: s.Round, Key: ManifestKey(w.job, s.Round), Err: ErrClosed})
		return
	}
	old := w.pending
	w.pending = s
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if old != nil {
		w.opts.Logf("checkpoint round %d superseded by round %d before its upload began", old.Round, s.Round)
		w.finish(Result{Round: old.Round, Key: ManifestKey(w.job, old.Round), Superseded: true, Err: ErrSuperseded})
	}
}

// Flush waits until no save is pending or uploading, and returns the
// outcome of the last upload (nil if it committed). Every OnDone of those
// saves has been called when it returns.
func (w *Writer) Flush(ctx context.Context) error {
	for {
		w.mu.Lock()
		if w.pending == nil && !w.busy {
			err := w.lastErr
			w.mu.Unlock()
			return err
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for checkpoint upload: %w", context.Cause(ctx))
		}
	}
}

// Close drops the pending save, cancels the upload in progress (neither
// commits; call Flush first to wait for them), waits for the writer's
// goroutine and returns the outcome of the last upload.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.Flush(context.Background())
	}
	w.closed = true
	old := w.pending
	w.pending = nil
	w.mu.Unlock()
	w.cancel()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if old != nil {
		w.finish(Result{Round: old.Round, Key: ManifestKey(w.job, old.Round), Err: ErrClosed})
	}
	<-w.done
	return w.Flush(context.Background())
}

func (w *Writer) finish(r Result) {
	if w.opts.OnDone != nil {
		w.opts.OnDone(r)
	}
}

// run uploads snapshots one at a time until Close.
func (w *Writer) run() {
	defer close(w.done)
	for {
		w.mu.Lock()
		s := w.pending
		w.pending = nil
		if s == nil {
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return
			}
			<-w.wake
			continue
		}
		w.busy = true
		w.mu.Unlock()

		r := w.upload(w.ctx, s)
		w.finish(r)

		w.mu.Lock()
		w.busy = false
		w.lastErr = r.Err
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
}

// chunkTask is one chunk of a snapshot to hash and upload: a slice of its
// tensor's data, not a copy.
type chunkTask struct {
	entry  *TensorEntry
	label  string
	index  int
	offset int64
	data   []byte
}

// upload writes one checkpoint: chunks first, then the manifest.
func (w *Writer) upload(ctx context.Context, s *Snapshot) (res Result) {
	start := time.Now()
	res = Result{Round: s.Round, Key: ManifestKey(w.job, s.Round)}
	defer func() {
		res.Duration = time.Since(start)
		if res.Err != nil {
			res.Err = fmt.Errorf("checkpoint round %d of job %s not saved to %s (no manifest written; the previous checkpoint, if any, is still the latest): %w",
				s.Round, w.job, w.store, res.Err)
			w.opts.Logf("%v", res.Err)
		}
	}()
	if s.Job != "" && s.Job != w.job {
		res.Err = fmt.Errorf("snapshot is of job %q, but this writer saves job %q", s.Job, w.job)
		return res
	}
	s.Job = w.job
	if err := s.check(); err != nil {
		res.Err = fmt.Errorf("invalid snapshot: %w", err)
		return res
	}
	m, tasks, tensors := w.plan(s)
	res.Bytes = m.Bytes

	u := &chunkUpload{w: w, tasks: tasks, flights: map[string]*flight{}, listDone: make(chan struct{}),
		prog: Progress{Round: s.Round, Total: m.Bytes, ChunksTotal: len(tasks)}}
	u.ctx, u.cancel = context.WithCancelCause(ctx)
	defer u.cancel(nil)
	err := u.run(tensors)
	res.Uploaded, res.Reused = u.uploaded.Load(), u.prog.Reused
	if w.ctx.Err() != nil {
		res.Err = ErrClosed
		return res
	}
	if err != nil {
		res.Err = err
		return res
	}

	m.Created = time.Now().UTC()
	b, err := m.Encode()
	if err != nil {
		res.Err = fmt.Errorf("encoding the manifest: %w", err)
		return res
	}
	err = w.retry(ctx, "manifest "+res.Key, func() error {
		return w.store.Put(ctx, res.Key, bytes.NewReader(b), int64(len(b)))
	})
	if err != nil {
		res.Err = fmt.Errorf("writing manifest %s: %w", res.Key, err)
		if w.ctx.Err() != nil {
			res.Err = fmt.Errorf("%w while writing the manifest (it may or may not have been committed)", ErrClosed)
		}
		return res
	}
	w.opts.Logf("checkpoint round %d committed to %s: %d bytes in %v (%d bytes uploaded, %d chunks reused)",
		s.Round, w.store, res.Bytes, time.Since(start).Round(time.Millisecond), res.Uploaded, res.Reused)

	if w.opts.Keep > 0 {
		pruned, gone, err := prune(ctx, w.store, w.job, w.opts.Keep, w.opts.KeepEvery, nil)
		res.Pruned = pruned
		w.kmu.Lock()
		for _, sha := range gone {
			delete(w.known, sha)
		}
		w.kmu.Unlock()
		if err != nil {
			w.opts.Logf("checkpoint retention after round %d: %v (the checkpoint is committed; retention runs again after the next one)", s.Round, err)
		}
	}
	return res
}

// chunkUpload is the chunk phase of one upload: Parallel workers each take
// the next chunk, hash it and upload it unless the store has it, while
// another goroutine lists the chunks
// already stored.
type chunkUpload struct {
	w      *Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	tasks  []chunkTask
	next   atomic.Int64 // index of the next task to take

	listDone chan struct{} // closed when listed is set
	listed   bool          // the store's chunks are in w.known

	fmu     sync.Mutex
	flights map[string]*flight

	pmu      sync.Mutex
	prog     Progress
	uploaded atomic.Int64

	emu      sync.Mutex
	firstErr error
}

// flight is a chunk being uploaded, for other chunks of the same
// checkpoint with the same content to wait on.
type flight struct {
	done chan struct{}
	err  error
}

// run uploads every chunk and computes every tensor's hash, returning the
// first error.
func (u *chunkUpload) run(tensors []tensorTask) error {
	go func() {
		u.listed = u.w.listChunks(u.ctx)
		close(u.listDone)
	}()
	var wg sync.WaitGroup
	for range min(u.w.opts.Parallel, len(u.tasks)) {
		wg.Go(u.worker)
	}
	wg.Wait()
	<-u.listDone
	// A tensor's hash is a digest of its chunks' (hashed by the workers):
	// no second pass over the data.
	for _, t := range tensors {
		t.entry.SHA256 = TensorDigest(t.entry.Chunks)
	}
	u.emu.Lock()
	defer u.emu.Unlock()
	if u.firstErr == nil && u.ctx.Err() != nil {
		return context.Cause(u.ctx)
	}
	return u.firstErr
}

func (u *chunkUpload) fail(err error) {
	u.emu.Lock()
	if u.firstErr == nil {
		u.firstErr = err
	}
	u.emu.Unlock()
	u.cancel(err)
}

// worker takes chunks until there are none left or the upload failed.
func (u *chunkUpload) worker() {
	for {
		i := int(u.next.Add(1) - 1)
		if i >= len(u.tasks) || u.ctx.Err() != nil {
			return
		}
		t := &u.tasks[i]
		h := sha256.Sum256(t.data)
		sha := hex.EncodeToString(h[:])
		t.entry.Chunks[t.index] = ChunkRef{SHA256: sha, Size: int64(len(t.data))}
		select {
		case <-u.listDone:
		case <-u.ctx.Done():
			return
		}
		reused, err := u.chunk(sha, t)
		if err != nil {
			return
		}
		u.pmu.Lock()
		u.prog.Done += int64(len(t.data))
		u.prog.Chunks++
		if reused {
			u.prog.Reused++
		}
		if u.w.opts.Progress != nil {
			u.w.opts.Progress(u.prog)
		}
		u.pmu.Unlock()
	}
}

// chunk makes sure the store holds a chunk. Of chunks with the same
// content in this checkpoint, the first is uploaded and the others wait
// for it (and count as reused).
func (u *chunkUpload) chunk(sha string, t *chunkTask) (reused bool, err error) {
	u.fmu.Lock()
	f, dup := u.flights[sha]
	if !dup {
		f = &flight{done: make(chan struct{})}
		u.flights[sha] = f
	}
	u.fmu.Unlock()
	if dup {
		select {
		case <-f.done:
			return true, f.err // a failure is reported by the chunk's uploader
		case <-u.ctx.Done():
			return false, u.ctx.Err()
		}
	}
	reused, err = u.w.ensureChunk(u.ctx, u.listed, sha, t)
	f.err = err
	close(f.done)
	if err != nil {
		u.fail(err)
		return false, err
	}
	if !reused {
		u.uploaded.Add(int64(len(t.data)))
	}
	return reused, nil
}

// tensorTask is a tensor whose whole-data hash goes into its entry.
type tensorTask struct {
	entry *TensorEntry
	data  []byte
}

// plan builds the manifest of a snapshot (hashes still empty) and the
// chunks to upload.
func (w *Writer) plan(s *Snapshot) (*Manifest, []chunkTask, []tensorTask) {
	m := &Manifest{
		Format: FormatVersion, Job: w.job, Round: s.Round, Step: s.Step, Tokens: s.Tokens,
		Model: s.Model, Cursors: s.Cursors, Meta: s.Meta,
		Tensors: make([]TensorEntry, len(s.Tensors)),
	}
	var tasks []chunkTask
	var tensors []tensorTask
	add := func(e *TensorEntry, t Tensor, label string) {
		size := int64(len(t.Data))
		n := (size + w.opts.ChunkSize - 1) / w.opts.ChunkSize
		*e = TensorEntry{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: size, Chunks: make([]ChunkRef, n)}
		for i := int64(0); i < n; i++ {
			off := i * w.opts.ChunkSize
			end := min(off+w.opts.ChunkSize, size)
			tasks = append(tasks, chunkTask{entry: e, label: label, index: int(i), offset: off, data: t.Data[off:end:end]})
		}
		tensors = append(tensors, tensorTask{entry: e, data: t.Data})
		m.Bytes += size
	}
	for i, t := range s.Tensors {
		add(&m.Tensors[i], t, "tensor "+t.Name)
	}
	if o := s.Optimizer; o != nil {
		m.Optimizer = &OptimizerEntry{Name: o.Name, LR: o.LR, Momentum: o.Momentum, Tensors: make([]TensorEntry, len(o.Tensors))}
		for i, t := range o.Tensors {
			add(&m.Optimizer.Tensors[i], t, "optimizer tensor "+t.Name)
		}
	}
	return m, tasks, tensors
}

// listChunks lists the job's chunks in the store, so that those already
// there are not sent again. The listing replaces the writer's record of
// known chunks, which may hold chunks someone has since deleted. If the
// listing fails, it reports false and ensureChunk asks the store about
// each chunk it does not know instead.
func (w *Writer) listChunks(ctx context.Context) bool {
	prefix := JobPrefix(w.job) + "chunks/"
	objs, err := w.store.List(ctx, prefix)
	if err != nil {
		w.opts.Logf("checkpoint: listing chunks in %s failed (%v); checking chunks one by one", w.store, err)
		return false
	}
	present := make(map[string]int64, len(objs))
	for _, o := range objs {
		if sha := strings.TrimPrefix(o.Key, prefix); isHash(sha) {
			present[sha] = o.Size
		}
	}
	w.kmu.Lock()
	w.known = present
	w.kmu.Unlock()
	return true
}

// ensureChunk makes sure the store holds a chunk, uploading it if needed;
// reused reports that it was already there.
func (w *Writer) ensureChunk(ctx context.Context, listed bool, sha string, t *chunkTask) (reused bool, err error) {
	size := int64(len(t.data))
	w.kmu.Lock()
	got, ok := w.known[sha]
	w.kmu.Unlock()
	key := ChunkKey(w.job, sha)
	if ok && got == size {
		return true, nil
	}
	if !listed {
		// No listing: ask. A chunk of the wrong size is damaged; replace it.
		if info, err := w.store.Stat(ctx, key); err == nil && info.Size == size {
			w.remember(sha, size)
			return true, nil
		}
	}
	what := fmt.Sprintf("chunk %s (%s, chunk %d, bytes %d–%d)", short(sha), t.label, t.index, t.offset, t.offset+size)
	err = w.retry(ctx, what, func() error {
		return w.store.Put(ctx, key, bytes.NewReader(t.data), size)
	})
	if err != nil {
		return false, fmt.Errorf("uploading %s: %w", what, err)
	}
	w.remember(sha, size)
	return false, nil
}

func (w *Writer) remember(sha string, size int64) {
	w.kmu.Lock()
	w.known[sha] = size
	w.kmu.Unlock()
}

// retry calls f until it succeeds, the retries are used up or ctx is done,
// sleeping with exponential backoff and jitter between attempts.
func (w *Writer) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if attempt >= w.opts.Retries {
			if attempt > 0 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return err
		}
		d := backoff(attempt)
		w.opts.Logf("checkpoint: %s: %v; retrying in %v (%d/%d)", what, err, d.Round(time.Millisecond), attempt+1, w.opts.Retries)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// backoff is the wait before retry attempt+1: "equal jitter" on an
// exponential base, 100–200 ms first, at most 5 s.
func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2)
}
