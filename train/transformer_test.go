package train

import (
	"math"
	"strings"
	"testing"
)

func TestGradLayerNorm(t *testing.T) {
	r := newRNG(21)
	rows, D := 4, 7
	x, g, b, R := randSlice(&r, rows*D), randSlice(&r, D), randSlice(&r, D), randSlice(&r, rows*D)
	for i := range x { // an offset and a scale that normalisation must remove
		x[i] = 3*x[i] + 1.5
	}
	y, xhat, rstd := make([]float32, rows*D), make([]float32, rows*D), make([]float32, rows)
	dx, dg, db := make([]float32, rows*D), make([]float32, D), make([]float32, D)
	LayerNormForward(y, xhat, rstd, x, g, b, rows, D)
	LayerNormBackward(dx, R, xhat, rstd, g, rows, D)
	LayerNormParamGrad(dg, db, R, xhat, rows, D)
	f := func() float64 {
		LayerNormForward(y, xhat, rstd, x, g, b, rows, D)
		return dot64(R, y)
	}
	gradCheck(t, "layernorm dx", x, dx, f, 1e-2, 2e-3)
	gradCheck(t, "layernorm dg", g, dg, f, 1e-2, 1e-4)
	gradCheck(t, "layernorm db", b, db, f, 1e-2, 1e-4)

	// Each normalised row has mean 0 and variance 1 (up to eps).
	LayerNormForward(y, xhat, rstd, x, g, b, rows, D)
	for i := 0; i < rows; i++ {
		var s, s2 float64
		for _, v := range xhat[i*D : (i+1)*D] {
			s += float64(v)
			s2 += float64(v) * float64(v)
		}
		if math.Abs(s/float64(D)) > 1e-5 || math.Abs(s2/float64(D)-1) > 1e-4 {
			t.Fatalf("row %d: mean %v, variance %v", i, s/float64(D), s2/float64(D))
		}
	}
	// LayerNormBackward adds to dx.
	before := append([]float32(nil), dx...)
	LayerNormBackward(dx, R, xhat, rstd, g, rows, D)
	for i := range dx {
		if math.Abs(float64(dx[i]-2*before[i])) > 1e-5 {
			t.Fatalf("LayerNormBackward does not accumulate into dx at %d", i)
		}
	}
}

func TestGradGELU(t *testing.T) {
	r := newRNG(22)
	n := 60
	x, R := randSlice(&r, n), randSlice(&r, n)
	for i := range x {
		x[i] *= 2
	}
	y, th, dx := make([]float32, n), make([]float32, n), make([]float32, n)
	GELUForward(y, th, x)
	GELUBackward(dx, R, x, th)
	gradCheck(t, "gelu", x, dx, func() float64 {
		GELUForward(y, th, x)
		return dot64(R, y)
	}, 1e-2, 1e-3)
	// Reference values of the tanh approximation.
	in := []float32{-3, -1, 0, 0.5, 2}
	want := []float64{-0.0036373920817729943, -0.15880800939172324, 0, 0.34571400982514394, 1.954597694087775}
	out, th5 := make([]float32, 5), make([]float32, 5)
	GELUForward(out, th5, in)
	for i := range in {
		if math.Abs(float64(out[i])-want[i]) > 1e-6 {
			t.Fatalf("GELU(%v) = %v, want %v", in[i], out[i], want[i])
		}
	}
}

