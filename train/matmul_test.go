package train

import (
	"math"
	"testing"
)

func randSlice(r *rng, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.norm())
	}
	return x
}

// at returns element (i,j) of op(X) where X is stored rows×cols and trans
// selects Xᵀ.
func at(x []float32, cols int, trans bool, i, j int) float64 {
	if trans {
		return float64(x[j*cols+i])
	}
	return float64(x[i*cols+j])
}

func TestMatMulAgainstNaive(t *testing.T) {
	r := newRNG(1)
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 129, 33}, {64, 3, 515}, {130, 257, 9}, {5, 300, 520}}
	pools := []*Pool{NewPool(1), NewPool(2), NewPool(3)}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	for _, s := range shapes {
		m, k, n := s[0], s[1], s[2]
		for _, op := range []mmOp{opNN, opNT, opTN} {
			a := randSlice(&r, m*k)
			b := randSlice(&r, k*n)
			init := randSlice(&r, m*n)
			acols, bcols := k, n
			ta, tb := false, false
			switch op {
			case opNT:
				bcols, tb = k, true
			case opTN:
				acols, ta = m, true
			}
			for _, acc := range []bool{false, true} {
				var first []float32
				for pi, p := range pools {
					c := append([]float32(nil), init...)
					switch op {
					case opNN:
						p.MatMul(c, a, b, m, k, n, acc)
					case opNT:
						p.MatMulNT(c, a, b, m, k, n, acc)
					case opTN:
						p.MatMulTN(c, a, b, m, k, n, acc)
					}
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var want, mag float64
							if acc {
								want = float64(init[i*n+j])
								mag = math.Abs(want)
							}
							for q := 0; q < k; q++ {
								v := at(a, acols, ta, i, q) * at(b, bcols, tb, q, j)
								want += v
								mag += math.Abs(v)
							}
							got := float64(c[i*n+j])
							// float32 accumulation: error ≤ ~k·2⁻²⁴·Σ|terms|.
							if math.Abs(got-want) > 1e-6*float64(k+1)*mag+1e-6 {
								t.Fatalf("op %d %v acc=%v (%d,%d): got %g want %g", op, s, acc, i, j, got, want)
							}
						}
					}
					if pi == 0 {
						first = c
						continue
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(first[i]) {
							t.Fatalf("op %d %v: workers=%d differs from 1 worker at %d", op, s, p.Workers(), i)
						}
					}
				}
			}
		}
	}
}

func TestMatMulNoAlloc(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := newRNG(2)
	a, b, c := randSlice(&r, 64*256), randSlice(&r, 256*256), make([]float32, 64*256)
	n := testing.AllocsPerRun(5, func() {
		p.MatMul(c, a, b, 64, 256, 256, false)
		p.MatMulNT(c, a, b, 64, 256, 256, false)
		p.MatMulTN(b, a, c, 256, 64, 256, false)
	})
	if n != 0 {
		t.Fatalf("allocs per run = %v, want 0", n)
	}
}
