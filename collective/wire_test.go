package collective

import (
	"math"
	"math/rand/v2"
	"testing"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// split cuts b into buffers at random points, as the transport's frames
// would.
func split(rng *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(40))
		out = append(out, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return out
}

// The codec's bytes are meghav1.Chunk's, both ways, whatever the framing.
func TestCodecIsProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		data := make([]byte, rng.IntN(300))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		want := &meghav1.Chunk{
			Round: rng.Uint64(), Step: uint32(rng.IntN(9)), ChunkIndex: uint32(rng.IntN(1 << 20)),
			Offset: uint64(rng.IntN(1 << 40)), Count: uint32(rng.IntN(1 << 16)),
			Encoding: meghav1.ChunkEncoding(rng.IntN(4)), Data: data,
			Checksum: rng.Uint32(), FromRank: uint32(rng.IntN(5)), World: uint32(rng.IntN(9)),
		}
		if i%2 == 0 {
			want.Weight = rng.Float64() * 10
			want.Scales = []float32{1.5, 0, float32(rng.Float64())}
		}

		// Standard protobuf bytes, in pieces, into a chunk.
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		c := &chunk{}
		if err := peerCodec.Unmarshal(split(rng, b), c); err != nil {
			t.Fatal(err)
		}
		got := &meghav1.Chunk{Round: c.round, Step: c.step, ChunkIndex: c.index, Offset: c.offset, Count: c.count,
			Encoding: c.encoding, Scales: c.scales, Data: c.data.Materialize(), Checksum: c.checksum,
			Weight: c.weight, FromRank: c.from, World: c.world}
		if !proto.Equal(got, want) {
			t.Fatalf("parsed %v, want %v", got, want)
		}

		// The chunk's bytes, read by standard protobuf.
		c.data = split(rng, c.data.Materialize())
		out, err := peerCodec.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back := &meghav1.Chunk{}
		if err := proto.Unmarshal(out.Materialize(), back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(back, want) {
			t.Fatalf("marshalled %v, want %v", back, want)
		}
	}
	// Other messages go through protobuf.
	ack := &meghav1.ExchangeAck{Round: 4, Chunks: 9}
	b, err := peerCodec.Marshal(ack)
	if err != nil {
		t.Fatal(err)
	}
	back := &meghav1.ExchangeAck{}
	if err := peerCodec.Unmarshal(b, back); err != nil || !proto.Equal(back, ack) {
		t.Fatalf("ack %v, %v", back, err)
	}
	// A message cut inside a field fails (the round field is 2 bytes, then
	// data's tag, length and bytes).
	full, _ := proto.Marshal(&meghav1.Chunk{Round: 1, Data: []byte("abcdef")})
	for n := 3; n < len(full); n++ {
		if err := peerCodec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(full[:n])}, &chunk{}); err == nil {
			t.Fatalf("%d of %d bytes accepted", n, len(full))
		}
	}
}

// The stream decoder gives what Decode gives, however the data is cut.
func TestStreamDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 1000)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 100)
	}
	for _, mode := range []Compression{None, FP16, Int8} {
		scales, data := NewCompressor(mode, false).Encode(x, 0)
		want := make([]float32, len(x))
		if err := Decode(mode, scales, data, want); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			d := streamDecoder{mode: mode, scales: scales}
			got := make([]float32, 0, len(x))
			out := make([]float32, 64)
			for _, b := range split(rng, data) {
				n := d.next(b.ReadOnlyData(), out)
				got = append(got, out[:n]...)
			}
			if len(got) != len(x) || d.nc != 0 {
				t.Fatalf("%v: %d values, %d bytes left over", mode, len(got), d.nc)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v: value %d is %g, want %g", mode, i, got[i], want[i])
				}
			}
		}
	}
}
