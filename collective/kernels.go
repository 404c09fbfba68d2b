package collective

import (
	"math"
	"unsafe"
)

// The loops below run over whole buffers once or twice per AllReduce and
// are bound by memory bandwidth; unrolled by four with re-sliced operands
// (no bounds checks) they run about 1.5× faster than the plain range
// loops, and anyNonFinite, which looks at two values per 64-bit word,
// about 3×.

// expBits are a float32's exponent bits: all ones for NaN and ±Inf.
const expBits = 0x7f800000

// anyNonFinite reports whether buf holds a NaN or an infinity. Masking a
// value to its exponent and adding one unit of exponent carries into the
// sign bit exactly when the exponent is all ones; OR-ing that over the
// buffer, two values to a 64-bit word, needs no branch per value.
func anyNonFinite(buf []float32) bool {
	i := 0
	for ; i < len(buf) && uintptr(unsafe.Pointer(&buf[i]))%8 != 0; i++ {
		if math.Float32bits(buf[i])&expBits == expBits {
			return true
		}
	}
	var words []uint64
	if n := (len(buf) - i) / 2; n > 0 {
		words = unsafe.Slice((*uint64)(unsafe.Pointer(&buf[i])), n)
	}
	const (
		mask = expBits<<32 | expBits
		unit = 0x00800000<<32 | 0x00800000
		sign = 1<<63 | 1<<31
	)
	var a0, a1, a2, a3 uint64
	j := 0
	for ; j+4 <= len(words); j += 4 {
		q := words[j : j+4 : j+4]
		a0 |= q[0]&mask + unit
		a1 |= q[1]&mask + unit
		a2 |= q[2]&mask + unit
		a3 |= q[3]&mask + unit
	}
	for ; j < len(words); j++ {
		a0 |= words[j]&mask + unit
	}
	if (a0|a1|a2|a3)&sign != 0 {
		return true
	}
	for _, v := range buf[i+2*len(words):] {
		if math.Float32bits(v)&expBits == expBits {
			return true
		}
	}
	return false
}

// scaleTo sets dst[i] = a·src[i].
func scaleTo(dst, src []float32, a float32) {
	dst = dst[:len(src)]
	i := 0
	for ; i+4 <= len(src); i += 4 {
		s, d := src[i:i+4:i+4], dst[i:i+4:i+4]
		d[0], d[1], d[2], d[3] = a*s[0], a*s[1], a*s[2], a*s[3]
	}
	for ; i < len(src); i++ {
		dst[i] = a * src[i]
	}
}

// axpyTo sets dst[i] = a·x[i] + y[i], rounding a·x[i] to float32 first
// (no fused multiply-add, so every platform gets the same bits).
func axpyTo(dst, x []float32, a float32, y []float32) {
	x, dst = x[:len(y)], dst[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		p, q, d := x[i:i+4:i+4], y[i:i+4:i+4], dst[i:i+4:i+4]
		d[0] = float32(a*p[0]) + q[0]
		d[1] = float32(a*p[1]) + q[1]
		d[2] = float32(a*p[2]) + q[2]
		d[3] = float32(a*p[3]) + q[3]
	}
	for ; i < len(y); i++ {
		dst[i] = float32(a*x[i]) + y[i]
	}
}

// divideTo sets dst[i] = src[i] / d, as a multiplication by 1/d in float32
// when 1/d is a normal float32 (an extra rounding of at most 2⁻²⁴
// relative) and in float64 otherwise.
func divideTo(dst, src []float32, d float64) {
	inv := 1 / d
	if f := float32(inv); f != 0 && math.Abs(float64(f)) >= 0x1p-126 && !math.IsInf(float64(f), 0) {
		scaleTo(dst, src, f)
		return
	}
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = float32(float64(v) * inv)
	}
}
