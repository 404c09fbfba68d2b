package train

import "math"

// The transformer's layers: layer normalisation, GELU, causal multi-head
// self-attention and a row-parallel softmax cross-entropy, each with its
// backward pass written out. Like the layers in layers.go they write into
// caller-provided buffers and never allocate. Each runs on the rows (or
// attention heads) it is given and every output element is computed in a
// fixed order, so the model can split them over goroutines (parallelRange)
// without changing a bit of the result.

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
		// tanh(u) = 1 − 2/(e^{2u} + 1): twice as fast as math.Tanh, within
		// 1e-16 of it, and ±1 where e^{2u} over- or underflows.
		t := 1 - 2/(math.Exp(2*u)+1)
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
// entries) for AttentionBackward. scratch holds AttentionScratch floats.
func AttentionForward(out, p, q, k, v, scratch []float32, B, T, H, D int) {
	for bh := 0; bh < B*H; bh++ {
		attentionHead(out, p, q, k, v, headScratch(scratch, bh, T, H, D), bh/H, bh%H, T, H, D)
	}
}

// AttentionBackward overwrites dq, dk and dv with the gradients of
// AttentionForward's inputs given dout, the gradient of its output, and the
// probabilities p it stored, which it overwrites with the gradients of the
// scaled scores. scratch holds AttentionScratch floats.
func AttentionBackward(dq, dk, dv, dout, p, q, k, v, scratch []float32, B, T, H, D int) {
	for bh := 0; bh < B*H; bh++ {
		attentionHeadBackward(dq, dk, dv, dout, p, q, k, v, headScratch(scratch, bh, T, H, D), bh/H, bh%H, T, H, D)
	}
}

// AttentionScratch is the scratch length AttentionForward and
// AttentionBackward need: (D/H + 2)·T per sequence and head.
func AttentionScratch(B, T, H, D int) int { return B * H * (D/H + 2) * T }

func headScratch(scratch []float32, bh, T, H, D int) []float32 {
	n := (D/H + 2) * T
	return scratch[bh*n : (bh+1)*n]
}

// The per-head kernels below phrase every product as addRows (four rows at
// a time, like the matmul kernels) over either the head's rows of q, k, v
// (stride D) or a transposed copy of k or v made in scratch, so that the
// inner loops run over contiguous vectors of length D/H or i+1.

// addRows computes dst += Σ_r coef[r]·src[off+r·stride : off+r·stride+len(dst)],
// adding the terms to each element in the order of r.
func addRows(dst, coef, src []float32, off, stride int) {
	n := len(dst)
	r := 0
	for ; r+4 <= len(coef); r += 4 {
		o := off + r*stride
		axpy4(coef[r], coef[r+1], coef[r+2], coef[r+3], src[o:o+n], src[o+stride:o+stride+n],
			src[o+2*stride:o+2*stride+n], src[o+3*stride:o+3*stride+n], dst)
	}
	for ; r < len(coef); r++ {
		o := off + r*stride
		Axpy(coef[r], src[o:o+n], dst)
	}
}

// transposeHead copies the T rows of one head (dh columns from offset col,
// row stride D) of x into xt as dh rows of T.
func transposeHead(xt, x []float32, col, T, D, dh int) {
	for j := 0; j < T; j++ {
		xj := x[col+j*D : col+j*D+dh]
		for c, v := range xj {
			xt[c*T+j] = v
		}
	}
}

// attentionHead is AttentionForward for sequence b, head h. It writes only
// that sequence's rows of the head's columns of out, and its block of p.
func attentionHead(out, p, q, k, v, scratch []float32, b, h, T, H, D int) {
	dh := D / H
	scale := float32(1 / math.Sqrt(float64(dh)))
	col := b*T*D + h*dh // offset of (b, position 0, head h)
	kt := scratch[:dh*T]
	transposeHead(kt, k, col, T, D, dh)
	for i := 0; i < T; i++ {
		pr := p[((b*H+h)*T+i)*T:][:i+1]
		Zero(pr)
		addRows(pr, q[col+i*D:col+i*D+dh], kt, 0, T) // pr[j] = q_i·k_j
		mx := float32(math.Inf(-1))
		for j, s := range pr {
			pr[j] = s * scale
			mx = max(mx, pr[j])
		}
		var sum float64
		for j, s := range pr {
			e := math.Exp(float64(s - mx))
			pr[j] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		for j := range pr {
			pr[j] *= inv
		}
		oi := out[col+i*D : col+i*D+dh]
		Zero(oi)
		addRows(oi, pr, v, col, D)
	}
}

// attentionHeadBackward is AttentionBackward for sequence b, head h. With
// s_ij the scaled scores and o_i = Σ_j p_ij·v_j:
//
//	dv_j = Σ_{i≥j} p_ij·do_i
//	dp_ij = do_i·v_j,  ds_ij = p_ij·(dp_ij − Σ_j′ p_ij′·dp_ij′)
//	dq_i = scale·Σ_{j≤i} ds_ij·k_j,  dk_j = scale·Σ_{i≥j} ds_ij·q_i
//
// computed in three passes: dv from p; then, row by row, dp, ds (replacing
// p, with the scale folded in) and dq; then dk from ds.
func attentionHeadBackward(dq, dk, dv, dout, p, q, k, v, scratch []float32, b, h, T, H, D int) {
	dh := D / H
	scale := float32(1 / math.Sqrt(float64(dh)))
	col := b*T*D + h*dh
	pb := p[(b*H+h)*T*T : (b*H+h+1)*T*T]
	vt, column, dp := scratch[:dh*T], scratch[dh*T:dh*T+T], scratch[dh*T+T:dh*T+2*T]
	// column j of p (or ds) from row j down: the weights of row j of dv (dk).
	gather := func(j int) []float32 {
		c := column[:T-j]
		for i := range c {
			c[i] = pb[(j+i)*T+j]
		}
		return c
	}
	for j := 0; j < T; j++ {
		dvj := dv[col+j*D : col+j*D+dh]
		Zero(dvj)
		addRows(dvj, gather(j), dout, col+j*D, D)
	}
	transposeHead(vt, v, col, T, D, dh)
	for i := 0; i < T; i++ {
		pr := pb[i*T : i*T+i+1]
		dpr := dp[:i+1]
		Zero(dpr)
		addRows(dpr, dout[col+i*D:col+i*D+dh], vt, 0, T) // dp_ij = do_i·v_j
		var dot float32
		for j, pj := range pr {
			dot += pj * dpr[j]
		}
		for j, pj := range pr {
			pr[j] = pj * (dpr[j] - dot) * scale
		}
		dqi := dq[col+i*D : col+i*D+dh]
		Zero(dqi)
		addRows(dqi, pr, k, col, D)
	}
	for j := 0; j < T; j++ {
		dkj := dk[col+j*D : col+j*D+dh]
		Zero(dkj)
		addRows(dkj, gather(j), q, col+j*D, D)
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
