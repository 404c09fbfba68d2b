package collective

import (
	"math"
	"testing"
)

func TestKernels(t *testing.T) {
	buf := make([]float32, 41)
	for i := range buf {
		buf[i] = float32(i) - 20.5
	}
	buf[3] = math.MaxFloat32
	buf[4] = -math.SmallestNonzeroFloat32
	// Every start (alignment) and length, with and without a bad value at
	// every position.
	for lo := 0; lo < 4; lo++ {
		for hi := lo; hi <= len(buf); hi++ {
			b := buf[lo:hi]
			if anyNonFinite(b) {
				t.Fatalf("[%d:%d] finite, reported not", lo, hi)
			}
			for j := range b {
				for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
					old := b[j]
					b[j] = bad
					if !anyNonFinite(b) {
						t.Fatalf("[%d:%d] %v at %d missed", lo, hi, bad, j)
					}
					b[j] = old
				}
			}
		}
	}

	x, y, dst := buf[1:], buf[:len(buf)-1], make([]float32, len(buf)-1)
	axpyTo(dst, x, 1.5, y)
	for i := range dst {
		if want := float32(1.5*x[i]) + y[i]; dst[i] != want {
			t.Fatalf("axpy %d: %g want %g", i, dst[i], want)
		}
	}
	scaleTo(dst, x, -3)
	for i := range dst {
		if dst[i] != -3*x[i] {
			t.Fatalf("scale %d: %g", i, dst[i])
		}
	}
	// Divisors whose inverse is no normal float32 take the float64 path.
	for _, d := range []float64{3, 7e-3, 1e6, 1e-40, 1e40, 1e300} {
		divideTo(dst, x, d)
		for i := range dst {
			want := float64(x[i]) / d
			tol := max(1e-6*math.Abs(want), 0x1p-149) // subnormal results are exact to 2⁻¹⁴⁹
			if got := float64(dst[i]); math.Abs(got-want) > tol && !math.IsInf(float64(float32(want)), 0) {
				t.Fatalf("divide by %g at %d: %g want %g", d, i, got, want)
			}
		}
	}
}
