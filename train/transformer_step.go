package train

import (
	"fmt"
	"runtime"
	"sync"
)

// The transformer's forward and backward passes. With M = B·T positions,
// one block computes (pre-LN, GPT-2):
//
//	h1 = LN1(x);  q, k, v = h1·wq + bq, h1·wk, h1·wv + bv
//	x += Attention(q, k, v)·wo + bo
//	h2 = LN2(x);  x += GELU(h2·w1 + b1)·w2 + b2
//
// after x = tok_emb[ctx] + pos_emb[position], and the head computes
// logits = LNf(x)·head.w + head.b, scored against Batch.Next at every
// position. The residual stream x is updated in place: the backward pass
// needs only what each LayerNorm stored, not x itself. The big products run
// on the Pool; LayerNorm, GELU, attention (one task per sequence and head)
// and the loss are split over rows by parallelRange.

// lnJob runs LayerNormForward (or, if back, LayerNormBackward) over rows.
type lnJob struct {
	back                   bool
	y, xhat, rstd, x, g, b []float32 // forward
	dx, dy                 []float32 // backward (with xhat, rstd, g)
	d                      int
}

func (j *lnJob) runRange(lo, hi int) {
	d := j.d
	if j.back {
		LayerNormBackward(j.dx[lo*d:hi*d], j.dy[lo*d:hi*d], j.xhat[lo*d:hi*d], j.rstd[lo:hi], j.g, hi-lo, d)
		return
	}
	LayerNormForward(j.y[lo*d:hi*d], j.xhat[lo*d:hi*d], j.rstd[lo:hi], j.x[lo*d:hi*d], j.g, j.b, hi-lo, d)
}

// geluJob runs GELUForward (or, if back, GELUBackward in place on dx) over
// elements.
type geluJob struct {
	back         bool
	y, th, x, dx []float32
}

func (j *geluJob) runRange(lo, hi int) {
	if j.back {
		GELUBackward(j.dx[lo:hi], j.dx[lo:hi], j.x[lo:hi], j.th[lo:hi])
		return
	}
	GELUForward(j.y[lo:hi], j.th[lo:hi], j.x[lo:hi])
}

// attnJob runs attention heads: index = sequence·Heads + head.
type attnJob struct {
	back                      bool
	out, p, q, k, v           []float32
	dq, dk, dv, dout, scratch []float32
	t, heads, d               int
}

func (j *attnJob) runRange(lo, hi int) {
	for bh := lo; bh < hi; bh++ {
		b, h, sc := bh/j.heads, bh%j.heads, headScratch(j.scratch, bh, j.t, j.heads, j.d)
		if j.back {
			attentionHeadBackward(j.dq, j.dk, j.dv, j.dout, j.p, j.q, j.k, j.v, sc, b, h, j.t, j.heads, j.d)
		} else {
			attentionHead(j.out, j.p, j.q, j.k, j.v, sc, b, h, j.t, j.heads, j.d)
		}
	}
}

// ceJob runs softmaxCERows over rows.
type ceJob struct {
	d, logits []float32
	targets   []byte
	losses    []float64
	v         int
	scale     float32
}

func (j *ceJob) runRange(lo, hi int) {
	softmaxCERows(j.d, j.logits, j.targets, j.losses, j.v, j.scale, lo, hi)
}

func (m *Transformer) par(n int, job rangeJob) { parallelRange(m.pool.Workers(), n, job, &m.wg) }

func (m *Transformer) layerNorm(y, xhat, rstd, x, g, b []float32, rows int) {
	m.jobLN = lnJob{y: y, xhat: xhat, rstd: rstd, x: x, g: g, b: b, d: m.Cfg.Dim}
	m.par(rows, &m.jobLN)
}

// layerNormBack adds the input gradient to dx and overwrites dg, db.
func (m *Transformer) layerNormBack(dx, dg, db, dy, xhat, rstd, g []float32, rows int) {
	m.jobLN = lnJob{back: true, dx: dx, dy: dy, xhat: xhat, rstd: rstd, g: g, d: m.Cfg.Dim}
	m.par(rows, &m.jobLN)
	LayerNormParamGrad(dg, db, dy, xhat, rows, m.Cfg.Dim)
}

