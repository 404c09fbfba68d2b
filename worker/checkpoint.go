package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/internal/units"
	"github.com/megha-ml/megha/train"
	"google.golang.org/grpc/status"
)

// Checkpoints of built-in training. The round's rank 0 copies the shared
// state after a committed round the coordinator marked for a checkpoint
// (training waits only for that copy), a checkpoint.Writer uploads it in
// the background, and once its manifest is written the task reports it
// (CommitCheckpoint: CheckpointCommitted in Raft). A task that starts in a
// running job restores the latest committed checkpoint first
// (StartTraining). See docs/ARCHITECTURE.md, "Checkpoints".

// finalFlush bounds how long a finishing task waits for its last
// checkpoint to upload.
const finalFlush = 2 * time.Minute

// commitDrain bounds how long a finishing task keeps trying to report its
// written checkpoints to the coordinator.
const commitDrain = 15 * time.Second

// Tensor names in a built-in trainer's checkpoint: the model's parameter
// views under "model/", DiLoCo's outer momentum under "outer/", DDP's
// AdamW moments under "adamw.m/" and "adamw.v/".
const (
	modelPrefix    = "model/"
	momentumPrefix = "outer/"
	adamMPrefix    = "adamw.m/"
	adamVPrefix    = "adamw.v/"
)

// ckpt is a training task's checkpoint side.
type ckpt struct {
	r      *trainRun
	urls   []string
	once   sync.Once
	store  checkpoint.Store
	err    error
	writer *checkpoint.Writer

	commits chan *meghav1.CommitCheckpointRequest
	done    chan struct{}
	stop    context.CancelFunc

	// Progress of the upload in flight (the writer calls one at a time).
	progRound uint64
	progLast  time.Time

	mu    sync.Mutex
	saved map[uint64]*checkpoint.Snapshot // round → a save not yet done (its totals and cursors; tensors not kept)
}

// ckptProgressEvery is how often a long upload reports its progress.
const ckptProgressEvery = 5 * time.Second

// storeURLs are a spec's checkpoint store and mirrors. A spec without a
// store (from a coordinator that fills none in) uses the default
// directory relative to the worker's working directory.
func storeURLs(spec *meghav1.JobSpec) []string {
	c := spec.GetCheckpoint()
	primary := c.GetStore()
	if primary == "" {
		primary = checkpoint.DefaultStoreURL
	}
	return append([]string{primary}, c.GetMirrors()...)
}

func newCkpt(r *trainRun) *ckpt {
	ctx, cancel := context.WithCancel(context.Background())
	c := &ckpt{r: r, urls: storeURLs(r.spec), commits: make(chan *meghav1.CommitCheckpointRequest, 4),
		done: make(chan struct{}), stop: cancel}
	go c.commitLoop(ctx)
	return c
}

// open connects to the job's stores once.
func (c *ckpt) open(ctx context.Context) (checkpoint.Store, error) {
	c.once.Do(func() {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c.store, c.err = checkpoint.OpenAll(octx, c.urls)
		if c.err != nil {
			c.err = fmt.Errorf("opening checkpoint store: %w", c.err)
		}
	})
	return c.store, c.err
}

// save copies the replica's shared state after committed round `round`
// and hands it to the background writer. It returns how long training
// waited (the copy).
func (c *ckpt) save(ctx context.Context, round uint64, out *meghav1.RoundOutcome) (time.Duration, error) {
	store, err := c.open(ctx)
	if err != nil {
		return 0, err
	}
	if c.writer == nil {
		spec := c.r.spec.GetCheckpoint()
		c.writer = checkpoint.NewWriter(store, c.r.task.JobID, checkpoint.WriterOptions{
			Keep: int(spec.GetKeep()), KeepEvery: int(spec.GetKeepEvery()),
			Logf:     func(format string, args ...any) { fmt.Fprintf(c.r.out, format+"\n", args...) },
			OnDone:   c.done1,
			Progress: c.progress,
		})
	}
	start := time.Now()
	snap := c.snapshot(round, out)
	waited := time.Since(start)
	c.mu.Lock()
	if c.saved == nil {
		c.saved = map[uint64]*checkpoint.Snapshot{}
	}
	c.saved[round] = &checkpoint.Snapshot{Step: snap.Step, Tokens: snap.Tokens, Cursors: snap.Cursors}
	c.mu.Unlock()
	c.writer.Save(snap)
	return waited, nil
}

