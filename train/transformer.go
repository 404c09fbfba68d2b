package train

import (
	"fmt"
	"math"
	"strings"
	"sync"
)

// TransformerConfig sizes a decoder-only byte-level transformer language
// model (pre-LN, GPT-2 style): token and learned position embeddings of
// width Dim, Layers blocks of causal self-attention (Heads heads) and a GELU
// MLP of width Hidden, each behind a LayerNorm and added to the residual
// stream, a final LayerNorm and an untied projection to Vocab logits. It
// predicts the byte after every position of a Context-byte window.
type TransformerConfig struct {
	Context, Dim, Heads, Layers, Hidden, Vocab int
}

// TransformerTiny is the "transformer-tiny" configuration (137,088 parameters).
func TransformerTiny() TransformerConfig {
	return TransformerConfig{Context: 64, Dim: 64, Heads: 4, Layers: 2, Hidden: 256, Vocab: 256}
}

// TransformerSmall is the "transformer-small" configuration (875,008 parameters).
func TransformerSmall() TransformerConfig {
	return TransformerConfig{Context: 128, Dim: 128, Heads: 4, Layers: 4, Hidden: 512, Vocab: 256}
}

func init() {
	for name, cfg := range map[string]TransformerConfig{"transformer-tiny": TransformerTiny(), "transformer-small": TransformerSmall()} {
		modelBuilders[name] = func(batch int, seed uint64, pool *Pool) Model { return NewTransformer(cfg, batch, seed, pool) }
		modelInfos[name] = ModelInfo{Name: name, Params: cfg.NumParams(), Context: cfg.Context, Summary: cfg.Summary()}
	}
}

// Summary describes the configuration in one line.
func (c TransformerConfig) Summary() string {
	return fmt.Sprintf("byte transformer (pre-LN, GPT-2 style): %d-byte context, dim %d, %d heads, %d layers, MLP %d, untied output",
		c.Context, c.Dim, c.Heads, c.Layers, c.Hidden)
}

// Validate reports whether the configuration is usable.
func (c TransformerConfig) Validate() error {
	switch {
	case c.Context < 1 || c.Dim < 1 || c.Heads < 1 || c.Layers < 1 || c.Hidden < 1:
		return fmt.Errorf("train: transformer config %+v: every size must be ≥ 1", c)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("train: transformer config %+v: Dim must be a multiple of Heads", c)
	case c.Vocab < 1 || c.Vocab > 256:
		return fmt.Errorf("train: transformer config %+v: byte-level model needs 1 ≤ Vocab ≤ 256", c)
	}
	return nil
}

// Views lists the named parameter tensors in their order in the flat
// buffer: tok_emb [Vocab×Dim], pos_emb [Context×Dim]; for each layer l,
// l<l>.ln1.{g,b} [Dim], l<l>.attn.{wq,wk,wv,wo} [Dim×Dim] each but wk
// followed by its bias {bq,bv,bo} [Dim], l<l>.ln2.{g,b}, l<l>.mlp.w1 [Dim×Hidden],
// l<l>.mlp.b1 [Hidden], l<l>.mlp.w2 [Hidden×Dim], l<l>.mlp.b2 [Dim]; then
// lnf.{g,b} [Dim], head.w [Dim×Vocab], head.b [Vocab]. Matrices are stored
// in×out: a layer computes x·W + b. Keys have no bias: it would add
// q_i·b to every score of query i, which the softmax cancels, so its
// gradient is always zero.
func (c TransformerConfig) Views() []ParamView {
	D := c.Dim
	var views []ParamView
	off := 0
	add := func(name string, shape ...int) {
		views = append(views, ParamView{Name: name, Offset: off, Shape: shape})
		off += views[len(views)-1].Size()
	}
	add("tok_emb", c.Vocab, D)
	add("pos_emb", c.Context, D)
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("l%d.", l)
		add(p+"ln1.g", D)
		add(p+"ln1.b", D)
		for _, n := range []string{"q", "k", "v", "o"} {
			add(p+"attn.w"+n, D, D)
			if n != "k" {
				add(p+"attn.b"+n, D)
			}
		}
		add(p+"ln2.g", D)
		add(p+"ln2.b", D)
		add(p+"mlp.w1", D, c.Hidden)
		add(p+"mlp.b1", c.Hidden)
		add(p+"mlp.w2", c.Hidden, D)
		add(p+"mlp.b2", D)
	}
	add("lnf.g", D)
	add("lnf.b", D)
	add("head.w", D, c.Vocab)
	add("head.b", c.Vocab)
	return views
}

