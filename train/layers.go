package train

import "math"

// The layer functions below are the building blocks of the MLP's hand-written
// forward and backward passes. They write into caller-provided buffers and
// never allocate.

// EmbedForward gathers embeddings: for each of the B rows and K positions,
// out[b, k·E:(k+1)·E] = emb[ids[b·K+k], :]. out is B×(K·E).
func EmbedForward(out, emb []float32, ids []byte, B, K, E int) {
	for b := 0; b < B; b++ {
		for k := 0; k < K; k++ {
			id := int(ids[b*K+k])
			copy(out[(b*K+k)*E:(b*K+k+1)*E], emb[id*E:(id+1)*E])
		}
	}
}

// EmbedBackward scatters gradients: dEmb[ids[b·K+k], :] += dOut[b, k·E:(k+1)·E].
// Rows are visited in a fixed order, so the result is deterministic.
func EmbedBackward(dEmb, dOut []float32, ids []byte, B, K, E int) {
	for b := 0; b < B; b++ {
		for k := 0; k < K; k++ {
			id := int(ids[b*K+k])
			Axpy(1, dOut[(b*K+k)*E:(b*K+k+1)*E], dEmb[id*E:(id+1)*E])
		}
	}
}

// LinearForward computes out = x·W + bias (x B×in, W in×out, bias out).
func LinearForward(p *Pool, out, x, w, bias []float32, B, in, outDim int) {
	p.MatMul(out, x, w, B, in, outDim, false)
	for b := 0; b < B; b++ {
		Axpy(1, bias[:outDim], out[b*outDim:(b+1)*outDim])
	}
}

// LinearBackward computes dW = xᵀ·dOut, dBias = Σ_b dOut[b], and, if dX is
// non-nil, dX = dOut·Wᵀ. Gradients are overwritten, not accumulated.
func LinearBackward(p *Pool, dX, dW, dBias, x, w, dOut []float32, B, in, outDim int) {
	p.MatMulTN(dW, x, dOut, in, B, outDim, false)
	Zero(dBias[:outDim])
	for b := 0; b < B; b++ {
		Axpy(1, dOut[b*outDim:(b+1)*outDim], dBias[:outDim])
	}
	if dX != nil {
		p.MatMulNT(dX, dOut, w, B, outDim, in, false)
	}
}

// TanhForward computes y = tanh(x) elementwise.
func TanhForward(y, x []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = float32(math.Tanh(float64(v)))
	}
}

// TanhBackward computes dx = dy·(1 − y²) from the forward output y.
// dx may alias dy.
func TanhBackward(dx, dy, y []float32) {
	dx = dx[:len(y)]
	dy = dy[:len(y)]
	for i, v := range y {
		dx[i] = dy[i] * (1 - v*v)
	}
}

// SoftmaxCrossEntropy returns the mean over B rows of −log softmax(logits)[t]
// (nats) and, if dLogits is non-nil, writes its gradient (softmax − onehot)/B.
// dLogits may alias logits.
func SoftmaxCrossEntropy(dLogits, logits []float32, targets []byte, B, V int) float64 {
	var total float64
	for b := 0; b < B; b++ {
		row := logits[b*V : (b+1)*V]
		mx := row[0]
		for _, v := range row {
			if v > mx {
				mx = v
			}
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v - mx))
		}
		lse := float64(mx) + math.Log(sum)
		t := int(targets[b])
		total += lse - float64(row[t])
		if dLogits != nil {
			d := dLogits[b*V : (b+1)*V]
			inv := 1 / (sum * float64(B))
			for j, v := range row {
				d[j] = float32(math.Exp(float64(v-mx)) * inv)
			}
			d[t] -= float32(1 / float64(B))
		}
	}
	return total / float64(B)
}