// naiveAttention is AttentionForward in float64, straight from the formula.
func naiveAttention(q, k, v []float32, B, T, H, D int) []float64 {
	dh := D / H
	out := make([]float64, B*T*D)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for i := 0; i < T; i++ {
				s := make([]float64, i+1)
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					for c := 0; c < dh; c++ {
						s[j] += float64(q[(b*T+i)*D+h*dh+c]) * float64(k[(b*T+j)*D+h*dh+c])
					}
					s[j] /= math.Sqrt(float64(dh))
					mx = math.Max(mx, s[j])
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					z += s[j]
				}
				for j := range s {
					for c := 0; c < dh; c++ {
						out[(b*T+i)*D+h*dh+c] += s[j] / z * float64(v[(b*T+j)*D+h*dh+c])
					}
				}
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	r := newRNG(23)
	B, T, H, D := 2, 5, 3, 12
	q, k, v, R := randSlice(&r, B*T*D), randSlice(&r, B*T*D), randSlice(&r, B*T*D), randSlice(&r, B*T*D)
	out, p, scratch := make([]float32, B*T*D), make([]float32, B*H*T*T), make([]float32, AttentionScratch(B, T, H, D))
	AttentionForward(out, p, q, k, v, scratch, B, T, H, D)
	want := naiveAttention(q, k, v, B, T, H, D)
	for i := range want {
		if math.Abs(float64(out[i])-want[i]) > 1e-5 {
			t.Fatalf("attention output %d = %v, want %v", i, out[i], want[i])
		}
	}
	dq, dk, dv := make([]float32, B*T*D), make([]float32, B*T*D), make([]float32, B*T*D)
	for i := range dk { // stale values must be overwritten
		dq[i], dk[i], dv[i] = 9, 9, 9
	}
	AttentionBackward(dq, dk, dv, R, p, q, k, v, scratch, B, T, H, D)
	f := func() float64 {
		AttentionForward(out, p, q, k, v, scratch, B, T, H, D)
		return dot64(R, out)
	}
	// The finite differences see the causal mask: a future key or value
	// changes nothing, so its gradient must be exactly what the analytic
	// pass gives it from later queries only.
	gradCheck(t, "attention dq", q, dq, f, 1e-2, 2e-3)
	gradCheck(t, "attention dk", k, dk, f, 1e-2, 2e-3)
	gradCheck(t, "attention dv", v, dv, f, 1e-2, 1e-4)
	// The last position's key and value are seen only by the last query.
	for b := 0; b < B; b++ {
		base := (b*T + T - 1) * D
		for c := 0; c < D; c++ {
			k[base+c] += 5
			v[base+c] -= 5
		}
	}
	out2 := make([]float32, B*T*D)
	AttentionForward(out2, p, q, k, v, scratch, B, T, H, D)
	for i := range out {
		pos := (i / D) % T
		if (pos < T-1) != (out[i] == out2[i]) {
			t.Fatalf("changing the last key/value: element %d (position %d) %v → %v", i, pos, out[i], out2[i])
		}
	}
}

func TestGradSoftmaxCERows(t *testing.T) {
	r := newRNG(24)
	rows, V := 5, 9
	logits := randSlice(&r, rows*V)
	tg := randBytes(&r, rows, V)
	losses, d := make([]float64, rows), make([]float32, rows*V)
	mean := func(dl []float32) float64 {
		softmaxCERows(dl, logits, tg, losses, V, 1/float32(rows), 0, rows)
		var s float64
		for _, l := range losses {
			s += l
		}
		return s / float64(rows)
	}
	if got, want := mean(d), SoftmaxCrossEntropy(nil, logits, tg, rows, V); math.Abs(got-want) > 1e-9 {
		t.Fatalf("loss %v, SoftmaxCrossEntropy %v", got, want)
	}
	gradCheck(t, "softmax-ce rows", logits, d, func() float64 { return mean(nil) }, 1e-2, 1e-3)
}

// tinyTransformer is a transformer small enough to gradient-check.
func tinyTransformer() TransformerConfig {
	return TransformerConfig{Context: 5, Dim: 8, Heads: 2, Layers: 2, Hidden: 12, Vocab: 11}
}

// randomBatch fills a batch with random bytes below vocab (Next is random
// too: the gradient check does not need a real text).
func randomBatch(r *rng, size, context, vocab int) *Batch {
	b := NewBatch(size, context)
	b.Ctx = randBytes(r, size*context, vocab)
	b.Next = randBytes(r, size*context, vocab)
	return b
}

