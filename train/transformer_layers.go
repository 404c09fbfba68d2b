package train

import (
	"math"
	"runtime"
	"sync"
)

// The transformer's layers: layer normalisation, GELU, causal multi-head
// self-attention and a row-parallel softmax cross-entropy, each with its
// backward pass written out. Like the layers in layers.go they write into
// caller-provided buffers and never allocate. Row-wise work is split over
// goroutines by parallelRange; every output element is computed by one
// goroutine in a fixed order, so results do not depend on the split.

// lnEps is added to the variance in layer normalisation.
const lnEps = 1e-5

// LayerNormForward normalises each of the rows of x (D columns) and applies
// gain g and bias b: xhat = (x − mean)·rstd with rstd = 1/sqrt(var + 1e-5),
// y = xhat·g + b. It stores xhat and rstd for LayerNormBackward. y may alias x.
func LayerNormForward(y, xhat, rstd, x, g, b []float32, rows, D int) {
	g, b = g[:D], b[:D]
	for r := 0; r < rows; r++ {
		xr := x[r*D : (r+1)*D]
		var mean float64
		for _, v := range xr {
			mean += float64(v)
		}
		mean /= float64(D)
		var vr float64
		for _, v := range xr {
			d := float64(v) - mean
			vr += d * d
		}
		rs := 1 / math.Sqrt(vr/float64(D)+lnEps)
		rstd[r] = float32(rs)
		hr, yr := xhat[r*D:(r+1)*D], y[r*D:(r+1)*D]
		for i, v := range xr {
			h := float32((float64(v) - mean) * rs)
			hr[i] = h
			yr[i] = h*g[i] + b[i]
		}
	}
}

// LayerNormBackward adds to dx the gradient of the normalisation given dy,
// the gradient of its output y:
//
//	dx += rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)),  dxhat = dy·g.
//
// The gain and bias gradients are LayerNormParamGrad's. Adding (rather than
// overwriting) lets the caller sum the residual path's gradient into dx.
func LayerNormBackward(dx, dy, xhat, rstd, g []float32, rows, D int) {
	g = g[:D]
	for r := 0; r < rows; r++ {
		dyr, hr, dxr := dy[r*D:(r+1)*D], xhat[r*D:(r+1)*D], dx[r*D:(r+1)*D]
		var m1, m2 float64
		for i, d := range dyr {
			dh := float64(d * g[i])
			m1 += dh
			m2 += dh * float64(hr[i])
		}
		m1 /= float64(D)
		m2 /= float64(D)
		rs := float64(rstd[r])
		for i, d := range dyr {
			dh := float64(d * g[i])
			dxr[i] += float32(rs * (dh - m1 - float64(hr[i])*m2))
		}
	}
}

// LayerNormParamGrad overwrites dg and db with the gain and bias gradients
// Σ_rows dy·xhat and Σ_rows dy, summed in row order.
func LayerNormParamGrad(dg, db, dy, xhat []float32, rows, D int) {
	dg, db = dg[:D], db[:D]
	Zero(dg)
	Zero(db)
	for r := 0; r < rows; r++ {
		dyr, hr := dy[r*D:(r+1)*D], xhat[r*D:(r+1)*D]
		for i, d := range dyr {
			dg[i] += d * hr[i]
			db[i] += d
		}
	}
}

// geluC is sqrt(2/π), geluA the cubic coefficient of the tanh approximation.
const (
	geluC = 0.7978845608028654
	geluA = 0.044715
)

// GELUForward computes the tanh approximation of GELU elementwise,
// y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), and stores the tanh in th
// for GELUBackward. y may alias x only if x is not needed afterwards.
func GELUForward(y, th, x []float32) {
	y, th = y[:len(x)], th[:len(x)]
	for i, v := range x {
		u := geluC * (float64(v) + geluA*float64(v)*float64(v)*float64(v))
		t := math.Tanh(u)
		th[i] = float32(t)
		y[i] = float32(0.5 * float64(v) * (1 + t))
	}
}

