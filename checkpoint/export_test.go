package checkpoint_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors := []checkpoint.Tensor{
		checkpoint.Float32Tensor("model.layers.0.w", []int{3, 5}, values(1, 15)),
		checkpoint.Float32Tensor("embed", []int{7}, values(2, 7)),
		checkpoint.Float32Tensor("scalar", nil, []float32{4}),
		{Name: "tokens", DType: "int64", Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
	}
	meta := map[string]string{"format": "pt", "round": "12"}
	var buf bytes.Buffer
	if err := checkpoint.WriteSafetensors(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	// Deterministic: the same tensors in another order give the same bytes.
	var again bytes.Buffer
	rev := []checkpoint.Tensor{tensors[3], tensors[2], tensors[1], tensors[0]}
	if err := checkpoint.WriteSafetensors(&again, rev, meta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("output depends on the order of the tensors")
	}
	if n := binary.LittleEndian.Uint64(buf.Bytes()); n%8 != 0 {
		t.Fatalf("header length %d is not a multiple of 8", n)
	}

	got, gotMeta, err := checkpoint.ReadSafetensors(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// Written, and so read back, in name order.
	want := []checkpoint.Tensor{tensors[1], tensors[0], tensors[2], tensors[3]}
	want[2].Shape = []int{}
	sameTensors(t, "safetensors", got, want)
	if gotMeta["format"] != "pt" || gotMeta["round"] != "12" || len(gotMeta) != 2 {
		t.Fatalf("metadata %v", gotMeta)
	}
}

func TestSafetensorsLayout(t *testing.T) {
	// The layout other readers (Python's safetensors) expect, byte for byte.
	var buf bytes.Buffer
	if err := checkpoint.WriteSafetensors(&buf, []checkpoint.Tensor{checkpoint.Float32Tensor("a", []int{2}, []float32{1, 2})}, nil); err != nil {
		t.Fatal(err)
	}
	header := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	want := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	want = append(want, header...)
	want = append(want, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("got\n%q\nwant\n%q", buf.Bytes(), want)
	}
}

// stFile builds a safetensors file from a header and data.
func stFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestReadSafetensorsRefuses(t *testing.T) {
	eight := make([]byte, 8)
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2}, "reading header length"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<40), "header length 1099511627776 is out of range"},
		{"truncated header", binary.LittleEndian.AppendUint64(nil, 100), "reading 100-byte header"},
		{"not an object", stFile(`[1, 2]`, nil), "not a JSON object"},
		{"duplicate", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), `key "a" appears twice`},
		{"unknown key", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, eight), `unknown field "x"`},
		{"dtype", stFile(`{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}`, eight), `dtype "C64" is not supported`},
		{"offsets vs shape", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, eight), "do not hold the 4 bytes"},
		{"three offsets", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, eight), "data_offsets has 3 numbers"},
		{"gap", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), `tensor "a" starts at byte 4, want 0`},
		{"overlap", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), "starts at byte 4, want 8"},
		{"short data", stFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, eight), "data is 8 bytes, the header says 16"},
		{"trailing data", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, eight), "data goes on past the 4 bytes"},
		{"trailing header", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x`, eight[:4]), "data after the JSON object"},
		{"metadata", stFile(`{"__metadata__":{"a":1}}`, nil), "__metadata__: want an object of strings"},
		{"negative", stFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, nil), "shape[0] is -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := checkpoint.ReadSafetensors(bytes.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadSafetensors: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWriteSafetensorsRefuses(t *testing.T) {
	for _, tc := range []struct {
		tensors []checkpoint.Tensor
		want    string
	}{
		{[]checkpoint.Tensor{checkpoint.Float32Tensor("a", nil, []float32{1}), checkpoint.Float32Tensor("a", nil, []float32{2})}, `two tensors named "a"`},
		{[]checkpoint.Tensor{checkpoint.Float32Tensor("__metadata__", nil, []float32{1})}, `cannot be named "__metadata__"`},
		{[]checkpoint.Tensor{{Name: "b", DType: "float32", Shape: []int{2}, Data: make([]byte, 3)}}, `tensor "b": 3 bytes of data`},
	} {
		if err := checkpoint.WriteSafetensors(&bytes.Buffer{}, tc.tensors, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WriteSafetensors: %v, want %q", err, tc.want)
		}
	}
}

func FuzzReadSafetensors(f *testing.F) {
	var buf bytes.Buffer
	_ = checkpoint.WriteSafetensors(&buf, []checkpoint.Tensor{
		checkpoint.Float32Tensor("a", []int{2}, []float32{1, 2}),
		checkpoint.Float32Tensor("b", []int{1, 1}, []float32{3}),
	}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add(stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		tensors, meta, err := checkpoint.ReadSafetensors(bytes.NewReader(b))
		if err != nil {
			return
		}
		// What is accepted writes back and reads back the same.
		var out bytes.Buffer
		if err := checkpoint.WriteSafetensors(&out, tensors, meta); err != nil {
			t.Fatalf("accepted file does not write back: %v", err)
		}
		again, _, err := checkpoint.ReadSafetensors(&out)
		if err != nil || len(again) != len(tensors) {
			t.Fatalf("written back file refused: %v", err)
		}
	})
}