func (m *Transformer) check(b *Batch) {
	c := m.Cfg
	if b.Size < 1 || b.Size > m.Batch || b.Context < 1 || b.Context > c.Context ||
		len(b.Ctx) < b.Size*b.Context || len(b.Next) < b.Size*b.Context {
		panic(fmt.Sprintf("train: batch of %d×%d bytes does not fit transformer (batch %d, context %d)",
			b.Size, b.Context, m.Batch, c.Context))
	}
	M := b.Size * b.Context
	for i := 0; i < M; i++ {
		if int(b.Ctx[i]) >= c.Vocab || int(b.Next[i]) >= c.Vocab {
			panic(fmt.Sprintf("train: byte %d/%d outside vocab %d", b.Ctx[i], b.Next[i], c.Vocab))
		}
	}
}

// forward computes the logits and returns the mean loss; if grad, it also
// writes the loss gradient into dLogits.
func (m *Transformer) forward(b *Batch, grad bool) float64 {
	m.check(b)
	c, p := m.Cfg, m.pool
	T, D, F, V := b.Context, c.Dim, c.Hidden, c.Vocab
	M := b.Size * T
	x := m.x[:M*D]
	for r := 0; r < M; r++ {
		id, pos := int(b.Ctx[r]), r%T
		xr := x[r*D : (r+1)*D]
		copy(xr, m.w.tokEmb[id*D:(id+1)*D])
		Axpy(1, m.w.posEmb[pos*D:(pos+1)*D], xr)
	}
	for l := range m.acts {
		a, w := &m.acts[l], &m.w.blocks[l]
		m.layerNorm(a.h1, a.xhat1, a.rstd1, x, w.ln1G, w.ln1B, M)
		LinearForward(p, a.q, a.h1[:M*D], w.wq, w.bq, M, D, D)
		p.MatMul(a.k, a.h1[:M*D], w.wk, M, D, D, false)
		LinearForward(p, a.v, a.h1[:M*D], w.wv, w.bv, M, D, D)
		m.jobAttn = attnJob{out: a.att, p: a.p, q: a.q, k: a.k, v: a.v, scratch: m.attnScratch, t: T, heads: c.Heads, d: D}
		m.par(b.Size*c.Heads, &m.jobAttn)
		p.MatMul(x, a.att[:M*D], w.wo, M, D, D, true)
		addBias(x, w.bo, M, D)
		m.layerNorm(a.h2, a.xhat2, a.rstd2, x, w.ln2G, w.ln2B, M)
		LinearForward(p, a.f, a.h2[:M*D], w.w1, w.b1, M, D, F)
		m.jobGELU = geluJob{y: a.gl, th: a.th, x: a.f[:M*F]}
		m.par(M*F, &m.jobGELU)
		p.MatMul(x, a.gl[:M*F], w.w2, M, F, D, true)
		addBias(x, w.b2, M, D)
	}
	m.layerNorm(m.hF, m.xhatF, m.rstdF, x, m.w.lnfG, m.w.lnfB, M)
	LinearForward(p, m.logits, m.hF[:M*D], m.w.headW, m.w.headB, M, D, V)
	m.jobCE = ceJob{logits: m.logits, targets: b.Next, losses: m.losses, v: V, scale: 1 / float32(M)}
	if grad {
		m.jobCE.d = m.dLogits
	}
	m.par(M, &m.jobCE)
	var sum float64
	for _, l := range m.losses[:M] {
		sum += l
	}
	return sum / float64(M)
}

