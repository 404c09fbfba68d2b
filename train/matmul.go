package train

import "fmt"

// Cache blocking sizes. The blocking never changes the order in which a single
// output element's terms are summed (k always ascends), so results do not
// depend on it either.
const (
	blockK = 128
	blockN = 512
	// Products with fewer multiply-adds than this run on the caller.
	parallelMin = 1 << 15
)

// MatMul computes C = A·B (A m×k, B k×n, C m×n). If accumulate, C += A·B.
func (p *Pool) MatMul(c, a, b []float32, m, k, n int, accumulate bool) {
	p.run(opNN, c, a, b, m, k, n, accumulate)
}

// MatMulNT computes C = A·Bᵀ (A m×k, B n×k, C m×n). If accumulate, C += A·Bᵀ.
func (p *Pool) MatMulNT(c, a, b []float32, m, k, n int, accumulate bool) {
	p.run(opNT, c, a, b, m, k, n, accumulate)
}

// MatMulTN computes C = Aᵀ·B (A k×m, B k×n, C m×n). If accumulate, C += Aᵀ·B.
func (p *Pool) MatMulTN(c, a, b []float32, m, k, n int, accumulate bool) {
	p.run(opTN, c, a, b, m, k, n, accumulate)
}

// MatMul computes C = A·B on the default pool; see Pool.MatMul.
func MatMul(c, a, b []float32, m, k, n int, accumulate bool) {
	DefaultPool().MatMul(c, a, b, m, k, n, accumulate)
}

// MatMulNT computes C = A·Bᵀ on the default pool; see Pool.MatMulNT.
func MatMulNT(c, a, b []float32, m, k, n int, accumulate bool) {
	DefaultPool().MatMulNT(c, a, b, m, k, n, accumulate)
}

// MatMulTN computes C = Aᵀ·B on the default pool; see Pool.MatMulTN.
func MatMulTN(c, a, b []float32, m, k, n int, accumulate bool) {
	DefaultPool().MatMulTN(c, a, b, m, k, n, accumulate)
}

func (p *Pool) run(op mmOp, c, a, b []float32, m, k, n int, accumulate bool) {
	if len(a) < m*k || len(b) < k*n || len(c) < m*n {
		panic(fmt.Sprintf("train: matmul shape mismatch: m=%d k=%d n=%d len(a)=%d len(b)=%d len(c)=%d",
			m, k, n, len(a), len(b), len(c)))
	}
	t := mmTask{op: op, a: a, b: b, c: c, m: m, k: k, n: n, accumulate: accumulate}
	w := p.workers
	if w > m {
		w = m
	}
	if w <= 1 || m*k*n < parallelMin {
		t.r0, t.r1 = 0, m
		runTask(&t)
		return
	}
	p.mu.Lock()
	t.wg = &p.wg
	p.wg.Add(w)
	for i := 0; i < w; i++ {
		t.r0 = m * i / w
		t.r1 = m * (i + 1) / w
		p.tasks <- t
	}
	p.wg.Wait()
	p.mu.Unlock()
}

func runTask(t *mmTask) {
	m, k, n := t.m, t.k, t.n
	a, b, c := t.a, t.b, t.c
	if !t.accumulate {
		Zero(c[t.r0*n : t.r1*n])
	}
	switch t.op {
	case opNN:
		for j0 := 0; j0 < n; j0 += blockN {
			j1 := min(j0+blockN, n)
			for p0 := 0; p0 < k; p0 += blockK {
				p1 := min(p0+blockK, k)
				for i := t.r0; i < t.r1; i++ {
					ci := c[i*n+j0 : i*n+j1]
					ai := a[i*k : i*k+k]
					p := p0
					for ; p+4 <= p1; p += 4 {
						axpy4(ai[p], ai[p+1], ai[p+2], ai[p+3],
							b[p*n+j0:p*n+j1], b[(p+1)*n+j0:(p+1)*n+j1],
							b[(p+2)*n+j0:(p+2)*n+j1], b[(p+3)*n+j0:(p+3)*n+j1], ci)
					}
					for ; p < p1; p++ {
						Axpy(ai[p], b[p*n+j0:p*n+j1], ci)
					}
				}
			}
		}
	case opNT:
		for i := t.r0; i < t.r1; i++ {
			ai := a[i*k : i*k+k]
			ci := c[i*n : i*n+n]
			for j := range ci {
				ci[j] += Dot(ai, b[j*k:j*k+k])
			}
		}
	case opTN:
		// A is k×m; row i of C is Σ_p A[p,i]·B[p,:].
		for j0 := 0; j0 < n; j0 += blockN {
			j1 := min(j0+blockN, n)
			for p0 := 0; p0 < k; p0 += blockK {
				p1 := min(p0+blockK, k)
				for i := t.r0; i < t.r1; i++ {
					ci := c[i*n+j0 : i*n+j1]
					p := p0
					for ; p+4 <= p1; p += 4 {
						axpy4(a[p*m+i], a[(p+1)*m+i], a[(p+2)*m+i], a[(p+3)*m+i],
							b[p*n+j0:p*n+j1], b[(p+1)*n+j0:(p+1)*n+j1],
							b[(p+2)*n+j0:(p+2)*n+j1], b[(p+3)*n+j0:(p+3)*n+j1], ci)
					}
					for ; p < p1; p++ {
						Axpy(a[p*m+i], b[p*n+j0:p*n+j1], ci)
					}
				}
			}
		}
	}
}

// axpy4 computes c += a0·b0 + a1·b1 + a2·b2 + a3·b3, adding the terms to each
// c[j] left to right, i.e. in the same order as four successive Axpy calls.
func axpy4(a0, a1, a2, a3 float32, b0, b1, b2, b3, c []float32) {
	n := len(c)
	b0, b1, b2, b3 = b0[:n], b1[:n], b2[:n], b3[:n]
	for j := range c {
		c[j] = c[j] + a0*b0[j] + a1*b1[j] + a2*b2[j] + a3*b3[j]
	}
}
