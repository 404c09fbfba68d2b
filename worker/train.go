package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/collective"
	"github.com/megha-ml/megha/internal/units"
	"github.com/megha-ml/megha/train"
	"github.com/megha-ml/megha/worker/gpu"
	"github.com/megha-ml/megha/worker/runtime"
	"google.golang.org/grpc/status"
)

// Built-in training on a worker: one task of a `train` job with a built-in
// model. The task trains its replica locally, and at each round boundary
// asks the coordinator for the round's members (JoinRound), all-reduces
// with them over the collective, and reports (FinishRound); the
// coordinator's decision commits the round or has it retried with the
// survivors. See docs/ARCHITECTURE.md, "Sync rounds".

// Synthetic dataset parameters used by built-in training: a 16-symbol
// order-2 process with 4 random successors per context.
var syntheticShape = train.SyntheticConfig{Order: 2, Branch: 4, Alphabet: 16}

// goroot corpus limits: at most 16 MiB of .go files, 10% of files held out.
const (
	gorootMaxBytes   = 16 << 20
	gorootValPercent = 10
	valBatches       = 4
	collectiveWait   = 30 * time.Second // a peer silent this long fails the attempt
)

var (
	gorootOnce sync.Once
	gorootData *train.TextDataset
	gorootErr  error
)

func loadGoRoot() (*train.TextDataset, error) {
	gorootOnce.Do(func() { gorootData, gorootErr = train.LoadGoRoot(gorootMaxBytes, gorootValPercent) })
	return gorootData, gorootErr
}

// trainSources returns the training source and fixed validation batches
// for a spec, and a line describing the data.
func trainSources(spec *meghav1.JobSpec, batch, context int) (train.Source, []*train.Batch, string, error) {
	seed := spec.GetData().GetSeed()
	switch ds := spec.GetData().GetDataset(); ds {
	case "synthetic":
		cfg := syntheticShape
		cfg.Seed = seed
		s, err := train.NewSynthetic(cfg)
		if err != nil {
			return nil, nil, "", err
		}
		return s, train.FillBatches(s, valBatches, batch, context, -1, 0),
			fmt.Sprintf("synthetic n-gram process (entropy rate %.4f nats/byte: the best achievable loss)", s.EntropyRate()), nil
	case "goroot":
		d, err := loadGoRoot()
		if err != nil {
			return nil, nil, "", err
		}
		return d.TrainSource(seed), train.FillBatches(d.ValSource(seed), valBatches, batch, context, 0, 0),
			fmt.Sprintf("goroot: %d training bytes, %d validation bytes of Go source", len(d.Train), len(d.Val)), nil
	default:
		return nil, nil, "", fmt.Errorf("dataset %q is not built in (synthetic, goroot)", ds)
	}
}

var _ train.AllReducer = (*collective.Sequence)(nil)

func compressionOf(c meghav1.Compression) collective.Compression {
	switch c {
	case meghav1.Compression_COMPRESSION_FP16:
		return collective.FP16
	case meghav1.Compression_COMPRESSION_INT8:
		return collective.Int8
	}
	return collective.None
}

// emulatedSlowdown is how much slower than the host this worker's
// emulated GPUs are (1 for real or no GPUs).
func (a *Agent) emulatedSlowdown() (float64, string) {
	var models []string
	for _, g := range a.cfg.GPUs {
		if !g.Emulated {
			return 1, ""
		}
		models = append(models, g.Model)
	}
	s := gpu.RelativeSpeed(models)
	if s <= 0 || s >= 1 {
		return 1, ""
	}
	label := fmt.Sprintf("%d× %s", len(models), models[0])
	return 1 / s, label
}

// trainTask is the built-in trainer's TaskFunc.
func (a *Agent) trainTask(ctx context.Context, t *runtime.Task, stdout, stderr io.Writer) error {
	as, epoch := a.tasks.assignment(t.ID)
	if as == nil || as.Spec == nil {
		return errors.New("built-in training task without a job spec")
	}
	tr, err := a.newTrainRun(t, as, epoch, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "megha trainer: %v\n", err)
		return err
	}
	defer tr.close()
	err = tr.run(ctx)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "megha trainer: %v\n", err)
	}
	return err
}