// backward overwrites Grads with the gradient of the mean loss, from the
// activations and dLogits left by forward(b, true).
func (m *Transformer) backward(b *Batch) {
	c, p := m.Cfg, m.pool
	T, D, F, V := b.Context, c.Dim, c.Hidden, c.Vocab
	M := b.Size * T
	dx, dh := m.dx[:M*D], m.dh[:M*D]
	linearBackwardT(p, dh, m.gr.headW, m.gr.headB, m.hF[:M*D], m.w.headW, m.wT, m.dLogits[:M*V], M, D, V, false)
	Zero(dx)
	m.layerNormBack(dx, m.gr.lnfG, m.gr.lnfB, dh, m.xhatF, m.rstdF, m.w.lnfG, M)
	for l := len(m.acts) - 1; l >= 0; l-- {
		a, w, g := &m.acts[l], &m.w.blocks[l], &m.gr.blocks[l]
		// MLP: dx flows unchanged into the MLP's output.
		dff := m.dff[:M*F]
		linearBackwardT(p, dff, g.w2, g.b2, a.gl[:M*F], w.w2, m.wT, dx, M, F, D, false)
		m.jobGELU = geluJob{back: true, dx: dff, x: a.f[:M*F], th: a.th}
		m.par(M*F, &m.jobGELU)
		linearBackwardT(p, dh, g.w1, g.b1, a.h2[:M*D], w.w1, m.wT, dff, M, D, F, false)
		m.layerNormBack(dx, g.ln2G, g.ln2B, dh, a.xhat2, a.rstd2, w.ln2G, M)
		// Attention.
		linearBackwardT(p, m.datt, g.wo, g.bo, a.att[:M*D], w.wo, m.wT, dx, M, D, D, false)
		m.jobAttn = attnJob{back: true, dq: m.dq, dk: m.dk, dv: m.dv, dout: m.datt, p: a.p, q: a.q, k: a.k, v: a.v,
			scratch: m.attnScratch, t: T, heads: c.Heads, d: D}
		m.par(b.Size*c.Heads, &m.jobAttn)
		linearBackwardT(p, dh, g.wq, g.bq, a.h1[:M*D], w.wq, m.wT, m.dq[:M*D], M, D, D, false)
		linearBackwardT(p, dh, g.wk, nil, a.h1[:M*D], w.wk, m.wT, m.dk[:M*D], M, D, D, true)
		linearBackwardT(p, dh, g.wv, g.bv, a.h1[:M*D], w.wv, m.wT, m.dv[:M*D], M, D, D, true)
		m.layerNormBack(dx, g.ln1G, g.ln1B, dh, a.xhat1, a.rstd1, w.ln1G, M)
	}
	// Embeddings: scatter in row order (deterministic).
	Zero(m.gr.tokEmb)
	Zero(m.gr.posEmb)
	for r := 0; r < M; r++ {
		id, pos := int(b.Ctx[r]), r%T
		dr := dx[r*D : (r+1)*D]
		Axpy(1, dr, m.gr.tokEmb[id*D:(id+1)*D])
		Axpy(1, dr, m.gr.posEmb[pos*D:(pos+1)*D])
	}
}

// addBias adds bias (n) to each of the rows of x (rows×n).
func addBias(x, bias []float32, rows, n int) {
	for r := 0; r < rows; r++ {
		Axpy(1, bias[:n], x[r*n:(r+1)*n])
	}
}

// rangeJob is work over the indices [0, n) that may be split into disjoint
// contiguous ranges run concurrently. Each index owns its outputs, so the
// result does not depend on the split.
type rangeJob interface{ runRange(lo, hi int) }

type rangeTask struct {
	job    rangeJob
	lo, hi int
	wg     *sync.WaitGroup
}

// rangeTasks feeds helper goroutines (one per CPU, started on first use and
// shared by every model, like DefaultPool's).
var (
	rangeOnce  sync.Once
	rangeTasks chan rangeTask
)

// parallelRange runs job over [0, n) in up to parts ranges: the caller runs
// the first and the helper goroutines the others. wg must not be shared by
// concurrent calls. It does not allocate.
func parallelRange(parts, n int, job rangeJob, wg *sync.WaitGroup) {
	parts = min(parts, n)
	if parts <= 1 {
		if n > 0 {
			job.runRange(0, n)
		}
		return
	}
	rangeOnce.Do(func() {
		procs := runtime.GOMAXPROCS(0)
		rangeTasks = make(chan rangeTask, 4*procs)
		for i := 0; i < procs; i++ {
			go func() {
				for t := range rangeTasks {
					t.job.runRange(t.lo, t.hi)
					t.wg.Done()
				}
			}()
		}
	})
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		rangeTasks <- rangeTask{job: job, lo: n * i / parts, hi: n * (i + 1) / parts, wg: wg}
	}
	job.runRange(0, n/parts)
	wg.Wait()
}
