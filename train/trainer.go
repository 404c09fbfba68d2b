package train

// Trainer runs the inner training loop for a Model: forward, backward,
// global-norm clipping and an AdamW update per Step. It never allocates in
// Step or Evaluate.
type Trainer struct {
	Model    Model
	Opt      *AdamW
	Sched    Schedule
	LastNorm float64 // gradient norm (before clipping) of the last Step
	LastLR   float64 // learning rate used by the last Step
	// StepOffset is where the schedule stood when the optimizer state was
	// last reset (a restored DiLoCo replica): the learning rate of a step
	// is Sched.LR(StepOffset + Opt.T + 1).
	StepOffset int
}

// NewTrainer creates a trainer with weight decay masked to the model's
// weight matrices.
func NewTrainer(m Model, cfg AdamWConfig, sched Schedule) *Trainer {
	return &Trainer{Model: m, Opt: NewAdamW(len(m.Weights()), cfg, m.DecayMask()), Sched: sched}
}

// Step trains on one batch and returns its loss (nats/byte) before the
// update.
func (t *Trainer) Step(b *Batch) float64 {
	loss := t.Model.BatchGrad(b)
	t.Update()
	return loss
}

// Update applies one AdamW step (scheduled learning rate, clipping) with
// the model's current gradients: the second half of Step, for callers that
// change the gradients in between (data parallelism averages them).
func (t *Trainer) Update() {
	t.LastLR = t.Sched.LR(t.StepOffset + t.Opt.T + 1)
	t.LastNorm = t.Opt.Step(t.Model.Weights(), t.Model.Gradients(), t.LastLR)
}

// Evaluate returns the mean loss over the batches (weighted by their
// predictions), without changing parameters or optimizer state.
func (t *Trainer) Evaluate(batches []*Batch) float64 {
	var sum float64
	n := 0
	for _, b := range batches {
		k := t.Model.Tokens(b)
		sum += t.Model.BatchLoss(b) * float64(k)
		n += k
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// FillBatches draws count batches from src for rank starting at index start.
func FillBatches(src Source, count, size, context, rank, start int) []*Batch {
	bs := make([]*Batch, count)
	for i := range bs {
		bs[i] = NewBatch(size, context)
		src.Fill(bs[i], rank, start+i)
	}
	return bs
}
