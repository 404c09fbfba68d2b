package train

import (
	"fmt"
	"math"
)

// MLPConfig sizes a byte-level MLP language model: Context previous bytes are
// embedded (Embed dims each), concatenated, passed through one tanh hidden
// layer of width Hidden, then projected to Vocab logits.
type MLPConfig struct {
	Context, Embed, Hidden, Vocab int
}

// MLPTiny is the "mlp-tiny" configuration.
func MLPTiny() MLPConfig { return MLPConfig{Context: 8, Embed: 32, Hidden: 256, Vocab: 256} }

// NumParams returns the number of float32 parameters.
func (c MLPConfig) NumParams() int {
	in := c.Context * c.Embed
	return c.Vocab*c.Embed + in*c.Hidden + c.Hidden + c.Hidden*c.Vocab + c.Vocab
}

// ParamView names a contiguous range of the flat parameter vector.
type ParamView struct {
	Name   string
	Offset int
	Shape  []int
}

// Size is the number of elements in the view.
func (v ParamView) Size() int {
	n := 1
	for _, d := range v.Shape {
		n *= d
	}
	return n
}

// Views lists the named parameter tensors in their order in the flat buffer:
// emb [Vocab×Embed], w1 [Context·Embed×Hidden], b1 [Hidden],
// w2 [Hidden×Vocab], b2 [Vocab].
func (c MLPConfig) Views() []ParamView {
	in := c.Context * c.Embed
	shapes := []struct {
		name  string
		shape []int
	}{
		{"emb", []int{c.Vocab, c.Embed}},
		{"w1", []int{in, c.Hidden}},
		{"b1", []int{c.Hidden}},
		{"w2", []int{c.Hidden, c.Vocab}},
		{"b2", []int{c.Vocab}},
	}
	views := make([]ParamView, len(shapes))
	off := 0
	for i, s := range shapes {
		views[i] = ParamView{Name: s.name, Offset: off, Shape: s.shape}
		off += views[i].Size()
	}
	return views
}

// MLP is a byte-level MLP language model with all buffers preallocated for a
// fixed maximum batch size. It is not safe for concurrent use.
type MLP struct {
	Cfg   MLPConfig
	Batch int // maximum batch size

	// Params and Grads are flat buffers; the named fields below alias them.
	Params, Grads                 []float32
	Emb, W1, B1, W2, B2           []float32
	GEmb, GW1, GB1, GW2, GB2      []float32
	x, h, logits, dLogits, dH, dX []float32
	pool                          *Pool
}

// NewMLP builds a model with deterministic initialisation from seed and
// buffers sized for batches of up to batch rows. pool nil means DefaultPool.
func NewMLP(cfg MLPConfig, batch int, seed uint64, pool *Pool) *MLP {
	if cfg.Vocab > 256 || cfg.Vocab < 1 {
		panic(fmt.Sprintf("train: byte-level model needs 1 ≤ Vocab ≤ 256, got %d", cfg.Vocab))
	}
	if pool == nil {
		pool = DefaultPool()
	}
	n := cfg.NumParams()
	m := &MLP{Cfg: cfg, Batch: batch, Params: make([]float32, n), Grads: make([]float32, n), pool: pool}
	views := cfg.Views()
	pv := func(buf []float32, i int) []float32 {
		v := views[i]
		return buf[v.Offset : v.Offset+v.Size() : v.Offset+v.Size()]
	}
	m.Emb, m.W1, m.B1, m.W2, m.B2 = pv(m.Params, 0), pv(m.Params, 1), pv(m.Params, 2), pv(m.Params, 3), pv(m.Params, 4)
	m.GEmb, m.GW1, m.GB1, m.GW2, m.GB2 = pv(m.Grads, 0), pv(m.Grads, 1), pv(m.Grads, 2), pv(m.Grads, 3), pv(m.Grads, 4)
	in := cfg.Context * cfg.Embed
	m.x = make([]float32, batch*in)
	m.dX = make([]float32, batch*in)
	m.h = make([]float32, batch*cfg.Hidden)
	m.dH = make([]float32, batch*cfg.Hidden)
	m.logits = make([]float32, batch*cfg.Vocab)
	m.dLogits = make([]float32, batch*cfg.Vocab)
	m.Init(seed)
	return m
}

