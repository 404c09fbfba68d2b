package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// chunk is a meghav1.Chunk as the collective handles it: the header fields
// as values and the data as gRPC buffers, of which the chunk holds one
// reference. A received chunk's data aliases the transport's frame
// buffers, so receiving copies nothing after the frames are read, and the
// all-gather forwards those same buffers to the right neighbour. A sent
// chunk's data is a pooled buffer that returns to the pool once gRPC has
// written it. The wire format is exactly meghav1.Chunk's (codec below).
type chunk struct {
	round    uint64
	step     uint32
	index    uint32 // chunk_index
	offset   uint64
	count    uint32
	encoding meghav1.ChunkEncoding
	scales   []float32
	checksum uint32
	weight   float64
	from     uint32 // from_rank
	world    uint32
	data     mem.BufferSlice
}

// release drops the chunk's reference to its data.
func (c *chunk) release() {
	c.data.Free()
	c.data = nil
}

// setData replaces the chunk's data with b (tests corrupt chunks with it).
func (c *chunk) setData(b []byte) {
	c.release()
	c.data = mem.BufferSlice{mem.SliceBuffer(b)}
}

// Field numbers of meghav1.Chunk.
const (
	fRound protowire.Number = iota + 1
	fStep
	fChunkIndex
	fOffset
	fCount
	fEncoding
	fScales
	fData
	fChecksum
	fWeight
	fFromRank
	fWorld
)

