package train

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// AllReducer replaces buf, on every member of a fixed group, with the
// weighted mean Σwᵢ·bufᵢ / Σwᵢ of the members' buffers, and reports the
// payload bytes this member sent and received. A failed call leaves buf
// undefined. collective.Ring satisfies it through a small adapter; tests use
// an in-memory one. (train does not talk to the network itself.)
type AllReducer interface {
	AllReduce(ctx context.Context, buf []float32, weight float64) (sent, received int64, err error)
}

// Algorithm is how replicas stay in step.
type Algorithm int

const (
	// DiLoCo runs H local AdamW steps per round, then averages the
	// pseudo-gradients θ − θᵢ and applies an outer Nesterov step.
	DiLoCo Algorithm = iota
	// DDP all-reduces gradients every step and applies AdamW to the mean:
	// the per-step data-parallel baseline.
	DDP
)

func (a Algorithm) String() string {
	if a == DDP {
		return "ddp"
	}
	return "diloco"
}

// OuterConfig is the DiLoCo outer optimizer: SGD with Nesterov momentum on
// the averaged pseudo-gradient (DiLoCo paper defaults: lr 0.7, momentum 0.9).
type OuterConfig struct {
	LR, Momentum float64
}

// DefaultOuter returns lr 0.7, momentum 0.9.
func DefaultOuter() OuterConfig { return OuterConfig{LR: 0.7, Momentum: 0.9} }

// OuterStep computes, without changing its inputs, the Nesterov update
//
//	m′ = μ·m + Δ
//	θ′ = θ − lr·(Δ + μ·m′)
//
// into thetaOut and momOut (PyTorch's SGD(nesterov=True) convention).
func OuterStep(cfg OuterConfig, thetaOut, momOut, theta, mom, delta []float32) {
	mu, lr := float32(cfg.Momentum), float32(cfg.LR)
	for i, d := range delta {
		m := mu*mom[i] + d
		momOut[i] = m
		thetaOut[i] = theta[i] - lr*(d+mu*m)
	}
}

// ErrNonFinite reports NaN or ±Inf in a replica's local update.
var ErrNonFinite = errors.New("non-finite values")

// Replica is one worker's side of synchronized training. A round is two
// phases: Run (local work plus the all-reduce, producing a candidate for
// the next shared state) and then Commit or Abort, decided by the
// coordinator once it knows whether every member of the round succeeded.
// Abort restores the state at the start of the round, so a round that
// failed on any member can be retried with the survivors without any
// member having moved ahead.
//
// Memory: DiLoCo keeps θ (the shared parameters at the round start), the
// outer momentum, and candidates of both (4 extra copies of the
// parameters); DDP keeps a copy of the parameters and AdamW state for
// rollback.
type Replica struct {
	Trainer *Trainer
	Algo    Algorithm
	Outer   OuterConfig

	global, mom         []float32 // DiLoCo: θ_r and outer momentum
	candGlobal, candMom []float32 // DiLoCo: proposal for round r+1
	delta               []float32 // all-reduce buffer

	// DDP rollback point: parameters and AdamW state at the round start.
	saveW, saveM, saveV []float32
	saveT               int

	pending bool // a candidate awaits Commit or Abort
}

// NewReplica wraps a trainer whose model holds the shared initial
// parameters (identical on every member).
func NewReplica(t *Trainer, algo Algorithm, outer OuterConfig) *Replica {
	n := len(t.Model.Weights())
	r := &Replica{Trainer: t, Algo: algo, Outer: outer, delta: make([]float32, n)}
	if algo == DiLoCo {
		r.global = append([]float32(nil), t.Model.Weights()...)
		r.mom = make([]float32, n)
		r.candGlobal = make([]float32, n)
		r.candMom = make([]float32, n)
	} else {
		r.saveW = make([]float32, n)
		r.saveM = make([]float32, n)
		r.saveV = make([]float32, n)
	}
	return r
}

// Global returns the shared parameters as of the last committed round
// (DiLoCo) or the current parameters (DDP). Read-only.
func (r *Replica) Global() []float32 {
	if r.Algo == DiLoCo {
		return r.global
	}
	return r.Trainer.Model.Weights()
}

// resetInner clears the inner AdamW state (after a non-finite update).
func (r *Replica) resetInner() {
	o := r.Trainer.Opt
	Zero(o.M)
	Zero(o.V)
}

// RoundResult is what one member did in a round.
type RoundResult struct {
	Steps  int     // local optimizer steps
	Tokens int     // predictions trained on
	Loss   float64 // mean training loss over the round's steps (before each update)
	// Weight is the member's weight in the mean: Tokens, or 0 when its
	// update was non-finite and it contributed nothing (Excluded says why).
	Weight         float64
	Excluded       error
	Sent, Received int64 // all-reduce payload bytes
}

