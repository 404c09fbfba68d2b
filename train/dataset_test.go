package train

import (
	"bytes"
	"math"
	"testing"
)

func TestSyntheticEntropyClosedForm(t *testing.T) {
	// Every context has 2 equally likely successors → entropy rate ln 2.
	for _, cfg := range []SyntheticConfig{
		{Seed: 1, Order: 2, Branch: 2, Alphabet: 16, Uniform: true},
		{Seed: 2, Order: 1, Branch: 2, Alphabet: 256, Uniform: true},
		{Seed: 3, Order: 2, Branch: 4, Alphabet: 8, Uniform: true}, // ln 4
	} {
		s, err := NewSynthetic(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := math.Log(float64(cfg.Branch))
		if got := s.EntropyRate(); math.Abs(got-want) > 1e-9 {
			t.Errorf("%+v: entropy rate %v, want %v", cfg, got, want)
		}
	}
	// Branch 1 is deterministic: entropy 0.
	s, _ := NewSynthetic(SyntheticConfig{Seed: 4, Order: 2, Branch: 1, Alphabet: 10})
	if h := s.EntropyRate(); h != 0 {
		t.Errorf("deterministic process entropy %v", h)
	}
}

func TestSyntheticEntropyEmpirical(t *testing.T) {
	s, err := NewSynthetic(SyntheticConfig{Seed: 5, Order: 2, Branch: 4, Alphabet: 16})
	if err != nil {
		t.Fatal(err)
	}
	h := s.EntropyRate()
	if h <= 0 || h >= math.Log(4) {
		t.Fatalf("entropy rate %v outside (0, ln 4)", h)
	}
	// Mean −log p over sampled examples estimates the entropy rate.
	b := NewBatch(1000, 8)
	var sum float64
	n := 0
	for i := 0; i < 40; i++ {
		s.Fill(b, 0, i)
		for row := 0; row < b.Size; row++ {
			lp := s.LogProb(b.Ctx[row*8:(row+1)*8], b.Tgt[row])
			if math.IsInf(lp, 0) || math.IsNaN(lp) {
				t.Fatalf("sampled an impossible transition")
			}
			sum -= lp
			n++
		}
	}
	emp := sum / float64(n)
	// Std of −log p is < 1 nat, so the std error over 40k samples is < 0.005.
	t.Logf("entropy rate %.4f, empirical %.4f", h, emp)
	if math.Abs(emp-h) > 0.02 {
		t.Fatalf("empirical %v vs exact %v", emp, h)
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	cfg := SyntheticConfig{Seed: 9, Order: 2, Branch: 4, Alphabet: 256}
	s1, _ := NewSynthetic(cfg)
	s2, _ := NewSynthetic(cfg)
	a, b, c := NewBatch(16, 8), NewBatch(16, 8), NewBatch(16, 8)
	s1.Fill(a, 1, 7)
	s1.Fill(c, 1, 8) // drawing other batches in between changes nothing
	s2.Fill(b, 1, 7)
	if !bytes.Equal(a.Ctx, b.Ctx) || !bytes.Equal(a.Tgt, b.Tgt) {
		t.Fatal("same (seed, rank, index) gave different batches")
	}
	s1.Fill(c, 2, 7)
	if bytes.Equal(a.Ctx, c.Ctx) {
		t.Fatal("different ranks gave the same batch")
	}
	if n := testing.AllocsPerRun(10, func() { s1.Fill(a, 0, 3) }); n != 0 {
		t.Fatalf("Fill allocates %v", n)
	}
}

func TestGoRootDataset(t *testing.T) {
	const capBytes = 2 << 20
	d1, err := LoadGoRoot(capBytes, 10)
	if err != nil {
		t.Skipf("no GOROOT source: %v", err)
	}
	d2, err := LoadGoRoot(capBytes, 10)
	if err != nil {
		t.Fatal(err)
	}
	total := len(d1.Train) + len(d1.Val) - len(d1.TrainFiles) - len(d1.ValFiles)
	t.Logf("train %d files %d bytes, val %d files %d bytes", len(d1.TrainFiles), len(d1.Train), len(d1.ValFiles), len(d1.Val))
	if total < capBytes || total > capBytes+(2<<20) {
		t.Fatalf("read %d bytes, cap %d", total, capBytes)
	}
	if !bytes.Equal(d1.Train, d2.Train) || !bytes.Equal(d1.Val, d2.Val) {
		t.Fatal("split not deterministic")
	}
	seen := map[string]bool{}
	for _, f := range d1.TrainFiles {
		if InValidation(f, 10) {
			t.Fatalf("train file %s hashes to validation", f)
		}
		seen[f] = true
	}
	for _, f := range d1.ValFiles {
		if seen[f] || !InValidation(f, 10) {
			t.Fatalf("validation file %s in both splits or misassigned", f)
		}
	}
	src1, src2 := d1.TrainSource(3), d2.TrainSource(3)
	a, b := NewBatch(32, 8), NewBatch(32, 8)
	src1.Fill(a, 0, 5)
	src2.Fill(b, 0, 5)
	if !bytes.Equal(a.Ctx, b.Ctx) || !bytes.Equal(a.Tgt, b.Tgt) {
		t.Fatal("batches not reproducible")
	}
	src1.Fill(b, 1, 5)
	if bytes.Equal(a.Ctx, b.Ctx) {
		t.Fatal("ranks share batches")
	}
}
