package train

import (
	"math"
	"testing"
)

func TestScheduleValues(t *testing.T) {
	s := Schedule{Warmup: 10, Total: 110, Max: 1e-3, Min: 1e-4}
	cases := []struct {
		t    int
		want float64
	}{
		{1, 1e-4}, {5, 5e-4}, {10, 1e-3}, // warm-up, end of warm-up = Max
		{60, 5.5e-4},             // cosine midpoint = (Max+Min)/2
		{110, 1e-4}, {500, 1e-4}, // end and beyond = Min
	}
	for _, c := range cases {
		if got := s.LR(c.t); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("LR(%d) = %v, want %v", c.t, got, c.want)
		}
	}
	if !(s.LR(30) > s.LR(60) && s.LR(60) > s.LR(90)) {
		t.Error("cosine phase not decreasing")
	}
}

func TestAdamWHandComputed(t *testing.T) {
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.5, ClipNorm: 0}
	o := NewAdamW(2, cfg, []bool{true, false})
	p := []float32{1, 2}
	g := []float32{0.5, -0.25}
	lr := 0.1
	o.Step(p, g, lr)
	// Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+ε) = ±lr.
	// p0: 1·(1−0.1·0.5) − 0.1 = 0.85; p1 (no decay): 2 + 0.1 = 2.1.
	want := []float64{0.85, 2.1}
	for i := range p {
		if math.Abs(float64(p[i])-want[i]) > 1e-6 {
			t.Fatalf("step1 p[%d] = %v, want %v", i, p[i], want[i])
		}
	}
	// Step 2 with g = (0.1, 0.1), computed by hand in float64.
	g2 := []float32{0.1, 0.1}
	prev := []float64{float64(p[0]), float64(p[1])}
	o.Step(p, g2, lr)
	for i := range p {
		g1 := []float64{0.5, -0.25}[i]
		m := 0.9*(0.1*g1) + 0.1*0.1
		v := 0.99*(0.01*g1*g1) + 0.01*0.01
		mh, vh := m/(1-0.81), v/(1-0.99*0.99)
		w := prev[i]
		if i == 0 {
			w *= 1 - lr*0.5
		}
		w -= lr * mh / (math.Sqrt(vh) + 1e-8)
		if math.Abs(float64(p[i])-w) > 1e-6 {
			t.Fatalf("step2 p[%d] = %v, want %v", i, p[i], w)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	g := []float32{3, 4}
	if n := ClipGradNorm(g, 1); n != 5 || math.Abs(float64(g[0])-0.6) > 1e-7 || math.Abs(float64(g[1])-0.8) > 1e-7 {
		t.Fatalf("clip: norm %v grads %v", n, g)
	}
	g = []float32{0.3, 0.4}
	if ClipGradNorm(g, 1); g[0] != 0.3 || g[1] != 0.4 {
		t.Fatalf("clip changed small gradient: %v", g)
	}
}
