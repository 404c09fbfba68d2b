package worker

import (
	"testing"
	"time"
)

func TestMatmul(t *testing.T) {
	const n = 3
	a := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	id := []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}
	c := make([]float32, n*n)
	matmul(c, a, id, n)
	for i := range a {
		if c[i] != a[i] {
			t.Fatalf("a·I = %v", c)
		}
	}
}

func TestCalibrateReportsARate(t *testing.T) {
	tp := Calibrate(20*time.Millisecond, true)
	if !(tp.SamplesPerSecond > 0) || tp.Probe != ProbeName || !tp.Emulated {
		t.Fatalf("got %v", tp)
	}
}
