package checkpoint_test

import (
	"math"
	"strings"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
)

func TestFloat32TensorCopies(t *testing.T) {
	v := []float32{1, -0, float32(math.Inf(1)), math.Float32frombits(0x7fc00001), math.SmallestNonzeroFloat32}
	shape := []int{5}
	tn := checkpoint.Float32Tensor("x", shape, v)
	want := append([]float32(nil), v...)
	v[0], shape[0] = 9, 6 // training goes on
	if tn.DType != "float32" || tn.Shape[0] != 5 || len(tn.Data) != 20 {
		t.Fatalf("tensor %+v", tn)
	}
	// Little-endian bytes of 1.0.
	if tn.Data[0] != 0 || tn.Data[1] != 0 || tn.Data[2] != 0x80 || tn.Data[3] != 0x3f {
		t.Fatalf("1.0 encoded as % x", tn.Data[:4])
	}
	got, err := tn.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("[%d] = %v, want %v (bit for bit)", i, got[i], want[i])
		}
	}
}

func TestFloat32sRefuses(t *testing.T) {
	for _, tc := range []struct {
		t    checkpoint.Tensor
		want string
	}{
		{checkpoint.Tensor{Name: "a", DType: "int32", Shape: []int{1}, Data: make([]byte, 4)}, `tensor "a": dtype is "int32", want "float32"`},
		{checkpoint.Tensor{Name: "b", DType: "float32", Shape: []int{2}, Data: make([]byte, 4)}, `tensor "b": 4 bytes of data, but shape [2] of float32 needs 8`},
		{checkpoint.Tensor{Name: "c", DType: "float32", Shape: []int{-2}, Data: nil}, `shape[0] is -2`},
	} {
		if _, err := tc.t.Float32s(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Float32s(%s): %v, want %q", tc.t.Name, err, tc.want)
		}
	}
	if v, err := checkpoint.Float32Tensor("e", []int{0}, nil).Float32s(); err != nil || len(v) != 0 {
		t.Fatalf("empty tensor: %v %v", v, err)
	}
}

// BenchmarkFloat32Tensor is the copy training waits for when it saves.
func BenchmarkFloat32Tensor(b *testing.B) {
	v := make([]float32, 16<<20)
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		checkpoint.Float32Tensor("w", []int{len(v)}, v)
	}
}
