package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoCheckpoint is returned (wrapped) by LoadLatest when a job has no
// checkpoint that can be restored.
var ErrNoCheckpoint = errors.New("checkpoint: no checkpoint")

// ErrCorrupt is wrapped by errors about a checkpoint whose stored data is
// damaged or inconsistent: an invalid manifest, a chunk of the wrong size
// or hash, a tensor whose hash does not match.
var ErrCorrupt = errors.New("checkpoint: corrupt")

// readParallel is how many chunks Load and Verify fetch at once.
const readParallel = 4

// readRetries is how many times Load retries a chunk the store failed to
// deliver (not a missing or damaged one).
const readRetries = 3

// Info describes one checkpoint found in a store.
type Info struct {
	Round    uint64
	Key      string
	Manifest *Manifest
	// Err is why the manifest could not be read or is invalid.
	Err error
}

// roundsOf lists the rounds that have a manifest, newest first.
func roundsOf(ctx context.Context, s Store, job string) ([]uint64, error) {
	if err := checkJob(job); err != nil {
		return nil, err
	}
	prefix := JobPrefix(job) + "ckpt/"
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints of job %s in %s: %w", job, s, err)
	}
	var rounds []uint64
	for _, o := range objs {
		dir, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, prefix), "/manifest.json")
		if !ok {
			continue // not a manifest (a store's temporary file, say)
		}
		r, err := strconv.ParseUint(dir, 10, 64)
		if err != nil || o.Key != ManifestKey(job, r) {
			continue
		}
		rounds = append(rounds, r)
	}
	sort.Slice(rounds, func(i, j int) bool { return rounds[i] > rounds[j] })
	return rounds, nil
}

// readManifest fetches and checks the manifest of a round. A missing one
// wraps ErrNotFound, an invalid one ErrCorrupt.
func readManifest(ctx context.Context, s Store, job string, round uint64) (*Manifest, error) {
	key := ManifestKey(job, round)
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s from %s: %w", key, s, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s in %s: %w: %w", key, s, ErrCorrupt, err)
	}
	if m.Job != job || m.Round != round {
		return nil, fmt.Errorf("manifest %s in %s: %w: it describes job %s round %d", key, s, ErrCorrupt, m.Job, m.Round)
	}
	return m, nil
}