// Init (re)initialises the parameters deterministically from seed:
// emb ~ N(0, 1), w1 ~ N(0, 1/in), w2 ~ N(0, 1/Hidden)·0.5, biases 0.
func (m *MLP) Init(seed uint64) {
	r := newRNG(mix(seed, 0x6d6c70))
	fill := func(x []float32, std float64) {
		for i := range x {
			x[i] = float32(r.norm() * std)
		}
	}
	fill(m.Emb, 1)
	fill(m.W1, 1/math.Sqrt(float64(m.Cfg.Context*m.Cfg.Embed)))
	fill(m.W2, 0.5/math.Sqrt(float64(m.Cfg.Hidden)))
	Zero(m.B1)
	Zero(m.B2)
}

// DecayMask reports, per parameter, whether weight decay applies (matrices
// w1, w2 only; not embeddings or biases).
func (m *MLP) DecayMask() []bool {
	mask := make([]bool, len(m.Params))
	for _, v := range m.Cfg.Views() {
		if v.Name == "w1" || v.Name == "w2" {
			for i := v.Offset; i < v.Offset+v.Size(); i++ {
				mask[i] = true
			}
		}
	}
	return mask
}

func (m *MLP) check(ctx, tgt []byte) int {
	B := len(tgt)
	if B > m.Batch || len(ctx) != B*m.Cfg.Context {
		panic(fmt.Sprintf("train: batch of %d targets / %d context bytes does not fit model (batch %d, context %d)",
			B, len(ctx), m.Batch, m.Cfg.Context))
	}
	return B
}

func (m *MLP) forward(ctx, tgt []byte, dLogits []float32) float64 {
	c := m.Cfg
	B := m.check(ctx, tgt)
	in := c.Context * c.Embed
	EmbedForward(m.x, m.Emb, ctx, B, c.Context, c.Embed)
	LinearForward(m.pool, m.h, m.x[:B*in], m.W1, m.B1, B, in, c.Hidden)
	TanhForward(m.h[:B*c.Hidden], m.h[:B*c.Hidden])
	LinearForward(m.pool, m.logits, m.h[:B*c.Hidden], m.W2, m.B2, B, c.Hidden, c.Vocab)
	for _, t := range tgt {
		if int(t) >= c.Vocab {
			panic(fmt.Sprintf("train: target %d outside vocab %d", t, c.Vocab))
		}
	}
	return SoftmaxCrossEntropy(dLogits, m.logits, tgt, B, c.Vocab)
}

// Loss returns the mean cross-entropy (nats/byte) of predicting tgt[b] from
// ctx[b·Context:(b+1)·Context], without touching gradients.
func (m *MLP) Loss(ctx, tgt []byte) float64 { return m.forward(ctx, tgt, nil) }

// ForwardBackward returns the mean loss and overwrites Grads with its gradient.
func (m *MLP) ForwardBackward(ctx, tgt []byte) float64 {
	c := m.Cfg
	B := len(tgt)
	loss := m.forward(ctx, tgt, m.dLogits)
	in := c.Context * c.Embed
	hB := m.h[:B*c.Hidden]
	LinearBackward(m.pool, m.dH, m.GW2, m.GB2, hB, m.W2, m.dLogits[:B*c.Vocab], B, c.Hidden, c.Vocab)
	TanhBackward(m.dH[:B*c.Hidden], m.dH[:B*c.Hidden], hB)
	LinearBackward(m.pool, m.dX, m.GW1, m.GB1, m.x[:B*in], m.W1, m.dH[:B*c.Hidden], B, in, c.Hidden)
	Zero(m.GEmb)
	EmbedBackward(m.GEmb, m.dX, ctx, B, c.Context, c.Embed)
	return loss
}