// appendHeader encodes every field but data, then data's tag and length;
// the data bytes follow. Fields may come in any order on the wire, and
// zero values are left out as proto3 does.
func (c *chunk) appendHeader(b []byte, dataLen int) []byte {
	varint := func(n protowire.Number, v uint64) {
		if v != 0 {
			b = protowire.AppendTag(b, n, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	varint(fRound, c.round)
	varint(fStep, uint64(c.step))
	varint(fChunkIndex, uint64(c.index))
	varint(fOffset, c.offset)
	varint(fCount, uint64(c.count))
	varint(fEncoding, uint64(c.encoding))
	if len(c.scales) > 0 {
		b = protowire.AppendTag(b, fScales, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(4*len(c.scales)))
		for _, s := range c.scales {
			b = protowire.AppendFixed32(b, math.Float32bits(s))
		}
	}
	if c.checksum != 0 {
		b = protowire.AppendTag(b, fChecksum, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, c.checksum)
	}
	if w := math.Float64bits(c.weight); w != 0 {
		b = protowire.AppendTag(b, fWeight, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, w)
	}
	varint(fFromRank, uint64(c.from))
	varint(fWorld, uint64(c.world))
	if dataLen > 0 {
		b = protowire.AppendTag(b, fData, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(dataLen))
	}
	return b
}

// codec is the gRPC codec of the Peer service: a *chunk is written and read
// without copying its data; anything else (ExchangeAck, or a
// *meghav1.Chunk) goes through the standard protobuf codec. It is named
// "proto" because its bytes are plain protobuf: a peer using the standard
// codec reads and writes the same messages.
type codec struct{}

var (
	protoCodec                  = encoding.GetCodecV2(grpcproto.Name)
	peerCodec  encoding.CodecV2 = codec{}
)

func (codec) Name() string { return grpcproto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	c, ok := v.(*chunk)
	if !ok {
		return protoCodec.Marshal(v)
	}
	n := c.data.Len()
	out := make(mem.BufferSlice, 0, 1+len(c.data))
	out = append(out, mem.SliceBuffer(c.appendHeader(make([]byte, 0, 64+4*len(c.scales)), n)))
	for _, b := range c.data {
		b.Ref() // gRPC frees its reference once written; the chunk keeps its own
		out = append(out, b)
	}
	return out, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	c, ok := v.(*chunk)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	c.release()
	*c = chunk{}
	if err := c.parse(data); err != nil {
		c.release()
		return err
	}
	return nil
}

// parse reads a meghav1.Chunk from data, taking references to the buffers
// that hold its data field.
func (c *chunk) parse(data mem.BufferSlice) error {
	r := &sliceReader{bufs: data}
	for !r.empty() {
		tag, err := r.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num <= 0 {
			return errors.New("chunk: bad field number")
		}
		switch typ {
		case protowire.VarintType:
			v, err := r.varint()
			if err != nil {
				return err
			}
			switch num {
			case fRound:
				c.round = v
			case fStep:
				c.step = uint32(v)
			case fChunkIndex:
				c.index = uint32(v)
			case fOffset:
				c.offset = v
			case fCount:
				c.count = uint32(v)
			case fEncoding:
				c.encoding = meghav1.ChunkEncoding(int32(v))
			case fFromRank:
				c.from = uint32(v)
			case fWorld:
				c.world = uint32(v)
			}
		case protowire.Fixed32Type:
			var b [4]byte
			if err := r.read(b[:]); err != nil {
				return err
			}
			v := binary.LittleEndian.Uint32(b[:])
			switch num {
			case fChecksum:
				c.checksum = v
			case fScales: // unpacked repeated float
				c.scales = append(c.scales, math.Float32frombits(v))
			}
		case protowire.Fixed64Type:
			var b [8]byte
			if err := r.read(b[:]); err != nil {
				return err
			}
			if num == fWeight {
				c.weight = math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
			}
		case protowire.BytesType:
			n, err := r.varint()
			if err != nil {
				return err
			}
			if n > uint64(r.remaining()) {
				return errors.New("chunk: truncated field")
			}
			switch num {
			case fData:
				c.release() // the last one wins, as in protobuf
				c.data = r.slice(int(n))
			case fScales:
				if n%4 != 0 {
					return errors.New("chunk: packed scales not a multiple of 4 bytes")
				}
				b := make([]byte, n)
				if err := r.read(b); err != nil {
					return err
				}
				for i := 0; i < len(b); i += 4 {
					c.scales = append(c.scales, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
				}
			default:
				r.skip(int(n))
			}
		default:
			return fmt.Errorf("chunk: unsupported wire type %d", typ)
		}
	}
	return nil
}

// sliceReader reads a mem.BufferSlice front to back.
type sliceReader struct {
	bufs mem.BufferSlice
	i    int // current buffer
	off  int // offset in it
	rem  int // bytes left; computed on first use
	init bool
}

func (r *sliceReader) remaining() int {
	if !r.init {
		r.rem, r.init = r.bufs.Len(), true
	}
	return r.rem
}

func (r *sliceReader) empty() bool { return r.remaining() == 0 }

// cur is the unread part of the current buffer, moving past spent ones.
func (r *sliceReader) cur() []byte {
	for r.i < len(r.bufs) {
		if b := r.bufs[r.i].ReadOnlyData(); r.off < len(b) {
			return b[r.off:]
		}
		r.i, r.off = r.i+1, 0
	}
	return nil
}

func (r *sliceReader) advance(n int) {
	r.off += n
	r.rem -= n
}

func (r *sliceReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b := r.cur()
		if len(b) == 0 {
			return 0, errors.New("chunk: truncated varint")
		}
		r.advance(1)
		v |= uint64(b[0]&0x7f) << shift
		if b[0] < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("chunk: varint overflow")
}

func (r *sliceReader) read(dst []byte) error {
	for len(dst) > 0 {
		b := r.cur()
		if len(b) == 0 {
			return errors.New("chunk: truncated message")
		}
		n := copy(dst, b)
		dst = dst[n:]
		r.advance(n)
	}
	return nil
}

// slice returns the next n bytes as views of the underlying buffers, each
// holding a reference (the caller checked that n bytes remain).
func (r *sliceReader) slice(n int) mem.BufferSlice {
	var out mem.BufferSlice
	for n > 0 {
		b := r.cur()
		k := min(n, len(b))
		out = append(out, r.bufs[r.i].Slice(r.off, r.off+k))
		r.advance(k)
		n -= k
	}
	return out
}

func (r *sliceReader) skip(n int) {
	for n > 0 {
		k := min(n, len(r.cur()))
		r.advance(k)
		n -= k
	}
}

// bufPool is a gRPC buffer pool of power-of-two size classes that, unlike
// gRPC's default pool, does not zero buffers it hands out again: every
// user overwrites what it reads. It serves the transport's frame buffers
// and the encoded data of sent chunks.
type bufPool struct {
	classes [maxPoolShift + 1]sync.Pool
}

const (
	minPoolShift = 10 // 1 KiB
	maxPoolShift = 22 // 4 MiB, above MaxChunkBytes
)

var pool = &bufPool{}

func poolClass(n int) int {
	if n <= 1<<minPoolShift {
		return minPoolShift
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer of length n.
func (p *bufPool) Get(n int) *[]byte {
	k := poolClass(n)
	if k > maxPoolShift {
		b := make([]byte, n)
		return &b
	}
	if v, ok := p.classes[k].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<k)
	return &b
}

// Put returns a buffer from Get to the pool.
func (p *bufPool) Put(b *[]byte) {
	c := cap(*b)
	k := poolClass(c)
	if c != 1<<k || k > maxPoolShift {
		return // not one of ours
	}
	p.classes[k].Put(b)
}