func TestGradTransformerWhole(t *testing.T) {
	cfg := tinyTransformer()
	m := NewTransformer(cfg, 4, 7, NewPool(2))
	// Far from the GPT-2 init (std 0.02, gains 1, biases 0), so that every
	// path carries gradient well above float32 noise.
	r := newRNG(25)
	for _, v := range m.views {
		x := m.Params[v.Offset : v.Offset+v.Size()]
		for i := range x {
			x[i] += float32(r.norm() * 0.4)
		}
	}
	b := randomBatch(&r, 3, cfg.Context, cfg.Vocab) // fewer rows than MaxBatch
	loss := m.BatchGrad(b)
	if l := m.BatchLoss(b); l != loss {
		t.Fatalf("BatchLoss %v != BatchGrad %v", l, loss)
	}
	grads := append([]float32(nil), m.Grads...)
	for _, v := range m.Cfg.Views() {
		gradCheck(t, "transformer "+v.Name, m.Params[v.Offset:v.Offset+v.Size()], grads[v.Offset:v.Offset+v.Size()],
			func() float64 { return m.BatchLoss(b) }, 1e-2, 5e-3)
	}
	// BatchGrad overwrites: a second call gives the same gradient.
	for i := range m.Grads {
		m.Grads[i] = 7
	}
	m.BatchGrad(b)
	for i := range grads {
		if m.Grads[i] != grads[i] {
			t.Fatalf("second BatchGrad: gradient %d = %v, want %v", i, m.Grads[i], grads[i])
		}
	}
}

func TestTransformerCausal(t *testing.T) {
	cfg := TransformerConfig{Context: 12, Dim: 16, Heads: 4, Layers: 2, Hidden: 32, Vocab: 256}
	m := NewTransformer(cfg, 3, 1, NewPool(2))
	r := newRNG(26)
	for i := range m.Params { // make every position's output depend on its inputs
		m.Params[i] += float32(r.norm() * 0.2)
	}
	T, V := cfg.Context, cfg.Vocab
	b := randomBatch(&r, 3, T, V)
	m.BatchLoss(b)
	logits := append([]float32(nil), m.logits[:3*T*V]...)
	losses := append([]float64(nil), m.losses[:3*T]...)

	const at = 7 // change row 1's input byte at position 7
	b.Ctx[T+at] ^= 0x5a
	m.BatchLoss(b)
	for pos := 0; pos < 3*T; pos++ {
		same := true
		for j := 0; j < V; j++ {
			same = same && math.Float32bits(m.logits[pos*V+j]) == math.Float32bits(logits[pos*V+j])
		}
		changed := pos/T == 1 && pos%T >= at
		if same == changed || (!changed && m.losses[pos] != losses[pos]) {
			t.Fatalf("row %d position %d: logits unchanged=%v after changing position %d of row 1", pos/T, pos%T, same, at)
		}
	}
	b.Ctx[T+at] ^= 0x5a

	// A shorter window and a smaller batch see the same prefix, bit for bit.
	short := NewBatch(2, at)
	for row := 0; row < 2; row++ {
		copy(short.Ctx[row*at:(row+1)*at], b.Ctx[row*T:])
		copy(short.Next[row*at:(row+1)*at], b.Next[row*T:])
	}
	var want float64
	for row := 0; row < 2; row++ {
		for pos := 0; pos < at; pos++ {
			want += losses[row*T+pos]
		}
	}
	if got := m.BatchLoss(short); got != want/float64(2*at) {
		t.Fatalf("loss of the 2×%d prefix %v, want %v", at, got, want/float64(2*at))
	}
	for row := 0; row < 2; row++ {
		for pos := 0; pos < at; pos++ {
			for j := 0; j < V; j++ {
				if m.logits[(row*at+pos)*V+j] != logits[(row*T+pos)*V+j] {
					t.Fatalf("prefix logits differ at row %d position %d", row, pos)
				}
			}
		}
	}
}