// NumParams returns the number of float32 parameters.
func (c TransformerConfig) NumParams() int {
	vs := c.Views()
	last := vs[len(vs)-1]
	return last.Offset + last.Size()
}

// MatrixParams returns the number of parameters in weight matrices that
// multiply activations (attention, MLP and head; not embeddings, gains or
// biases).
func (c TransformerConfig) MatrixParams() int {
	D := c.Dim
	return c.Layers*(4*D*D+2*D*c.Hidden) + D*c.Vocab
}

// TrainFLOPsPerToken estimates the floating-point operations of one
// training step (forward and backward) per predicted byte with a full
// window: 6 per matrix parameter (2 forward, 4 backward) plus causal
// attention, whose forward multiplies q·k and p·v over (T+1)/2 positions on
// average, 2·2·Dim·(T+1)/2 per layer, tripled for the backward:
//
//	6·MatrixParams + 6·Layers·Dim·(Context+1).
//
// LayerNorm, GELU, softmax, embeddings and the optimizer are not counted.
func (c TransformerConfig) TrainFLOPsPerToken() float64 {
	return 6*float64(c.MatrixParams()) + 6*float64(c.Layers*c.Dim*(c.Context+1))
}

// blockParams are one layer's named tensors (views into a flat buffer).
type blockParams struct {
	ln1G, ln1B, wq, bq, wk, wv, bv, wo, bo, ln2G, ln2B, w1, b1, w2, b2 []float32
}

// transformerParams are the model's named tensors (views into a flat
// buffer: the parameters or the gradients).
type transformerParams struct {
	tokEmb, posEmb           []float32
	blocks                   []blockParams
	lnfG, lnfB, headW, headB []float32
}

func bindTransformerParams(cfg TransformerConfig, buf []float32) transformerParams {
	byName := map[string][]float32{}
	for _, v := range cfg.Views() {
		byName[v.Name] = buf[v.Offset : v.Offset+v.Size() : v.Offset+v.Size()]
	}
	p := transformerParams{tokEmb: byName["tok_emb"], posEmb: byName["pos_emb"], lnfG: byName["lnf.g"],
		lnfB: byName["lnf.b"], headW: byName["head.w"], headB: byName["head.b"]}
	for l := 0; l < cfg.Layers; l++ {
		get := func(n string) []float32 { return byName[fmt.Sprintf("l%d.%s", l, n)] }
		p.blocks = append(p.blocks, blockParams{
			ln1G: get("ln1.g"), ln1B: get("ln1.b"),
			wq: get("attn.wq"), bq: get("attn.bq"), wk: get("attn.wk"),
			wv: get("attn.wv"), bv: get("attn.bv"), wo: get("attn.wo"), bo: get("attn.bo"),
			ln2G: get("ln2.g"), ln2B: get("ln2.b"),
			w1: get("mlp.w1"), b1: get("mlp.b1"), w2: get("mlp.w2"), b2: get("mlp.b2")})
	}
	return p
}

// blockActs are one layer's activations kept for the backward pass, each
// (B·T)×Dim unless noted.
type blockActs struct {
	xhat1, h1    []float32 // LN1 normalised input and output
	q, k, v, att []float32 // projections and attention output (before wo)
	p            []float32 // attention probabilities, B×Heads×T×T (score gradients after backward)
	xhat2, h2    []float32 // LN2
	f, th, gl    []float32 // MLP pre-activation, its GELU tanh, GELU output: (B·T)×Hidden
	rstd1, rstd2 []float32 // B·T
}

// Transformer is a byte-level decoder-only transformer (see
// TransformerConfig) with all buffers preallocated for batches of up to
// Batch rows. Batches may be shorter than Cfg.Context (positions use the
// first rows of pos_emb). It is not safe for concurrent use.
//
// The output projection is untied from tok_emb: with a 256-byte vocabulary
// the head is a small share of the parameters, and untied it needs no
// second scatter into the embedding gradient.
type Transformer struct {
	Cfg   TransformerConfig
	Batch int // maximum batch size

	// Params and Grads are the flat buffers; w and gr view them by name.
	Params, Grads []float32
	w, gr         transformerParams

	pool  *Pool
	views []ParamView
	acts  []blockActs

	x                []float32 // residual stream, (B·T)×Dim
	xhatF, hF, rstdF []float32 // final LayerNorm
	logits, dLogits  []float32 // (B·T)×Vocab
	losses           []float64 // per position
	dx, dh           []float32 // residual-stream and LayerNorm-output gradients
	dq, dk, dv, datt []float32
	dff              []float32 // (B·T)×Hidden
	wT, attnScratch  []float32
	wg               sync.WaitGroup
	jobLN            lnJob
	jobGELU          geluJob
	jobAttn          attnJob
	jobCE            ceJob
}

