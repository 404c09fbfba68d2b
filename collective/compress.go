package collective

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Compression is what goes on the wire for each chunk.
type Compression int

const (
	// None sends float32 values unchanged.
	None Compression = iota
	// FP16 sends IEEE half-precision values (round to nearest even; values
	// beyond ±65504 saturate to ±65504).
	FP16
	// Int8 sends one signed byte per value and one float32 scale
	// (max-abs/127) per block of BlockSize values.
	Int8
)

// BlockSize is the number of values that share one Int8 scale.
const BlockSize = 256

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case FP16:
		return "fp16"
	case Int8:
		return "int8"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

func (c Compression) valid() bool { return c == None || c == FP16 || c == Int8 }

func (c Compression) encoding() meghav1.ChunkEncoding {
	switch c {
	case FP16:
		return meghav1.ChunkEncoding_CHUNK_ENCODING_F16
	case Int8:
		return meghav1.ChunkEncoding_CHUNK_ENCODING_INT8
	}
	return meghav1.ChunkEncoding_CHUNK_ENCODING_F32
}

// encodedSize is the payload size in bytes (data plus scales) of n values.
func (c Compression) encodedSize(n int) (data, scales int) {
	switch c {
	case FP16:
		return 2 * n, 0
	case Int8:
		return n, (n + BlockSize - 1) / BlockSize
	}
	return 4 * n, 0
}

// Compressor encodes float32 slices for the wire. With error feedback it
// keeps, per element of the buffer it serves, the residual
// x − decode(encode(x)) of the previous encoding and adds it to the value
// before encoding the same element next time, so quantization error is
// carried forward instead of lost. A Compressor is not safe for concurrent use.
type Compressor struct {
	mode     Compression
	feedback bool
	residual []float32
}

// NewCompressor returns a Compressor for mode; errorFeedback enables the
// residual state.
func NewCompressor(mode Compression, errorFeedback bool) *Compressor {
	return &Compressor{mode: mode, feedback: errorFeedback}
}

// Mode is the compressor's wire encoding.
func (c *Compressor) Mode() Compression { return c.mode }

// Residual is the current error-feedback residual, indexed like the buffer
// passed to Encode (nil without error feedback). It aliases internal state.
func (c *Compressor) Residual() []float32 { return c.residual }

// Reset drops the residual.
func (c *Compressor) Reset() { c.residual = nil }

func (c *Compressor) snapshot() []float32 { return append([]float32(nil), c.residual...) }
func (c *Compressor) restore(r []float32) { c.residual = r }

// Encode encodes x, which holds buffer elements [offset, offset+len(x)).
// With error feedback the residual for those elements is added before
// encoding and replaced by the new encoding error. x is not modified.
func (c *Compressor) Encode(x []float32, offset int) (scales []float32, data []byte) {
	src := x
	if c.feedback && c.mode != None {
		if need := offset + len(x); len(c.residual) < need {
			c.residual = append(c.residual, make([]float32, need-len(c.residual))...)
		}
		res := c.residual[offset : offset+len(x)]
		src = make([]float32, len(x))
		for i, v := range x {
			src[i] = v + res[i]
		}
		scales, data = encode(c.mode, src)
		dec := make([]float32, len(x))
		if err := Decode(c.mode, scales, data, dec); err != nil {
			panic(err) // our own encoding always decodes
		}
		for i := range src {
			res[i] = src[i] - dec[i]
		}
		return scales, data
	}
	return encode(c.mode, src)
}

func encode(mode Compression, x []float32) (scales []float32, data []byte) {
	n, ns := mode.encodedSize(len(x))
	data = make([]byte, n)
	switch mode {
	case None:
		putF32(data, x)
	case FP16:
		for i, v := range x {
			binary.LittleEndian.PutUint16(data[2*i:], Float32ToHalf(v))
		}
	case Int8:
		scales = make([]float32, ns)
		for b := range scales {
			blk := x[b*BlockSize : min((b+1)*BlockSize, len(x))]
			var m float32
			for _, v := range blk {
				m = max(m, float32(math.Abs(float64(v))))
			}
			if m == 0 {
				continue // scale 0, all bytes 0
			}
			s := m / 127
			scales[b] = s
			for i, v := range blk {
				q := math.Round(float64(v / s))
				q = max(-127, min(127, q))
				data[b*BlockSize+i] = byte(int8(q))
			}
		}
	}
	return scales, data
}