// GELUBackward computes dx = dy·GELU′(x) from the input x and the tanh th
// stored by GELUForward:
//
//	GELU′(x) = ½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²).
//
// dx may alias dy.
func GELUBackward(dx, dy, x, th []float32) {
	dx, dy, th = dx[:len(x)], dy[:len(x)], th[:len(x)]
	for i, v := range x {
		t := th[i]
		d := 0.5*(1+t) + 0.5*v*(1-t*t)*geluC*(1+3*geluA*v*v)
		dx[i] = dy[i] * d
	}
}

// AttentionForward computes causal multi-head self-attention for B
// sequences of T positions. q, k, v and out are (B·T)×D, head h owning
// columns [h·D/H, (h+1)·D/H); position i attends to positions j ≤ i:
//
//	out_i = Σ_{j≤i} softmax_j(q_i·k_j / √(D/H)) · v_j.
//
// The probabilities are stored in p (B×H×T×T, row i using its first i+1
// entries) for AttentionBackward.
func AttentionForward(out, p, q, k, v []float32, B, T, H, D int) {
	for bh := 0; bh < B*H; bh++ {
		attentionHead(out, p, q, k, v, bh/H, bh%H, T, H, D)
	}
}

// AttentionBackward overwrites dq, dk and dv with the gradients of
// AttentionForward's inputs given dout, the gradient of its output, and the
// probabilities p it stored. scratch holds B·H·T floats.
func AttentionBackward(dq, dk, dv, dout, p, q, k, v, scratch []float32, B, T, H, D int) {
	for bh := 0; bh < B*H; bh++ {
		attentionHeadBackward(dq, dk, dv, dout, p, q, k, v, scratch[bh*T:(bh+1)*T], bh/H, bh%H, T, H, D)
	}
}

