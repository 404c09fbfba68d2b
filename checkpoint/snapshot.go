package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"unsafe"
)

// Tensor is a named array of values in little-endian byte order, the unit a
// checkpoint stores. Data is len(Data) = product(Shape) × the dtype's size.
type Tensor struct {
	Name  string
	DType string // "float32" (see dtypeSizes for the others)
	Shape []int
	Data  []byte // little-endian
}

// DTypeFloat32 is the dtype of a Tensor of float32 values.
const DTypeFloat32 = "float32"

// dtypeSizes lists the dtypes a checkpoint may hold and their element size
// in bytes. Training writes float32; the others are accepted so that a
// checkpoint written by a newer trainer still parses.
var dtypeSizes = map[string]int64{
	"float32":  4,
	"float64":  8,
	"float16":  2,
	"bfloat16": 2,
	"int64":    8,
	"int32":    4,
	"uint8":    1,
}

// maxTensorBytes bounds one tensor (1 TiB): far beyond any tensor a worker
// holds, small enough that sizes computed from shapes never overflow.
const maxTensorBytes = 1 << 40

// littleEndian is whether float32 values in memory are already their
// little-endian bytes, so that converting them is a copy.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32Tensor returns a float32 tensor holding a copy of v, so that
// training may go on changing v while the copy is uploaded. This copy is
// all that training waits for when it saves a checkpoint.
func Float32Tensor(name string, shape []int, v []float32) Tensor {
	data := make([]byte, 4*len(v))
	if littleEndian {
		if len(v) > 0 {
			copy(data, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v)))
		}
	} else {
		for i, x := range v {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
		}
	}
	return Tensor{Name: name, DType: DTypeFloat32, Shape: append([]int(nil), shape...), Data: data}
}

// Float32s returns the values of a float32 tensor (a new slice). It fails if
// the tensor is of another dtype or its data does not match its shape.
func (t Tensor) Float32s() ([]float32, error) {
	if t.DType != DTypeFloat32 {
		return nil, fmt.Errorf("tensor %q: dtype is %q, want %q", t.Name, t.DType, DTypeFloat32)
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	v := make([]float32, len(t.Data)/4)
	if littleEndian {
		if len(v) > 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(t.Data)), t.Data)
		}
		return v, nil
	}
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v, nil
}

// check reports a tensor whose dtype is unknown or whose data does not
// have the size its shape calls for.
func (t Tensor) check() error {
	if t.Name == "" {
		return fmt.Errorf("tensor with shape %v has no name", t.Shape)
	}
	want, err := tensorBytes(t.DType, t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: %d bytes of data, but shape %v of %s needs %d", t.Name, len(t.Data), t.Shape, t.DType, want)
	}
	return nil
}

// tensorBytes is the size of a tensor of the given dtype and shape, or an
// error naming what is wrong (unknown dtype, negative dimension, too big).
func tensorBytes(dtype string, shape []int) (int64, error) {
	size, ok := dtypeSizes[dtype]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q (known: bfloat16, float16, float32, float64, int32, int64, uint8)", dtype)
	}
	n := uint64(size)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape[%d] is %d: dimensions cannot be negative", i, d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > maxTensorBytes {
			return 0, fmt.Errorf("shape %v: tensor larger than %d bytes", shape, int64(maxTensorBytes))
		}
		n = lo
	}
	return int64(n), nil
}

// ModelConfig describes the model a checkpoint belongs to, so that a
// restore into a different model is refused rather than misapplied.
type ModelConfig struct {
	Name       string `json:"name"`
	Params     int    `json:"params"`
	BatchSize  int    `json:"batch_size"`
	ContextLen int    `json:"context_len"`
	Seed       uint64 `json:"seed"`
	Algorithm  string `json:"algorithm"`
}

// OptimizerState is the outer optimizer's state (DiLoCo: Nesterov momentum
// with one momentum buffer per parameter tensor).
type OptimizerState struct {
	Name         string
	LR, Momentum float64
	Tensors      []Tensor
}

// Snapshot is the training state saved as one checkpoint. A Snapshot given
// to Writer.Save belongs to the writer from then on: its tensors' Data must
// not be changed (Float32Tensor makes the copy that allows this).
type Snapshot struct {
	Job    string
	Round  uint64
	Step   uint64
	Tokens uint64
	Model  ModelConfig
	// Tensors are the model weights.
	Tensors []Tensor
	// Optimizer is the outer optimizer's state; nil if there is none.
	Optimizer *OptimizerState
	// Cursors are the data cursors: for each data shard (e.g. a task rank
	// "0", "1"), the index of the next batch it reads.
	Cursors map[string]uint64
	Meta    map[string]string
}

// check reports a snapshot that cannot be saved: bad tensors or names used
// twice.
func (s *Snapshot) check() error {
	if err := checkJob(s.Job); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, t := range s.Tensors {
		if err := t.check(); err != nil {
			return fmt.Errorf("tensors[%d]: %w", i, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("tensors[%d]: name %q used twice", i, t.Name)
		}
		seen[t.Name] = true
	}
	if s.Optimizer != nil {
		seen := map[string]bool{}
		for i, t := range s.Optimizer.Tensors {
			if err := t.check(); err != nil {
				return fmt.Errorf("optimizer.tensors[%d]: %w", i, err)
			}
			if seen[t.Name] {
				return fmt.Errorf("optimizer.tensors[%d]: name %q used twice", i, t.Name)
			}
			seen[t.Name] = true
		}
	}
	return nil
}