// List returns a job's checkpoints, newest first, each with its manifest
// or the reason it cannot be used. Chunks are not checked (Verify does).
func List(ctx context.Context, s Store, job string) ([]Info, error) {
	rounds, err := roundsOf(ctx, s, job)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(rounds))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(readParallel, len(rounds)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(rounds); i = int(next.Add(1) - 1) {
				m, err := readManifest(ctx, s, job, rounds[i])
				out[i] = Info{Round: rounds[i], Key: ManifestKey(job, rounds[i]), Manifest: m, Err: err}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Checkpoint is a restored checkpoint, every byte of it verified.
type Checkpoint struct {
	Manifest  *Manifest
	Tensors   []Tensor
	Optimizer *OptimizerState
}

// Tensor returns the model weight tensor with the given name.
func (c *Checkpoint) Tensor(name string) (Tensor, bool) {
	for _, t := range c.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Load restores a job's checkpoint of a round. Every chunk is fetched
// (several at once) and checked against its size and SHA-256, and every
// tensor against its own hash. A missing chunk wraps ErrNotFound and a
// damaged one ErrCorrupt; the error names the round, tensor and chunk.
func Load(ctx context.Context, s Store, job string, round uint64) (*Checkpoint, error) {
	if err := checkJob(job); err != nil {
		return nil, err
	}
	m, err := readManifest(ctx, s, job, round)
	if err != nil {
		return nil, fmt.Errorf("checkpoint round %d of job %s: %w", round, job, err)
	}
	c, err := fetch(ctx, s, m)
	if err != nil {
		return nil, fmt.Errorf("checkpoint round %d of job %s in %s: %w", round, job, s, err)
	}
	return c, nil
}

// dest is where one reference to a chunk goes: a tensor's data at an
// offset.
type dest struct {
	tensor int
	index  int // the chunk's index in its tensor
	offset int64
}

// fetch downloads and verifies every tensor of a manifest.
func fetch(ctx context.Context, s Store, m *Manifest) (*Checkpoint, error) {
	entries := m.entries()
	data := make([][]byte, len(entries))
	// Chunks with the same content (all-zero momentum buffers, say) are
	// fetched once and copied.
	order := []string{}
	refs := map[string][]dest{}
	sizes := map[string]int64{}
	for i, e := range entries {
		data[i] = make([]byte, e.Size)
		offsets := make([]int64, len(e.Chunks)+1)
		for j, c := range e.Chunks {
			if _, ok := refs[c.SHA256]; !ok {
				order = append(order, c.SHA256)
				sizes[c.SHA256] = c.Size
			} else if sizes[c.SHA256] != c.Size {
				return nil, fmt.Errorf("%w: chunk %s has sizes %d and %d in the manifest", ErrCorrupt, short(c.SHA256), sizes[c.SHA256], c.Size)
			}
			refs[c.SHA256] = append(refs[c.SHA256], dest{i, j, offsets[j]})
			offsets[j+1] = offsets[j] + c.Size
		}
		// Every byte is checked against its chunk's hash as it arrives; the
		// tensor's hash is a digest of those, checked here.
		if err := checkTensorDigest(e); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		emu      sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		emu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		emu.Unlock()
		cancel(err)
	}
	for range min(readParallel, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= len(order) || ctx.Err() != nil {
					return
				}
				sha := order[k]
				ds := refs[sha]
				first := ds[0]
				e := entries[first.tensor]
				buf := data[first.tensor][first.offset : first.offset+sizes[sha]]
				what := fmt.Sprintf("chunk %s of %s (chunk %d)", short(sha), e.label(), first.index)
				if err := readChunk(ctx, s, ChunkKey(m.Job, sha), sha, buf, what); err != nil {
					fail(err)
					return
				}
				for _, d := range ds {
					if d != first {
						copy(data[d.tensor][d.offset:], buf)
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	c := &Checkpoint{Manifest: m, Tensors: make([]Tensor, len(m.Tensors))}
	if o := m.Optimizer; o != nil {
		c.Optimizer = &OptimizerState{Name: o.Name, LR: o.LR, Momentum: o.Momentum, Tensors: make([]Tensor, len(o.Tensors))}
	}
	for i, e := range entries {
		t := Tensor{Name: e.Name, DType: e.DType, Shape: e.Shape, Data: data[i]}
		if i < len(m.Tensors) {
			c.Tensors[i] = t
		} else {
			c.Optimizer.Tensors[i-len(m.Tensors)] = t
		}
	}
	return c, nil
}

// checkTensorDigest compares a tensor's hash with the digest of its
// chunk list.
func checkTensorDigest(e entryRef) error {
	if got := TensorDigest(e.Chunks); got != e.SHA256 {
		return fmt.Errorf("%w: %s: the digest of its chunk list is %s, the manifest says %s (its chunks may all be intact: the checkpoint was written wrong)",
			ErrCorrupt, e.label(), short(got), short(e.SHA256))
	}
	return nil
}

// readChunk fills buf with a chunk and checks its size and hash, retrying
// a read the store failed (but not a missing or damaged chunk).
func readChunk(ctx context.Context, s Store, key, sha string, buf []byte, what string) error {
	for attempt := 0; ; attempt++ {
		err := readChunkOnce(ctx, s, key, sha, buf, what)
		if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) || ctx.Err() != nil || attempt >= readRetries {
			return err
		}
		t := time.NewTimer(backoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

func readChunkOnce(ctx context.Context, s Store, key, sha string, buf []byte, what string) error {
	rc, err := s.Get(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%s is missing: %w", what, err)
		}
		return fmt.Errorf("reading %s: %w", what, err)
	}
	defer rc.Close()
	// Hash as the bytes arrive, so hashing overlaps with the network.
	h := sha256.New()
	n, err := io.ReadFull(io.TeeReader(rc, h), buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		// Short object, or a connection that ended early? Only the
		// former is damage.
		if info, serr := s.Stat(ctx, key); serr == nil && info.Size == int64(len(buf)) {
			return fmt.Errorf("reading %s: the read ended after %d of %d bytes", what, n, len(buf))
		}
		return fmt.Errorf("%w: %s: the store holds %d bytes, the manifest says %d", ErrCorrupt, what, n, len(buf))
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	var one [1]byte
	if m, _ := io.ReadFull(rc, one[:]); m > 0 {
		return fmt.Errorf("%w: %s: the store holds more than the %d bytes the manifest says", ErrCorrupt, what, len(buf))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("%w: %s: sha256 mismatch (the stored bytes hash to %s): the chunk is damaged", ErrCorrupt, what, short(got))
	}
	return nil
}

// LoadLatest restores the newest checkpoint of a job with round ≤ atMost
// (any round if atMost is 0) that is intact. Each newer one skipped gets a
// line in logf (if not nil) saying why. A checkpoint is skipped only if it
// is missing or damaged; if the store fails to answer, LoadLatest returns
// the error rather than fall back to an older round. With no usable
// checkpoint, the error wraps ErrNoCheckpoint.
func LoadLatest(ctx context.Context, s Store, job string, atMost uint64, logf func(string, ...any)) (*Checkpoint, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rounds, err := roundsOf(ctx, s, job)
	if err != nil {
		return nil, err
	}
	skipped := 0
	for _, r := range rounds {
		if atMost != 0 && r > atMost {
			continue
		}
		c, err := Load(ctx, s, job, r)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w (not falling back to an older checkpoint while the store is failing; retry)", err)
		}
		skipped++
		logf("checkpoint: skipping round %d: %v", r, err)
	}
	limit := ""
	if atMost != 0 {
		limit = fmt.Sprintf(" at or before round %d", atMost)
	}
	if skipped > 0 {
		return nil, fmt.Errorf("%w%s for job %s in %s: all %d found are damaged or incomplete", ErrNoCheckpoint, limit, job, s, skipped)
	}
	return nil, fmt.Errorf("%w%s for job %s in %s", ErrNoCheckpoint, limit, job, s)
}

// VerifyReport is what Verify found in one checkpoint.
type VerifyReport struct {
	Round uint64
	// Bytes and Chunks are how much was read and checked.
	Bytes  int64
	Chunks int
	// Problems are every damaged or missing piece, one line each; none
	// means the checkpoint is intact.
	Problems []string
}

// Verify checks every chunk and tensor of a checkpoint without keeping it
// in memory, and reports every problem found rather than stopping at the
// first. The error is for a checkpoint that cannot be checked at all: its
// manifest is missing (ErrNotFound) or invalid (ErrCorrupt), or ctx ended.
func Verify(ctx context.Context, s Store, job string, round uint64) (VerifyReport, error) {
	rep := VerifyReport{Round: round}
	if err := checkJob(job); err != nil {
		return rep, err
	}
	m, err := readManifest(ctx, s, job, round)
	if err != nil {
		return rep, fmt.Errorf("checkpoint round %d of job %s: %w", round, job, err)
	}
	entries := m.entries()
	problems := make([][]string, len(entries))
	var (
		next          atomic.Int64
		bytes, chunks atomic.Int64
		wg            sync.WaitGroup
	)
	// Tensors are checked in parallel, each one's chunks in order.
	for range min(readParallel, len(entries)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(entries) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				e := entries[i]
				if err := checkTensorDigest(e); err != nil {
					problems[i] = append(problems[i], strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
				}
				for j, c := range e.Chunks {
					what := fmt.Sprintf("chunk %s of %s (chunk %d)", short(c.SHA256), e.label(), j)
					n, err := verifyChunk(ctx, s, ChunkKey(job, c.SHA256), c, io.Discard, what)
					bytes.Add(n)
					chunks.Add(1)
					if err != nil {
						problems[i] = append(problems[i], err.Error())
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Bytes, rep.Chunks = bytes.Load(), int(chunks.Load())
	for _, p := range problems {
		rep.Problems = append(rep.Problems, p...)
	}
	return rep, nil
}

// verifyChunk streams one chunk through its own hash and the tensor's th,
// and returns the bytes read and what is wrong with it. If the chunk
// cannot be read whole, th is left short and the tensor's hash will not
// match; the caller reports the chunk only.
func verifyChunk(ctx context.Context, s Store, key string, c ChunkRef, th io.Writer, what string) (int64, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return 0, fmt.Errorf("%s is missing", what)
		}
		return 0, fmt.Errorf("reading %s: %v", what, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, th), io.LimitReader(rc, c.Size+1))
	switch {
	case err != nil:
		return n, fmt.Errorf("reading %s: %v", what, err)
	case n < c.Size:
		return n, fmt.Errorf("%s: the store holds %d bytes, the manifest says %d", what, n, c.Size)
	case n > c.Size:
		return n, fmt.Errorf("%s: the store holds more than the %d bytes the manifest says", what, c.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != c.SHA256 {
		return n, fmt.Errorf("%s: sha256 mismatch (the stored bytes hash to %s): the chunk is damaged", what, short(got))
	}
	return n, nil
}
