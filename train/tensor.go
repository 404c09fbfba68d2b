// Package train is megha's built-in reference trainer: float32 tensor kernels,
// a byte-level MLP language model (mlp-tiny), AdamW with a warm-up + cosine
// schedule, datasets with known entropy (synthetic) or real text (the Go
// source tree), and a training-loop helper. Parameters live in one flat
// []float32 so that low-communication sync (DiLoCo) can all-reduce one buffer.
package train

import (
	"math"
	"runtime"
	"sync"
)

// Tensor is a row-major float32 matrix view. Data may alias a larger buffer
// (for example a named view into a model's flat parameter vector).
type Tensor struct {
	Rows, Cols int
	Data       []float32
}

// NewTensor allocates a zeroed rows×cols tensor.
func NewTensor(rows, cols int) Tensor {
	return Tensor{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
}

// Row returns row i as a slice aliasing t.Data.
func (t Tensor) Row(i int) []float32 { return t.Data[i*t.Cols : (i+1)*t.Cols] }

// Zero sets every element of x to 0.
func Zero(x []float32) {
	for i := range x {
		x[i] = 0
	}
}

// Axpy computes y += a·x.
func Axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// Dot returns Σ x[i]·y[i], summed in a fixed order (four interleaved partial
// sums combined at the end), so the result depends only on the inputs.
func Dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// SumSquares returns Σ x[i]² accumulated in float64.
func SumSquares(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s
}

// splitmix64 is a tiny deterministic, allocation-free PRNG.
type rng struct{ s uint64 }

func newRNG(seed uint64) rng { return rng{s: seed} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float64 in [0,1).
func (r *rng) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// intn in [0,n).
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// norm returns a standard normal sample (Box–Muller).
func (r *rng) norm() float64 {
	u1 := r.float64()
	for u1 == 0 {
		u1 = r.float64()
	}
	u2 := r.float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// mix combines values into one well-scrambled seed.
func mix(vals ...uint64) uint64 {
	h := uint64(0x243f6a8885a308d3)
	for _, v := range vals {
		r := rng{s: h ^ v}
		h = r.next()
	}
	return h
}

// Pool is a fixed set of worker goroutines used by the matrix kernels. Work is
// split by output rows; every output element is computed by exactly one
// goroutine with a fixed summation order, so results are bit-identical for any
// worker count. A Pool may be used from several goroutines (calls serialise).
type Pool struct {
	workers int
	mu      sync.Mutex
	tasks   chan mmTask
	wg      sync.WaitGroup
}

type mmOp uint8

const (
	opNN mmOp = iota // C = A·B
	opNT             // C = A·Bᵀ
	opTN             // C = Aᵀ·B
)

type mmTask struct {
	op         mmOp
	a, b, c    []float32
	m, k, n    int
	r0, r1     int
	accumulate bool
	wg         *sync.WaitGroup
}

// NewPool starts a pool with the given number of workers (≤0 means
// runtime.GOMAXPROCS(0)). With one worker all work runs on the caller.
func NewPool(workers int) *Pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &Pool{workers: workers}
	if workers > 1 {
		p.tasks = make(chan mmTask, workers)
		for i := 0; i < workers; i++ {
			go p.loop()
		}
	}
	return p
}

// Workers reports the pool's worker count.
func (p *Pool) Workers() int { return p.workers }

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p.tasks != nil {
		close(p.tasks)
	}
}

func (p *Pool) loop() {
	for t := range p.tasks {
		runTask(&t)
		t.wg.Done()
	}
}

var (
	defaultPoolOnce sync.Once
	defaultPool     *Pool
)

// DefaultPool returns the shared pool sized by runtime.GOMAXPROCS at first use.
func DefaultPool() *Pool {
	defaultPoolOnce.Do(func() { defaultPool = NewPool(0) })
	return defaultPool
}