type trainRun struct {
	a     *Agent
	task  *runtime.Task
	spec  *meghav1.JobSpec
	epoch uint64
	out   io.Writer

	model     train.Model
	rep       *train.Replica
	eval      *train.Trainer
	val       []*train.Batch
	src       train.Source
	batch     *train.Batch
	node      *collective.Node
	slowdown  float64
	emulated  string
	cursor    int // next batch index of this task's data stream
	ckpt      *ckpt
	batchRows int
}

// errResync: the rounds went on without this task; it starts over by
// restoring the latest checkpoint.
var errResync = errors.New("resync")

func (a *Agent) newTrainRun(t *runtime.Task, as *meghav1.Assignment, epoch uint64, out io.Writer) (*trainRun, error) {
	spec := as.Spec
	name := spec.GetModel().GetBuiltin()
	B := int(spec.GetData().GetBatchSize())
	if B <= 0 {
		B = 16
	}
	seed := spec.GetData().GetSeed()
	model, err := train.NewModel(name, B, seed, nil)
	if err != nil {
		return nil, err
	}
	src, val, about, err := trainSources(spec, B, model.ContextLen())
	if err != nil {
		return nil, err
	}
	H := int(spec.GetSync().GetInnerSteps())
	if H <= 0 {
		H = 50
	}
	total := 1 << 20
	if r := spec.GetStop().GetRounds(); r > 0 {
		total = int(r) * H
	}
	algo := train.DiLoCo
	if spec.GetSync().GetAlgorithm() == meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP {
		algo = train.DDP
	}
	trainer := train.NewTrainer(model, train.DefaultAdamW(), train.DefaultSchedule(name, total))
	rep := train.NewReplica(trainer, algo, train.OuterConfig{LR: spec.GetSync().GetOuterLr(), Momentum: spec.GetSync().GetOuterMomentum()})
	evalModel, err := train.NewModel(name, B, seed, nil)
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1"
	if h, _, err := net.SplitHostPort(a.cfg.AdvertiseAddr); err == nil && h != "" {
		host = h
	}
	node, err := collective.Listen(net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	r := &trainRun{a: a, task: t, spec: spec, epoch: epoch, out: out, model: model, rep: rep,
		eval: &train.Trainer{Model: evalModel}, val: val, src: src, batch: train.NewBatch(B, model.ContextLen()), node: node}
	r.batchRows = B
	r.ckpt = newCkpt(r)
	r.slowdown, r.emulated = a.emulatedSlowdown()
	info, _ := train.Describe(name)
	fmt.Fprintf(out, "megha trainer: %s (%d parameters), %s, batch %d×%d, %s H=%d, compression %s\n",
		name, info.Params, about, B, model.ContextLen(), algo, H, compressionOf(spec.GetSync().GetCompression()))
	if r.slowdown > 1 {
		fmt.Fprintf(out, "megha trainer: emulated GPU %s: steps throttled to 1/%.2f of this host's speed (emulation)\n", r.emulated, r.slowdown)
	}
	fmt.Fprintf(out, "megha trainer: collective endpoint %s\n", node.Addr())
	return r, nil
}

func (r *trainRun) close() {
	r.ckpt.close()
	_ = r.node.Close()
}

// fill draws the task's next batches; with an emulated GPU it sleeps after
// each step's compute so the step takes slowdown times as long.
func (r *trainRun) fill(base int) func(i int, b *train.Batch) {
	var last time.Time
	return func(i int, b *train.Batch) {
		if r.slowdown > 1 && !last.IsZero() {
			time.Sleep(time.Duration(float64(time.Since(last)) * (r.slowdown - 1)))
		}
		r.src.Fill(b, int(r.task.Rank), base+i)
		last = time.Now()
	}
}

func (r *trainRun) run(ctx context.Context) error {
	for {
		first, restored, err := r.start(ctx)
		if err != nil || first == 0 {
			return err
		}
		err = r.rounds(ctx, first, restored)
		if !errors.Is(err, errResync) {
			return err
		}
	}
}

// rounds trains from round first on. A task that has just restored a
// checkpoint joins its first round without local steps (DiLoCo: weight 0,
// it only receives the round's update), so that it is in step at once.
func (r *trainRun) rounds(ctx context.Context, first uint64, restored bool) error {
	H := int(r.spec.GetSync().GetInnerSteps())
	if H <= 0 {
		H = 50
	}
	inner := H
	for round := first; ; round++ {
		var res train.RoundResult
		start := time.Now()
		base := r.cursor
		if r.rep.Algo == train.DiLoCo && !(restored && round == first) {
			var err error
			if res, err = r.rep.Inner(ctx, inner, r.batch, r.fill(base)); err != nil {
				return err
			}
			r.cursor += inner
		}
		innerTime := time.Since(start)
		plan, err := r.join(ctx, round)
		if err != nil || plan == nil {
			return err
		}
		if plan.Resync {
			fmt.Fprintf(r.out, "megha trainer: %s; restoring the latest checkpoint to catch up\n", plan.Reason)
			return errResync
		}
		for {
			ring := &collective.Sequence{Node: r.node, Config: collective.Config{
				Rank: int(plan.Rank), World: len(plan.Members), Addrs: addrs(plan.Members),
				Round:       round<<32 | uint64(plan.Attempt)<<20,
				Timeout:     collectiveWait,
				Compression: compressionOf(r.spec.GetSync().GetCompression()), ErrorFeedback: r.spec.GetSync().GetErrorFeedback()}}
			var runErr error
			syncStart := time.Now()
			// The coordinator may abandon the attempt (a member was lost)
			// while this member waits on it in the ring: watch for that.
			cctx, cancel := context.WithCancel(ctx)
			stopWatch := r.watchAttempt(cctx, cancel, round, plan.Attempt)
			if r.rep.Algo == train.DDP {
				res, runErr = r.rep.Run(cctx, ring, inner, r.batch, r.fill(base))
				innerTime = time.Since(syncStart)
			} else {
				res, runErr = r.rep.Reduce(cctx, ring, res)
			}
			abandoned := stopWatch()
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if runErr != nil && abandoned {
				runErr = fmt.Errorf("attempt abandoned by the coordinator (a member was lost): %w", runErr)
			}
			stats := &meghav1.MemberRound{Steps: uint32(res.Steps), Tokens: uint64(res.Tokens), Loss: res.Loss,
				Weight: res.Weight, BytesSent: res.Sent, BytesReceived: res.Received, Cursor: uint64(r.cursor)}
			if r.rep.Algo == train.DDP {
				stats.Cursor += uint64(inner) // DDP consumes its batches inside the round
			}
			if res.Steps > 0 {
				stats.StepSeconds = innerTime.Seconds() / float64(res.Steps)
			}
			if res.Excluded != nil {
				stats.Excluded = res.Excluded.Error()
				fmt.Fprintf(r.out, "round %d: %v\n", round, res.Excluded)
			}
			if len(r.a.cfg.GPUs) > 0 {
				stats.GpuModel, stats.Emulated = r.a.cfg.GPUs[0].Model, r.a.cfg.GPUs[0].Emulated
			}
			req := &meghav1.FinishRoundRequest{WorkerId: r.a.ID(), Epoch: r.epoch, TaskId: r.task.ID,
				Round: round, Attempt: plan.Attempt, Ok: runErr == nil, Stats: stats}
			if runErr != nil {
				req.Error = runErr.Error()
				fmt.Fprintf(r.out, "round %d attempt %d failed: %v\n", round, plan.Attempt, runErr)
			} else if plan.Rank == 0 {
				copy(r.eval.Model.Weights(), r.rep.Candidate())
				req.ValLoss, req.HasVal = r.eval.Evaluate(r.val), true
			}
			out, err := r.finish(ctx, req)
			if err != nil {
				return err
			}
			switch out.Decision {
			case meghav1.RoundOutcome_DECISION_COMMIT:
				r.rep.Commit()
				if r.rep.Algo == train.DDP {
					r.cursor += inner
				}
				line := fmt.Sprintf("round %d committed: %d steps, %d tokens, loss %.4f", round, res.Steps, res.Tokens, res.Loss)
				if req.HasVal {
					line += fmt.Sprintf(", val %.4f", req.ValLoss)
				}
				fmt.Fprintf(r.out, "%s, sent %s in %.2fs, round %.2fs\n", line, units.Bytes(res.Sent),
					time.Since(syncStart).Seconds(), time.Since(start).Seconds())
				if out.NextInnerSteps > 0 {
					inner = int(out.NextInnerSteps)
				}
				if out.Checkpoint && plan.Rank == 0 {
					if _, err := r.ckpt.save(ctx, round, out); err != nil {
						fmt.Fprintf(r.out, "round %d: checkpoint not written: %v\n", round, err)
					}
				}
				if out.Done {
					fmt.Fprintf(r.out, "megha trainer: job finished after round %d\n", round)
					return nil
				}
			case meghav1.RoundOutcome_DECISION_RETRY:
				r.rep.Abort()
				plan = out.Retry
				fmt.Fprintf(r.out, "round %d: retrying as attempt %d with %d members (%s)\n", round, plan.Attempt, len(plan.Members), out.Reason)
				continue
			default:
				r.rep.Abort()
				fmt.Fprintf(r.out, "megha trainer: stopping: %s\n", out.Reason)
				return nil
			}
			break
		}
	}
}

// join waits until the coordinator fixes the round's members; nil plan
// means stop.
func (r *trainRun) join(ctx context.Context, round uint64) (*meghav1.RoundPlan, error) {
	req := &meghav1.JoinRoundRequest{WorkerId: r.a.ID(), Epoch: r.epoch, TaskId: r.task.ID, Round: round,
		Addr: r.node.Addr(), WaitMs: 1500}
	for {
		p, err := r.a.cfg.Client.JoinRound(ctx, req)
		if err != nil {
			if ctx.Err() != nil || permanent(err) {
				return nil, fmt.Errorf("joining round %d: %s", round, status.Convert(err).Message())
			}
			if !sleep(ctx, jitter(200*time.Millisecond)) {
				return nil, ctx.Err()
			}
			continue
		}
		if p.Stop {
			fmt.Fprintf(r.out, "megha trainer: stopping: %s\n", p.Reason)
			return nil, nil
		}
		if p.Ready || p.Resync {
			return p, nil
		}
	}
}

// watchAttempt polls the coordinator while this member is in the ring and
// cancels the ring's context once the coordinator has moved past the
// attempt (retried it without a lost member, or stopped the job). The
// returned stop waits for the watcher and reports whether it cancelled.
func (r *trainRun) watchAttempt(ctx context.Context, cancel context.CancelFunc, round uint64, attempt uint32) func() bool {
	done := make(chan struct{})
	var abandoned atomic.Bool
	go func() {
		defer close(done)
		req := &meghav1.JoinRoundRequest{WorkerId: r.a.ID(), Epoch: r.epoch, TaskId: r.task.ID, Round: round,
			Addr: r.node.Addr(), WaitMs: 1500}
		for ctx.Err() == nil {
			p, err := r.a.cfg.Client.JoinRound(ctx, req)
			switch {
			case err != nil:
				if !sleep(ctx, 500*time.Millisecond) {
					return
				}
			case p.Stop || (p.Ready && p.Attempt > attempt):
				abandoned.Store(true)
				cancel()
				return
			default:
				if !sleep(ctx, 250*time.Millisecond) {
					return
				}
			}
		}
	}()
	return func() bool {
		cancel()
		<-done
		return abandoned.Load()
	}
}

// finish reports an attempt until the coordinator decides.
func (r *trainRun) finish(ctx context.Context, req *meghav1.FinishRoundRequest) (*meghav1.RoundOutcome, error) {
	req.WaitMs = 1500
	for {
		out, err := r.a.cfg.Client.FinishRound(ctx, req)
		if err != nil {
			if ctx.Err() != nil || permanent(err) {
				return nil, fmt.Errorf("finishing round %d: %s", req.Round, status.Convert(err).Message())
			}
			if !sleep(ctx, jitter(200*time.Millisecond)) {
				return nil, ctx.Err()
			}
			continue
		}
		if out.Decision != meghav1.RoundOutcome_DECISION_PENDING {
			return out, nil
		}
	}
}

func addrs(ms []*meghav1.RoundMember) []string {
	out := make([]string, len(ms))
	for _, m := range ms {
		out[m.Rank] = m.Addr
	}
	return out
}