// snapshot copies the shared state into a checkpoint snapshot.
func (c *ckpt) snapshot(round uint64, out *meghav1.RoundOutcome) *checkpoint.Snapshot {
	r := c.r
	st := r.rep.State()
	views := r.model.Views()
	split := func(prefix string, v []float32) []checkpoint.Tensor {
		ts := make([]checkpoint.Tensor, len(views))
		for i, pv := range views {
			ts[i] = checkpoint.Float32Tensor(prefix+pv.Name, pv.Shape, v[pv.Offset:pv.Offset+pv.Size()])
		}
		return ts
	}
	info, _ := train.Describe(r.spec.GetModel().GetBuiltin())
	s := &checkpoint.Snapshot{
		Job: r.task.JobID, Round: round, Step: out.GetStep(), Tokens: out.GetTokens(),
		Model: checkpoint.ModelConfig{Name: r.spec.GetModel().GetBuiltin(), Params: info.Params,
			BatchSize: r.batchRows, ContextLen: r.model.ContextLen(), Seed: r.spec.GetData().GetSeed(),
			Algorithm: r.rep.Algo.String()},
		Tensors: split(modelPrefix, st.Params),
		Cursors: map[string]uint64{},
		Meta:    map[string]string{"schedule_step": strconv.Itoa(st.Step), "dataset": r.spec.GetData().GetDataset()},
	}
	for k, v := range out.GetCursors() {
		s.Cursors[k] = v
	}
	s.Cursors[strconv.FormatUint(uint64(r.task.Rank), 10)] = uint64(r.cursor)
	if r.rep.Algo == train.DiLoCo {
		s.Optimizer = &checkpoint.OptimizerState{Name: "nesterov", LR: r.rep.Outer.LR, Momentum: r.rep.Outer.Momentum,
			Tensors: split(momentumPrefix, st.Momentum)}
	} else {
		s.Optimizer = &checkpoint.OptimizerState{Name: "adamw",
			Tensors: append(split(adamMPrefix, st.AdamM), split(adamVPrefix, st.AdamV)...)}
		s.Meta["adamw_step"] = strconv.Itoa(st.AdamT)
	}
	return s
}

// progress logs a long upload's progress every ckptProgressEvery.
func (c *ckpt) progress(p checkpoint.Progress) {
	now := time.Now()
	if p.Round != c.progRound {
		c.progRound, c.progLast = p.Round, now
		return
	}
	if now.Sub(c.progLast) < ckptProgressEvery || p.Done >= p.Total {
		return
	}
	c.progLast = now
	fmt.Fprintf(c.r.out, "checkpoint round %d: %s of %s (%d of %d chunks, %d already stored)\n",
		p.Round, units.Bytes(p.Done), units.Bytes(p.Total), p.Chunks, p.ChunksTotal, p.Reused)
}

// done1 is the writer's report of one checkpoint: a committed one is
// reported to the coordinator.
func (c *ckpt) done1(res checkpoint.Result) {
	r := c.r
	c.mu.Lock()
	saved := c.saved[res.Round]
	delete(c.saved, res.Round)
	c.mu.Unlock()
	if saved == nil {
		saved = &checkpoint.Snapshot{}
	}
	// The writer has logged the outcome (Logf).
	if res.Superseded {
		return
	}
	if res.Err != nil {
		fmt.Fprintf(r.out, "the previous checkpoint stays the one to restore\n")
		return
	}
	req := &meghav1.CommitCheckpointRequest{WorkerId: r.a.ID(), Epoch: r.epoch, TaskId: r.task.ID, Pruned: res.Pruned,
		Checkpoint: &meghav1.CheckpointInfo{Round: res.Round, Store: c.store.String(), Key: res.Key, Bytes: res.Bytes,
			Uploaded: res.Uploaded, Seconds: res.Duration.Seconds(), Step: saved.Step, Tokens: saved.Tokens, Cursors: saved.Cursors}}
	select {
	case c.commits <- req:
	default:
		// The coordinator is slow to take reports: a newer checkpoint
		// supersedes this one for joiners anyway.
		fmt.Fprintf(r.out, "checkpoint of round %d not reported: earlier reports still pending\n", res.Round)
	}
}

// commitLoop reports written checkpoints to the coordinator, retrying
// through leader changes, until commits is closed and drained or ctx ends.
func (c *ckpt) commitLoop(ctx context.Context) {
	defer close(c.done)
	for req := range c.commits {
		for {
			_, err := c.r.a.cfg.Client.CommitCheckpoint(ctx, req)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if permanent(err) {
				fmt.Fprintf(c.r.out, "checkpoint of round %d not recorded: %s\n", req.Checkpoint.Round, status.Convert(err).Message())
				break
			}
			if !sleep(ctx, jitter(500*time.Millisecond)) {
				return
			}
		}
	}
}

// close waits (bounded) for the last checkpoint to upload and be
// reported, then stops.
func (c *ckpt) close() {
	if c.writer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), finalFlush)
		if err := c.writer.Flush(ctx); errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(c.r.out, "the last checkpoint did not finish uploading within %v; it is abandoned\n", finalFlush)
		}
		cancel()
		_ = c.writer.Close()
	}
	close(c.commits) // commitLoop reports what is queued, then returns
	select {
	case <-c.done:
	case <-time.After(commitDrain):
		c.stop()
		<-c.done
	}
	c.stop()
}