// Run does round work: for DiLoCo, steps local AdamW steps on batches from
// next, then the all-reduce of the tokens-weighted pseudo-gradient and the
// outer step into a candidate; for DDP, steps synchronized steps, each
// all-reducing the gradient. next(i, b) fills b with the member's i-th
// batch of the round. A member whose pseudo-gradient is not finite takes
// part with weight 0 (so θ is never poisoned) and reports why in Excluded.
// After Run succeeds, call Commit or Abort; after it fails, call Abort.
func (r *Replica) Run(ctx context.Context, ar AllReducer, steps int, b *Batch, next func(i int, b *Batch)) (RoundResult, error) {
	if r.pending {
		return RoundResult{}, errors.New("train: round run twice without Commit or Abort")
	}
	if steps < 1 {
		return RoundResult{}, fmt.Errorf("train: %d steps in a round", steps)
	}
	if r.Algo == DDP {
		r.pending = true
		return r.runDDP(ctx, ar, steps, b, next)
	}
	res, err := r.Inner(ctx, steps, b, next)
	if err != nil {
		r.pending = true
		return res, err
	}
	return r.Reduce(ctx, ar, res)
}

// Inner runs DiLoCo's local phase: steps AdamW steps on batches from next,
// changing only the local parameters. Reduce then synchronizes.
func (r *Replica) Inner(ctx context.Context, steps int, b *Batch, next func(i int, b *Batch)) (RoundResult, error) {
	var res RoundResult
	var lossSum float64
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		next(i, b)
		lossSum += r.Trainer.Step(b)
		res.Tokens += r.Trainer.Model.Tokens(b)
		res.Steps++
	}
	if res.Steps > 0 {
		res.Loss = lossSum / float64(res.Steps)
	}
	return res, nil
}

// Candidate is the proposed shared state after a successful Run or Reduce
// (DiLoCo: θ′; DDP: the updated parameters). Read-only; valid until Commit
// or Abort.
func (r *Replica) Candidate() []float32 {
	if r.Algo == DDP {
		return r.Trainer.Model.Weights()
	}
	return r.candGlobal
}

// Reduce is Run's synchronization phase for DiLoCo, exposed for callers
// that drive the inner steps themselves: pseudo-gradient Δᵢ = θ − θᵢ,
// weighted all-reduce, outer Nesterov step into the candidate. It may be
// called again after Abort (a retry with other members); the pseudo-gradient
// is recomputed from θ and the unchanged local parameters.
func (r *Replica) Reduce(ctx context.Context, ar AllReducer, res RoundResult) (RoundResult, error) {
	r.pending = true
	w := r.Trainer.Model.Weights()
	finite := true
	for i, g := range r.global {
		d := g - w[i]
		r.delta[i] = d
		if math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
			finite = false
		}
	}
	res.Weight, res.Excluded = float64(res.Tokens), nil
	if !finite || res.Tokens <= 0 {
		if !finite {
			res.Excluded = fmt.Errorf("pseudo-gradient has %w after %d local steps (loss %.4g); contributing nothing this round", ErrNonFinite, res.Steps, res.Loss)
		}
		Zero(r.delta)
		res.Weight = 0
	}
	sent, recv, err := ar.AllReduce(ctx, r.delta, res.Weight)
	res.Sent, res.Received = sent, recv
	if err != nil {
		return res, err
	}
	if !finiteSlice(r.delta) {
		return res, fmt.Errorf("train: averaged pseudo-gradient has %w", ErrNonFinite)
	}
	OuterStep(r.Outer, r.candGlobal, r.candMom, r.global, r.mom, r.delta)
	return res, nil
}

func (r *Replica) runDDP(ctx context.Context, ar AllReducer, steps int, b *Batch, next func(i int, b *Batch)) (RoundResult, error) {
	t := r.Trainer
	g := t.Model.Gradients()
	copy(r.saveW, t.Model.Weights())
	copy(r.saveM, t.Opt.M)
	copy(r.saveV, t.Opt.V)
	r.saveT = t.Opt.T
	var res RoundResult
	var lossSum float64
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		next(i, b)
		lossSum += t.Model.BatchGrad(b)
		tok := t.Model.Tokens(b)
		res.Tokens += tok
		weight := float64(tok)
		if !finiteSlice(g) {
			res.Excluded = fmt.Errorf("gradient has %w at step %d; contributing nothing", ErrNonFinite, i)
			Zero(g)
			weight = 0
		}
		sent, recv, err := ar.AllReduce(ctx, g, weight)
		res.Sent += sent
		res.Received += recv
		if err != nil {
			return res, err
		}
		t.Update()
	}
	res.Steps, res.Loss, res.Weight = steps, lossSum/float64(steps), float64(res.Tokens)
	return res, nil
}