func TestTransformerViews(t *testing.T) {
	for name, min := range map[string]int{"transformer-tiny": 100_000, "transformer-small": 500_000} {
		info, ok := Describe(name)
		if !ok || info.Params < min || !strings.Contains(info.Summary, "transformer") {
			t.Fatalf("%s: %+v (registered %v), want ≥ %d params", name, info, ok, min)
		}
	}
	if n, k := TransformerTiny().NumParams(), TransformerSmall().NumParams(); n != 137_088 || k != 875_008 {
		t.Fatalf("transformer-tiny has %d params, transformer-small %d: update their doc comments", n, k)
	}
	cfg := tinyTransformer()
	vs := cfg.Views()
	last := vs[len(vs)-1]
	if last.Offset+last.Size() != cfg.NumParams() || len(vs) != 6+15*cfg.Layers {
		t.Fatalf("%d views cover %d of %d params", len(vs), last.Offset+last.Size(), cfg.NumParams())
	}
	mm, err := NewModel("transformer-tiny", 2, 42, NewPool(1))
	if err != nil {
		t.Fatal(err)
	}
	a := mm.(*Transformer)
	b := NewTransformer(TransformerTiny(), 2, 42, NewPool(1))
	c := NewTransformer(TransformerTiny(), 2, 43, NewPool(1))
	same, diff := true, false
	for i := range a.Params {
		same = same && a.Params[i] == b.Params[i]
		diff = diff || a.Params[i] != c.Params[i]
	}
	if !same || !diff {
		t.Fatalf("init not deterministic in seed (same=%v diff=%v)", same, diff)
	}
	views := map[string]ParamView{}
	for _, v := range a.Views() {
		views[v.Name] = v
	}
	if &a.w.blocks[1].wo[0] != &a.Params[views["l1.attn.wo"].Offset] || &a.gr.headB[0] != &a.Grads[views["head.b"].Offset] {
		t.Fatal("named views do not alias the flat buffers")
	}
	mask := a.DecayMask()
	for name, want := range map[string]bool{"tok_emb": false, "pos_emb": false, "l0.ln1.g": false, "l0.attn.bq": false,
		"l0.attn.wq": true, "l1.attn.wo": true, "l1.mlp.w1": true, "l1.mlp.b2": false, "head.w": true, "head.b": false} {
		v := views[name]
		if mask[v.Offset] != want || mask[v.Offset+v.Size()-1] != want {
			t.Fatalf("decay of %s = %v, want %v", name, mask[v.Offset], want)
		}
	}
	// GPT-2 init: gains 1, biases 0, residual projections scaled by 1/√(2·Layers).
	std := func(name string) float64 {
		v := views[name]
		return math.Sqrt(SumSquares(a.Params[v.Offset:v.Offset+v.Size()]) / float64(v.Size()))
	}
	if a.w.blocks[0].ln2G[3] != 1 || a.w.blocks[1].b1[5] != 0 || math.Abs(std("l0.attn.wq")-0.02) > 0.002 ||
		math.Abs(std("l1.mlp.w2")-0.01) > 0.001 {
		t.Fatalf("init: gain %v bias %v std(wq) %v std(w2) %v", a.w.blocks[0].ln2G[3], a.w.blocks[1].b1[5],
			std("l0.attn.wq"), std("l1.mlp.w2"))
	}
	// Uniform-ish logits at init: the loss starts near ln 256.
	s, _ := NewSynthetic(SyntheticConfig{Seed: 1, Order: 2, Branch: 4, Alphabet: 256})
	batch := NewBatch(2, a.Cfg.Context)
	s.Fill(batch, 0, 0)
	if l := a.BatchLoss(batch); math.Abs(l-math.Log(256)) > 0.05 || a.Tokens(batch) != 2*64 {
		t.Fatalf("initial loss %v, want ≈ ln 256; tokens %d", l, a.Tokens(batch))
	}
}