// restore loads checkpoint ck (verifying every chunk) into the replica
// and the task's data cursor.
func (c *ckpt) restore(ctx context.Context, ck *meghav1.CheckpointInfo) error {
	r := c.r
	store, err := c.open(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	got, err := checkpoint.Load(ctx, store, r.task.JobID, ck.Round)
	if err != nil {
		return fmt.Errorf("restoring round %d: %w", ck.Round, err)
	}
	m := got.Manifest
	name := r.spec.GetModel().GetBuiltin()
	info, _ := train.Describe(name)
	if m.Model.Name != name || m.Model.Params != info.Params {
		return fmt.Errorf("restoring round %d: checkpoint is of %s (%d parameters), the job trains %s (%d)",
			ck.Round, m.Model.Name, m.Model.Params, name, info.Params)
	}
	views := r.model.Views()
	join := func(prefix string, from []checkpoint.Tensor) ([]float32, error) {
		byName := map[string]checkpoint.Tensor{}
		for _, t := range from {
			byName[t.Name] = t
		}
		out := make([]float32, len(r.model.Weights()))
		for _, pv := range views {
			t, ok := byName[prefix+pv.Name]
			if !ok {
				return nil, fmt.Errorf("restoring round %d: tensor %s%s is missing", ck.Round, prefix, pv.Name)
			}
			v, err := t.Float32s()
			if err != nil {
				return nil, fmt.Errorf("restoring round %d: tensor %s: %w", ck.Round, t.Name, err)
			}
			if len(v) != pv.Size() {
				return nil, fmt.Errorf("restoring round %d: tensor %s has %d values, want %d", ck.Round, t.Name, len(v), pv.Size())
			}
			copy(out[pv.Offset:], v)
		}
		return out, nil
	}
	var st train.ReplicaState
	if st.Params, err = join(modelPrefix, got.Tensors); err != nil {
		return err
	}
	var opt []checkpoint.Tensor
	if got.Optimizer != nil {
		opt = got.Optimizer.Tensors
	}
	if r.rep.Algo == train.DiLoCo {
		if st.Momentum, err = join(momentumPrefix, opt); err != nil {
			return err
		}
	} else {
		if st.AdamM, err = join(adamMPrefix, opt); err != nil {
			return err
		}
		if st.AdamV, err = join(adamVPrefix, opt); err != nil {
			return err
		}
		st.AdamT, _ = strconv.Atoi(m.Meta["adamw_step"])
	}
	st.Step, _ = strconv.Atoi(m.Meta["schedule_step"])
	if err := r.rep.Restore(st); err != nil {
		return fmt.Errorf("restoring round %d: %w", ck.Round, err)
	}
	rank := strconv.FormatUint(uint64(r.task.Rank), 10)
	r.cursor = int(m.Cursors[rank])
	fmt.Fprintf(r.out, "megha trainer: restored the checkpoint of round %d (%s, verified) from %s in %.2fs; rank %d resumes at batch %d\n",
		ck.Round, units.Bytes(m.Bytes), store, time.Since(start).Seconds(), r.task.Rank, r.cursor)
	return nil
}

// start asks the coordinator where this task begins, restoring a
// checkpoint first if the job is under way. It returns the first round to
// join and whether the task joins with a restored state; 0 means stop.
func (r *trainRun) start(ctx context.Context) (uint64, bool, error) {
	req := &meghav1.StartTrainingRequest{WorkerId: r.a.ID(), Epoch: r.epoch, TaskId: r.task.ID, WaitMs: 1500}
	lastWhy := ""
	for {
		s, err := r.a.cfg.Client.StartTraining(ctx, req)
		if err != nil {
			if ctx.Err() != nil || permanent(err) {
				return 0, false, fmt.Errorf("starting: %s", status.Convert(err).Message())
			}
			if !sleep(ctx, jitter(200*time.Millisecond)) {
				return 0, false, ctx.Err()
			}
			continue
		}
		switch {
		case s.Stop:
			fmt.Fprintf(r.out, "megha trainer: stopping: %s\n", s.Reason)
			return 0, false, nil
		case !s.Ready:
			if s.Reason != lastWhy {
				fmt.Fprintf(r.out, "megha trainer: %s\n", s.Reason)
				lastWhy = s.Reason
			}
			continue
		case s.Restore == nil:
			return s.Round, false, nil
		}
		if err := r.ckpt.restore(ctx, s.Restore); err != nil {
			if ctx.Err() != nil {
				return 0, false, ctx.Err()
			}
			fmt.Fprintf(r.out, "megha trainer: %v; asking the coordinator again\n", err)
			if strings.Contains(err.Error(), "opening checkpoint store") || !sleep(ctx, jitter(time.Second)) {
				return 0, false, err
			}
			continue
		}
		return s.Round, true, nil
	}
}
