package train

import "math"

// Schedule is linear warm-up to Max over Warmup steps, then cosine decay to
// Min at step Total. Steps are 1-based (the first optimizer step is 1).
type Schedule struct {
	Warmup, Total int
	Max, Min      float64
}

// LR returns the learning rate for 1-based step t:
//   - t ≤ Warmup: Max·t/Warmup (so LR(Warmup) = Max);
//   - Warmup < t ≤ Total: Min + ½(Max−Min)(1+cos(π·(t−Warmup)/(Total−Warmup)));
//   - t > Total: Min.
func (s Schedule) LR(t int) float64 {
	if t <= s.Warmup && s.Warmup > 0 {
		return s.Max * float64(max(t, 0)) / float64(s.Warmup)
	}
	if t >= s.Total || s.Total <= s.Warmup {
		if t < s.Total {
			return s.Max
		}
		return s.Min
	}
	p := float64(t-s.Warmup) / float64(s.Total-s.Warmup)
	return s.Min + 0.5*(s.Max-s.Min)*(1+math.Cos(math.Pi*p))
}

// AdamWConfig holds AdamW hyper-parameters. ClipNorm ≤ 0 disables clipping.
type AdamWConfig struct {
	Beta1, Beta2, Eps, WeightDecay, ClipNorm float64
}

// DefaultAdamW returns β=(0.9, 0.95), ε=1e-8, weight decay 0.1, clip 1.0.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipNorm: 1}
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), bias
// correction and global-norm gradient clipping. Its state (M, V, T) is plain
// data so it can be checkpointed.
type AdamW struct {
	Cfg   AdamWConfig
	M, V  []float32
	T     int    // number of steps taken
	Decay []bool // per-parameter weight-decay mask; nil = decay everything
}

// NewAdamW creates optimizer state for n parameters.
func NewAdamW(n int, cfg AdamWConfig, decayMask []bool) *AdamW {
	if decayMask != nil && len(decayMask) != n {
		panic("train: decay mask length does not match parameter count")
	}
	return &AdamW{Cfg: cfg, M: make([]float32, n), V: make([]float32, n), Decay: decayMask}
}

// ClipGradNorm scales grads in place so that their global L2 norm is at most
// maxNorm (if maxNorm > 0) and returns the norm before clipping.
func ClipGradNorm(grads []float32, maxNorm float64) float64 {
	norm := math.Sqrt(SumSquares(grads))
	if maxNorm > 0 && norm > maxNorm {
		s := float32(maxNorm / norm)
		for i := range grads {
			grads[i] *= s
		}
	}
	return norm
}

// Step clips grads (in place), then applies one AdamW update with learning
// rate lr:
//
//	m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²
//	θ ← θ − lr·wd·θ   (masked)
//	θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
//
// It returns the gradient norm before clipping.
func (o *AdamW) Step(params, grads []float32, lr float64) float64 {
	norm := ClipGradNorm(grads, o.Cfg.ClipNorm)
	o.T++
	b1, b2 := o.Cfg.Beta1, o.Cfg.Beta2
	bc1 := 1 - math.Pow(b1, float64(o.T))
	bc2 := 1 - math.Pow(b2, float64(o.T))
	fb1, fb2 := float32(b1), float32(b2)
	stepSize := lr / bc1
	invBC2 := 1 / bc2
	decay := float32(1 - lr*o.Cfg.WeightDecay)
	eps := o.Cfg.Eps
	m, v := o.M[:len(params)], o.V[:len(params)]
	grads = grads[:len(params)]
	for i, g := range grads {
		mi := fb1*m[i] + (1-fb1)*g
		vi := fb2*v[i] + (1-fb2)*g*g
		m[i], v[i] = mi, vi
		p := params[i]
		if o.Cfg.WeightDecay != 0 && (o.Decay == nil || o.Decay[i]) {
			p *= decay
		}
		p -= float32(stepSize * float64(mi) / (math.Sqrt(float64(vi)*invBC2) + eps))
		params[i] = p
	}
	return norm
}
