package train

import (
	"math"
	"testing"
)

// gradCheck compares analytic gradients with central finite differences of
// the float32 computation, f(θ+ε)−f(θ−ε) / 2ε, for every coordinate of x.
// Error measure: ‖g−ĝ‖ / (‖g‖+‖ĝ‖) which must be below tol.
func gradCheck(t *testing.T, name string, x, grad []float32, f func() float64, eps float32, tol float64) {
	t.Helper()
	var diff, na, nn float64
	worst, worstI := 0.0, -1
	for i := range x {
		old := x[i]
		x[i] = old + eps
		lp := f()
		x[i] = old - eps
		lm := f()
		x[i] = old
		num := (lp - lm) / float64(2*eps)
		d := num - float64(grad[i])
		diff += d * d
		na += float64(grad[i]) * float64(grad[i])
		nn += num * num
		if math.Abs(d) > worst {
			worst, worstI = math.Abs(d), i
		}
	}
	rel := math.Sqrt(diff) / (math.Sqrt(na) + math.Sqrt(nn) + 1e-12)
	t.Logf("%s: relative error %.2e (worst abs %.2e at %d, |g|=%.3g)", name, rel, worst, worstI, math.Sqrt(na))
	if rel > tol || math.IsNaN(rel) {
		t.Fatalf("%s: relative gradient error %.3e > %.1e", name, rel, tol)
	}
}

func dot64(r, x []float32) float64 {
	var s float64
	for i := range x {
		s += float64(r[i]) * float64(x[i])
	}
	return s
}

func randBytes(r *rng, n, vocab int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.intn(vocab))
	}
	return b
}

func TestGradEmbedding(t *testing.T) {
	r := newRNG(3)
	B, K, E, V := 5, 3, 4, 6
	emb := randSlice(&r, V*E)
	ids := randBytes(&r, B*K, V)
	ids[0], ids[1] = 2, 2 // repeated id: gradients must accumulate
	R := randSlice(&r, B*K*E)
	out := make([]float32, B*K*E)
	dEmb := make([]float32, V*E)
	EmbedBackward(dEmb, R, ids, B, K, E)
	gradCheck(t, "embedding", emb, dEmb, func() float64 {
		EmbedForward(out, emb, ids, B, K, E)
		return dot64(R, out)
	}, 1e-2, 1e-4)
}

func TestGradLinear(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := newRNG(4)
	B, in, outD := 6, 7, 5
	x, w, bias := randSlice(&r, B*in), randSlice(&r, in*outD), randSlice(&r, outD)
	R := randSlice(&r, B*outD)
	out := make([]float32, B*outD)
	dX, dW, dB := make([]float32, B*in), make([]float32, in*outD), make([]float32, outD)
	LinearBackward(p, dX, dW, dB, x, w, R, B, in, outD)
	f := func() float64 {
		LinearForward(p, out, x, w, bias, B, in, outD)
		return dot64(R, out)
	}
	// The layer is linear in each input, so central differences are exact up
	// to float32 rounding.
	gradCheck(t, "linear dW", w, dW, f, 1e-2, 1e-4)
	gradCheck(t, "linear db", bias, dB, f, 1e-2, 1e-4)
	gradCheck(t, "linear dx", x, dX, f, 1e-2, 1e-4)
}

func TestGradTanh(t *testing.T) {
	r := newRNG(5)
	n := 40
	x, R := randSlice(&r, n), randSlice(&r, n)
	y, dx := make([]float32, n), make([]float32, n)
	TanhForward(y, x)
	TanhBackward(dx, R, y)
	gradCheck(t, "tanh", x, dx, func() float64 {
		TanhForward(y, x)
		return dot64(R, y)
	}, 1e-2, 1e-3)
}

func TestGradSoftmaxCE(t *testing.T) {
	r := newRNG(6)
	B, V := 4, 9
	logits := randSlice(&r, B*V)
	tg := randBytes(&r, B, V)
	d := make([]float32, B*V)
	SoftmaxCrossEntropy(d, logits, tg, B, V)
	gradCheck(t, "softmax-ce", logits, d, func() float64 {
		return SoftmaxCrossEntropy(nil, logits, tg, B, V)
	}, 1e-2, 1e-3)
	// Uniform logits give exactly ln V.
	Zero(logits)
	if got := SoftmaxCrossEntropy(nil, logits, tg, B, V); math.Abs(got-math.Log(float64(V))) > 1e-6 {
		t.Fatalf("uniform logits: loss %v want ln %d", got, V)
	}
}

func TestGradMLPWhole(t *testing.T) {
	cfg := MLPConfig{Context: 3, Embed: 4, Hidden: 6, Vocab: 7}
	B := 5
	m := NewMLP(cfg, B, 7, NewPool(1))
	r := newRNG(8)
	for i := range m.B1 { // non-zero biases so their path is exercised
		m.B1[i] = float32(r.norm() * 0.3)
	}
	for i := range m.B2 {
		m.B2[i] = float32(r.norm() * 0.3)
	}
	ctx := randBytes(&r, B*cfg.Context, cfg.Vocab)
	tg := randBytes(&r, B, cfg.Vocab)
	loss := m.ForwardBackward(ctx, tg)
	if math.Abs(loss-m.Loss(ctx, tg)) > 1e-9 {
		t.Fatal("Loss and ForwardBackward disagree")
	}
	grads := append([]float32(nil), m.Grads...)
	for _, v := range cfg.Views() {
		gradCheck(t, "mlp "+v.Name, m.Params[v.Offset:v.Offset+v.Size()], grads[v.Offset:v.Offset+v.Size()],
			func() float64 { return m.Loss(ctx, tg) }, 1e-2, 2e-3)
	}
}

func TestMLPViews(t *testing.T) {
	cfg := MLPTiny()
	vs := cfg.Views()
	last := vs[len(vs)-1]
	if last.Offset+last.Size() != cfg.NumParams() {
		t.Fatalf("views cover %d of %d params", last.Offset+last.Size(), cfg.NumParams())
	}
	a := NewMLP(cfg, 2, 42, NewPool(1))
	b := NewMLP(cfg, 2, 42, NewPool(1))
	c := NewMLP(cfg, 2, 43, NewPool(1))
	same, diff := true, false
	for i := range a.Params {
		same = same && a.Params[i] == b.Params[i]
		diff = diff || a.Params[i] != c.Params[i]
	}
	if !same || !diff {
		t.Fatalf("init not deterministic in seed (same=%v diff=%v)", same, diff)
	}
	if &a.W1[0] != &a.Params[vs[1].Offset] || &a.GB2[0] != &a.Grads[vs[4].Offset] {
		t.Fatal("named views do not alias the flat buffers")
	}
}