// attentionHead is AttentionForward for sequence b, head h. It writes only
// that sequence's rows of the head's columns of out, and its block of p.
func attentionHead(out, p, q, k, v []float32, b, h, T, H, D int) {
	dh := D / H
	scale := float32(1 / math.Sqrt(float64(dh)))
	col := b*T*D + h*dh // offset of (b, position 0, head h)
	for i := 0; i < T; i++ {
		qi := q[col+i*D : col+i*D+dh]
		pr := p[((b*H+h)*T+i)*T:][:i+1]
		mx := float32(math.Inf(-1))
		for j := range pr {
			s := Dot(qi, k[col+j*D:col+j*D+dh]) * scale
			pr[j] = s
			mx = max(mx, s)
		}
		var sum float64
		for j, s := range pr {
			e := math.Exp(float64(s - mx))
			pr[j] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		oi := out[col+i*D : col+i*D+dh]
		Zero(oi)
		for j := range pr {
			pr[j] *= inv
			Axpy(pr[j], v[col+j*D:col+j*D+dh], oi)
		}
	}
}

// attentionHeadBackward is AttentionBackward for sequence b, head h; ds is
// T floats of scratch. With s_ij the scaled scores and o_i = Σ_j p_ij·v_j:
//
//	dv_j = Σ_{i≥j} p_ij·do_i
//	dp_ij = do_i·v_j,  ds_ij = p_ij·(dp_ij − Σ_j′ p_ij′·dp_ij′)
//	dq_i = scale·Σ_{j≤i} ds_ij·k_j,  dk_j = scale·Σ_{i≥j} ds_ij·q_i
//
// Sums over i run in ascending order, so the result is deterministic.
func attentionHeadBackward(dq, dk, dv, dout, p, q, k, v, ds []float32, b, h, T, H, D int) {
	dh := D / H
	scale := float32(1 / math.Sqrt(float64(dh)))
	col := b*T*D + h*dh
	for i := 0; i < T; i++ {
		Zero(dk[col+i*D : col+i*D+dh])
		Zero(dv[col+i*D : col+i*D+dh])
	}
	for i := 0; i < T; i++ {
		doi := dout[col+i*D : col+i*D+dh]
		qi := q[col+i*D : col+i*D+dh]
		pr := p[((b*H+h)*T+i)*T:][:i+1]
		dsr := ds[:i+1]
		var dot float32
		for j, pj := range pr {
			dp := Dot(doi, v[col+j*D:col+j*D+dh])
			dsr[j] = dp
			dot += pj * dp
			Axpy(pj, doi, dv[col+j*D:col+j*D+dh])
		}
		dqi := dq[col+i*D : col+i*D+dh]
		Zero(dqi)
		for j, pj := range pr {
			d := pj * (dsr[j] - dot) * scale
			Axpy(d, k[col+j*D:col+j*D+dh], dqi)
			Axpy(d, qi, dk[col+j*D:col+j*D+dh])
		}
	}
}

// softmaxCERows computes, for rows lo..hi−1 of logits (V columns), the
// cross-entropy loss −log softmax(row)[t] into losses[r] (float64, nats) and,
// if d is non-nil, the gradient scale·(softmax(row) − onehot(t)) into d.
func softmaxCERows(d, logits []float32, targets []byte, losses []float64, V int, scale float32, lo, hi int) {
	for r := lo; r < hi; r++ {
		row := logits[r*V : (r+1)*V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float64
		if d == nil {
			for _, v := range row {
				sum += math.Exp(float64(v - mx))
			}
		} else {
			dr := d[r*V : (r+1)*V]
			for j, v := range row {
				e := math.Exp(float64(v - mx))
				dr[j] = float32(e)
				sum += e
			}
			inv := scale / float32(sum)
			for j := range dr {
				dr[j] *= inv
			}
			dr[targets[r]] -= scale
		}
		losses[r] = float64(mx) + math.Log(sum) - float64(row[targets[r]])
	}
}

// linearBackwardT is LinearBackward with dX computed as dOut·wT by a plain
// (not transposed) product, which the matmul kernels run about twice as fast
// as dOut·Wᵀ; wT is in·outDim floats of scratch. dX, if non-nil, is
// overwritten, or added to if accumulate. dW and dBias (if non-nil) are
// overwritten.
func linearBackwardT(p *Pool, dX, dW, dBias, x, w, wT, dOut []float32, B, in, outDim int, accumulate bool) {
	p.MatMulTN(dW, x, dOut, in, B, outDim, false)
	if dBias != nil {
		Zero(dBias[:outDim])
		for b := 0; b < B; b++ {
			Axpy(1, dOut[b*outDim:(b+1)*outDim], dBias[:outDim])
		}
	}
	if dX == nil {
		return
	}
	for i := 0; i < in; i++ {
		wi := w[i*outDim : (i+1)*outDim]
		for j, v := range wi {
			wT[j*in+i] = v
		}
	}
	p.MatMul(dX, dOut, wT, B, outDim, in, accumulate)
}

// rangeJob is work over the indices [0, n) that may be split into disjoint
// contiguous ranges run concurrently. Each index owns its outputs, so the
// result does not depend on the split.
type rangeJob interface{ runRange(lo, hi int) }

type rangeTask struct {
	job    rangeJob
	lo, hi int
	wg     *sync.WaitGroup
}

// rangeTasks feeds helper goroutines (one per CPU, started on first use and
// shared by every model, like DefaultPool's).
var (
	rangeOnce  sync.Once
	rangeTasks chan rangeTask
)

// parallelRange runs job over [0, n) in up to parts ranges: the caller runs
// the first and the helper goroutines the others. wg must not be shared by
// concurrent calls. It does not allocate.
func parallelRange(parts, n int, job rangeJob, wg *sync.WaitGroup) {
	parts = min(parts, n)
	if parts <= 1 {
		if n > 0 {
			job.runRange(0, n)
		}
		return
	}
	rangeOnce.Do(func() {
		procs := runtime.GOMAXPROCS(0)
		rangeTasks = make(chan rangeTask, 4*procs)
		for i := 0; i < procs; i++ {
			go func() {
				for t := range rangeTasks {
					t.job.runRange(t.lo, t.hi)
					t.wg.Done()
				}
			}()
		}
	})
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		rangeTasks <- rangeTask{job: job, lo: n * i / parts, hi: n * (i + 1) / parts, wg: wg}
	}
	job.runRange(0, n/parts)
	wg.Wait()
}