// Decode decodes len(dst) values encoded with mode into dst. It fails if the
// sizes of scales or data do not match len(dst).
func Decode(mode Compression, scales []float32, data []byte, dst []float32) error {
	n, ns := mode.encodedSize(len(dst))
	if len(data) != n || len(scales) != ns {
		return fmt.Errorf("%v chunk of %d values needs %d data bytes and %d scales, got %d and %d",
			mode, len(dst), n, ns, len(data), len(scales))
	}
	switch mode {
	case None:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	case FP16:
		for i := range dst {
			dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(data[2*i:]))
		}
	case Int8:
		for i := range dst {
			dst[i] = float32(int8(data[i])) * scales[i/BlockSize]
		}
	default:
		return fmt.Errorf("unknown compression %v", mode)
	}
	return nil
}

// Float32ToHalf converts f to IEEE 754 binary16, rounding to nearest even.
// Finite values too large for a half saturate to ±65504 (the largest half)
// and ±Inf does too; NaN stays NaN.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7bff
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7bff
	}
	if e <= 0 { // half subnormal (or zero)
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - e)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		halfway := uint32(1) << (shift - 1)
		if rem > halfway || (rem == halfway && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is the correct rounding
	}
	if h >= 0x7c00 {
		return sign | 0x7bff
	}
	return sign | uint16(h)
}

// HalfToFloat32 converts an IEEE 754 binary16 value to float32 (exactly).
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// littleEndian is whether float32 values in memory are already the wire's
// little-endian bytes, so that encoding and decoding them is a copy.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes is the memory of f as bytes (in host byte order).
func asBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

// putF32 writes src into dst as little-endian float32s.
func putF32(dst []byte, src []float32) {
	if littleEndian {
		copy(dst, asBytes(src))
		return
	}
	dst = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// streamDecoder decodes one chunk's values from data that arrives in
// pieces split anywhere, even inside a value.
type streamDecoder struct {
	mode   Compression
	scales []float32 // Int8
	carry  [4]byte   // the start of a value split across pieces
	nc     int
	n      int // values decoded so far
}

func (d *streamDecoder) size() int {
	switch d.mode {
	case FP16:
		return 2
	case Int8:
		return 1
	}
	return 4
}

// next decodes the values that p completes into out and returns how many.
// out must have room for len(p)/size + 1 values.
func (d *streamDecoder) next(p []byte, out []float32) int {
	sz, k := d.size(), 0
	if d.nc > 0 {
		m := copy(d.carry[d.nc:sz], p)
		d.nc += m
		p = p[m:]
		if d.nc < sz {
			return 0
		}
		d.decode(d.carry[:sz], out[:1])
		d.nc, k = 0, 1
	}
	m := len(p) / sz
	d.decode(p[:m*sz], out[k:k+m])
	d.nc = copy(d.carry[:], p[m*sz:])
	return k + m
}

// decode decodes len(out) whole values from p.
func (d *streamDecoder) decode(p []byte, out []float32) {
	switch d.mode {
	case None:
		p = p[:4*len(out)]
		if littleEndian {
			copy(asBytes(out), p)
			break
		}
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		}
	case FP16:
		p = p[:2*len(out)]
		for i := range out {
			out[i] = HalfToFloat32(binary.LittleEndian.Uint16(p[2*i:]))
		}
	case Int8:
		p = p[:len(out)]
		for i := range out {
			out[i] = float32(int8(p[i])) * d.scales[(d.n+i)/BlockSize]
		}
	}
	d.n += len(out)
}