// NewTransformer builds a model initialised from seed (see Init) with
// buffers for batches of up to batch rows. pool nil means DefaultPool. It
// panics on an invalid configuration.
func NewTransformer(cfg TransformerConfig, batch int, seed uint64, pool *Pool) *Transformer {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if pool == nil {
		pool = DefaultPool()
	}
	n := cfg.NumParams()
	m := &Transformer{Cfg: cfg, Batch: batch, Params: make([]float32, n), Grads: make([]float32, n),
		pool: pool, views: cfg.Views()}
	m.w = bindTransformerParams(cfg, m.Params)
	m.gr = bindTransformerParams(cfg, m.Grads)
	M, D, F, T, V := batch*cfg.Context, cfg.Dim, cfg.Hidden, cfg.Context, cfg.Vocab
	f := func(k int) []float32 { return make([]float32, k) }
	for l := 0; l < cfg.Layers; l++ {
		m.acts = append(m.acts, blockActs{
			xhat1: f(M * D), h1: f(M * D), q: f(M * D), k: f(M * D), v: f(M * D), att: f(M * D),
			p: f(batch * cfg.Heads * T * T), xhat2: f(M * D), h2: f(M * D),
			f: f(M * F), th: f(M * F), gl: f(M * F), rstd1: f(M), rstd2: f(M)})
	}
	m.x, m.xhatF, m.hF, m.rstdF = f(M*D), f(M*D), f(M*D), f(M)
	m.logits, m.dLogits, m.losses = f(M*V), f(M*V), make([]float64, M)
	m.dx, m.dh, m.dq, m.dk, m.dv, m.datt, m.dff = f(M*D), f(M*D), f(M*D), f(M*D), f(M*D), f(M*D), f(M*F)
	m.wT = f(max(D*D, D*F, D*V))
	m.attnScratch = f(AttentionScratch(batch, T, cfg.Heads, D))
	m.Init(seed)
	return m
}

// Init (re)initialises the parameters deterministically from seed, GPT-2
// style: matrices and tok_emb ~ N(0, 0.02²), pos_emb ~ N(0, 0.01²), the
// projections into the residual stream (attn.wo, mlp.w2) scaled down by
// 1/√(2·Layers), LayerNorm gains 1, biases 0.
func (m *Transformer) Init(seed uint64) {
	r := newRNG(mix(seed, 0x74666d72))
	resid := 0.02 / math.Sqrt(float64(2*m.Cfg.Layers))
	for _, v := range m.views {
		x := m.Params[v.Offset : v.Offset+v.Size()]
		std := 0.0
		switch {
		case strings.HasSuffix(v.Name, ".g"):
			for i := range x {
				x[i] = 1
			}
			continue
		case v.Name == "pos_emb":
			std = 0.01
		case strings.HasSuffix(v.Name, "attn.wo"), strings.HasSuffix(v.Name, "mlp.w2"):
			std = resid
		case len(v.Shape) == 2:
			std = 0.02
		}
		for i := range x {
			x[i] = float32(r.norm() * std)
		}
	}
}

// DecayMask reports, per parameter, whether weight decay applies: to the
// weight matrices only, not to embeddings (a byte rarely seen would be
// decayed towards zero between its few updates), LayerNorm gains or biases.
func (m *Transformer) DecayMask() []bool {
	mask := make([]bool, len(m.Params))
	for _, v := range m.views {
		if len(v.Shape) == 2 && !strings.HasSuffix(v.Name, "_emb") {
			for i := v.Offset; i < v.Offset+v.Size(); i++ {
				mask[i] = true
			}
		}
	}
	return mask
}

// Weights implements Model.
func (m *Transformer) Weights() []float32 { return m.Params }

// Gradients implements Model.
func (m *Transformer) Gradients() []float32 { return m.Grads }

// Views implements Model.
func (m *Transformer) Views() []ParamView { return m.Cfg.Views() }

// ContextLen implements Model.
func (m *Transformer) ContextLen() int { return m.Cfg.Context }

// MaxBatch implements Model.
func (m *Transformer) MaxBatch() int { return m.Batch }

// Tokens implements Model: a prediction at every position.
func (m *Transformer) Tokens(b *Batch) int { return b.Size * b.Context }

// BatchLoss implements Model: the mean loss over every position of every
// row, predicting Batch.Next.
func (m *Transformer) BatchLoss(b *Batch) float64 { return m.forward(b, false) }

// BatchGrad implements Model.
func (m *Transformer) BatchGrad(b *Batch) float64 {
	loss := m.forward(b, true)
	m.backward(b)
	return loss
}
