package worker

import (
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// ProbeName names the standard calibration workload.
const ProbeName = "cpu-matmul-f32-128"

// Calibrate runs the standard probe for about d and returns its rate in
// samples (128×128 float32 matrix products) per second. Until the
// built-in trainer can calibrate a job's own workload, this is the
// worker's measured throughput; with emulated GPUs it is marked emulated,
// since it measures this machine's CPU, not the GPU it pretends to be.
func Calibrate(d time.Duration, emulated bool) *meghav1.Throughput {
	const n = 128
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.25, float32(i%5)*0.5
	}
	start := time.Now()
	samples := 0
	for time.Since(start) < d || samples == 0 {
		matmul(c, a, b, n)
		samples++
	}
	rate := float64(samples) / time.Since(start).Seconds()
	return &meghav1.Throughput{SamplesPerSecond: rate, Probe: ProbeName, Emulated: emulated}
}

// matmul computes c = a·b for n×n row-major matrices, i-k-j order so the
// inner loop streams through memory.
func matmul(c, a, b []float32, n int) {
	clear(c)
	for i := 0; i < n; i++ {
		ci := c[i*n : (i+1)*n]
		for k := 0; k < n; k++ {
			aik := a[i*n+k]
			bk := b[k*n : (k+1)*n]
			for j := range ci {
				ci[j] += aik * bk[j]
			}
		}
	}
}
