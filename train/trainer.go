package train

// Trainer runs the inner training loop for an MLP: forward, backward,
// global-norm clipping and an AdamW update per Step. It never allocates in
// Step or Evaluate.
type Trainer struct {
	Model    *MLP
	Opt      *AdamW
	Sched    Schedule
	LastNorm float64 // gradient norm (before clipping) of the last Step
	LastLR   float64 // learning rate used by the last Step
}

// NewTrainer creates a trainer with weight decay masked to the model's
// weight matrices.
func NewTrainer(m *MLP, cfg AdamWConfig, sched Schedule) *Trainer {
	return &Trainer{Model: m, Opt: NewAdamW(len(m.Params), cfg, m.DecayMask()), Sched: sched}
}

// Step trains on one batch and returns its loss (nats/byte) before the
// update.
func (t *Trainer) Step(b *Batch) float64 {
	loss := t.Model.ForwardBackward(b.Ctx, b.Tgt)
	t.LastLR = t.Sched.LR(t.Opt.T + 1)
	t.LastNorm = t.Opt.Step(t.Model.Params, t.Model.Grads, t.LastLR)
	return loss
}

// Evaluate returns the mean loss over the batches (weighted by batch size),
// without changing parameters or optimizer state.
func (t *Trainer) Evaluate(batches []*Batch) float64 {
	var sum float64
	n := 0
	for _, b := range batches {
		sum += t.Model.Loss(b.Ctx, b.Tgt) * float64(b.Size)
		n += b.Size
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