// Commit makes the candidate the shared state: θ ← θ′ and the local
// parameters restart from it (DiLoCo); DDP parameters are already updated.
func (r *Replica) Commit() {
	if !r.pending {
		return
	}
	r.pending = false
	if r.Algo == DDP {
		return
	}
	r.global, r.candGlobal = r.candGlobal, r.global
	r.mom, r.candMom = r.candMom, r.mom
	copy(r.Trainer.Model.Weights(), r.global)
	if !finiteSlice(r.Trainer.Opt.M) || !finiteSlice(r.Trainer.Opt.V) {
		r.resetInner()
	}
}

// Abort discards the round's synchronization. DiLoCo keeps the local
// parameters (the inner steps need not be redone: a retry recomputes the
// pseudo-gradient with Reduce); DDP rolls parameters and optimizer state
// back to the round start.
func (r *Replica) Abort() {
	if !r.pending {
		return
	}
	if r.Algo == DDP {
		t := r.Trainer
		copy(t.Model.Weights(), r.saveW)
		copy(t.Opt.M, r.saveM)
		copy(t.Opt.V, r.saveV)
		t.Opt.T = r.saveT
		r.pending = false
		return
	}
	// DiLoCo: stay pending-free but keep θᵢ; Reduce may run again.
	r.pending = false
}

func finiteSlice(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// ReplicaState is what a checkpoint keeps of a replica between rounds: the
// state every member shares. For DiLoCo that is θ and the outer momentum
// (each member's inner AdamW state is its own, and a restored member starts
// it afresh); for DDP the parameters and the AdamW state, which are the
// same on every member.
type ReplicaState struct {
	Params   []float32 // θ (DiLoCo) or the parameters (DDP)
	Momentum []float32 // DiLoCo: outer Nesterov momentum
	AdamM    []float32 // DDP: AdamW first moment
	AdamV    []float32 // DDP: AdamW second moment
	AdamT    int       // DDP: AdamW step count
	// Step is the replica's position in the learning-rate schedule (its
	// local steps so far); a restored DiLoCo replica resumes the schedule
	// there with fresh AdamW moments.
	Step int
}

// State returns views of the shared state as of the last committed round.
// They are read-only and valid until the next Run, Reduce or Commit: copy
// them (a checkpoint's in-memory copy) before training goes on.
func (r *Replica) State() ReplicaState {
	if r.Algo == DiLoCo {
		return ReplicaState{Params: r.global, Momentum: r.mom, Step: r.Trainer.StepOffset + r.Trainer.Opt.T}
	}
	o := r.Trainer.Opt
	return ReplicaState{Params: r.Trainer.Model.Weights(), AdamM: o.M, AdamV: o.V, AdamT: o.T, Step: r.Trainer.StepOffset + o.T}
}

// Restore sets the shared state from a checkpoint, between rounds. DiLoCo
// also resets the local parameters to θ and the inner AdamW state.
func (r *Replica) Restore(s ReplicaState) error {
	if r.pending {
		return errors.New("train: restore during a round")
	}
	n := len(r.Trainer.Model.Weights())
	check := func(name string, x []float32) error {
		if len(x) != n {
			return fmt.Errorf("train: restoring %s: %d values, the model has %d parameters", name, len(x), n)
		}
		if !finiteSlice(x) {
			return fmt.Errorf("train: restoring %s: %w", name, ErrNonFinite)
		}
		return nil
	}
	if r.Algo == DiLoCo {
		if err := errors.Join(check("parameters", s.Params), check("outer momentum", s.Momentum)); err != nil {
			return err
		}
		copy(r.global, s.Params)
		copy(r.mom, s.Momentum)
		copy(r.Trainer.Model.Weights(), s.Params)
		r.resetInner()
		r.Trainer.Opt.T, r.Trainer.StepOffset = 0, max(s.Step, 0)
		return nil
	}
	if err := errors.Join(check("parameters", s.Params), check("AdamW first moment", s.AdamM), check("AdamW second moment", s.AdamV)); err != nil {
		return err
	}
	if s.AdamT < 0 {
		return fmt.Errorf("train: restoring AdamW step count %d", s.AdamT)
	}
	copy(r.Trainer.Model.Weights(), s.Params)
	o := r.Trainer.Opt
	copy(o.M, s.AdamM)
	copy(o.V, s.AdamV)
	o.T, r.Trainer.StepOffset = s.AdamT, max(s.Step-s.AdamT, 0)
	return nil
}
