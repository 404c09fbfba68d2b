package train

import (
	"fmt"
	"slices"
)

// Model is a byte-level language model trained by Trainer. Its parameters and
// gradients are single flat float32 buffers (so they can be all-reduced,
// checkpointed and optimized as one vector), described by Views. A Model is
// not safe for concurrent use and never allocates in BatchLoss or BatchGrad.
type Model interface {
	// Weights is the flat parameter buffer; Gradients has the same layout.
	Weights() []float32
	Gradients() []float32
	// Views names the parameter tensors in their order in Weights.
	Views() []ParamView
	// DecayMask reports, per parameter, whether AdamW weight decay applies.
	DecayMask() []bool
	// ContextLen is the number of bytes per batch row (Batch.Context).
	ContextLen() int
	// MaxBatch is the largest Batch.Size the model's buffers hold.
	MaxBatch() int
	// Tokens is the number of predictions a batch trains on.
	Tokens(b *Batch) int
	// BatchLoss returns the mean cross-entropy (nats/byte) over the batch's
	// predictions without touching gradients.
	BatchLoss(b *Batch) float64
	// BatchGrad returns the mean loss and overwrites Gradients with its
	// gradient.
	BatchGrad(b *Batch) float64
	// Init (re)initialises the parameters deterministically from seed.
	Init(seed uint64)
}

// ModelInfo describes a named built-in model.
type ModelInfo struct {
	Name    string
	Params  int
	Context int
	Summary string
}

// modelBuilders maps built-in model names to constructors.
var modelBuilders = map[string]func(batch int, seed uint64, pool *Pool) Model{
	"mlp-tiny": func(batch int, seed uint64, pool *Pool) Model { return NewMLP(MLPTiny(), batch, seed, pool) },
}

// modelInfos describes each built-in model (filled by init functions of the
// files defining them).
var modelInfos = map[string]ModelInfo{
	"mlp-tiny": {Name: "mlp-tiny", Params: MLPTiny().NumParams(), Context: MLPTiny().Context,
		Summary: fmt.Sprintf("byte MLP: %d-byte context, embed %d, hidden %d", MLPTiny().Context, MLPTiny().Embed, MLPTiny().Hidden)},
}

// defaultLR is the peak inner learning rate per model family.
var defaultLR = map[string]float64{}

// DefaultSchedule is the inner learning-rate schedule the built-in trainer
// uses for a model over total optimizer steps: warm-up over the first 5%
// (at most 100 steps), cosine decay from 3e-3 to a tenth of it.
func DefaultSchedule(name string, total int) Schedule {
	lr, ok := defaultLR[name]
	if !ok {
		lr = 3e-3
	}
	total = max(total, 1)
	return Schedule{Warmup: min(100, max(1, total/20)), Total: total, Max: lr, Min: lr / 10}
}

// ModelNames lists the built-in model names, sorted.
func ModelNames() []string {
	names := make([]string, 0, len(modelBuilders))
	for n := range modelBuilders {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Describe returns the description of a built-in model.
func Describe(name string) (ModelInfo, bool) {
	i, ok := modelInfos[name]
	return i, ok
}

// NewModel builds the named built-in model with buffers for batches of up
// to batch rows, initialised from seed. pool nil means DefaultPool.
func NewModel(name string, batch int, seed uint64, pool *Pool) (Model, error) {
	b, ok := modelBuilders[name]
	if !ok {
		return nil, fmt.Errorf("train: unknown model %q (built-in models: %v)", name, ModelNames())
	}
	if batch < 1 {
		return nil, fmt.Errorf("train: batch size %d < 1", batch)
	}
	return b(batch, seed, pool), nil
}

// Weights implements Model.
func (m *MLP) Weights() []float32 { return m.Params }

// Gradients implements Model.
func (m *MLP) Gradients() []float32 { return m.Grads }

// Views implements Model.
func (m *MLP) Views() []ParamView { return m.Cfg.Views() }

// ContextLen implements Model.
func (m *MLP) ContextLen() int { return m.Cfg.Context }

// MaxBatch implements Model.
func (m *MLP) MaxBatch() int { return m.Batch }

// Tokens implements Model: one prediction (the byte after the context) per row.
func (m *MLP) Tokens(b *Batch) int { return b.Size }

// BatchLoss implements Model.
func (m *MLP) BatchLoss(b *Batch) float64 { return m.Loss(b.Ctx, b.Tgt) }

// BatchGrad implements Model.
func (m *MLP) BatchGrad(b *Batch) float64 { return m.ForwardBackward(b.Ctx, b.Tgt) }
