package checkpoint_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/megha-ml/megha/checkpoint"
)

var (
	hashA = strings.Repeat("a", 64)
	hashB = strings.Repeat("b", 64)
	hashC = strings.Repeat("c", 64)
)

// validManifest returns a small manifest that ParseManifest accepts.
func validManifest() *checkpoint.Manifest {
	return &checkpoint.Manifest{
		Format: checkpoint.FormatVersion, Job: testJob, Round: 7, Step: 70, Tokens: 1 << 40,
		Created: time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC),
		Model:   checkpoint.ModelConfig{Name: "transformer-tiny", Params: 24, Seed: 1<<64 - 1, Algorithm: "diloco"},
		Tensors: []checkpoint.TensorEntry{
			{Name: "w", DType: "float32", Shape: []int{2, 3}, Size: 24, SHA256: hashA,
				Chunks: []checkpoint.ChunkRef{{SHA256: hashB, Size: 16}, {SHA256: hashC, Size: 8}}},
			{Name: "empty", DType: "float32", Shape: []int{0}, Size: 0, SHA256: hashA},
		},
		Optimizer: &checkpoint.OptimizerEntry{Name: "nesterov", LR: 0.7, Momentum: 0.9, Tensors: []checkpoint.TensorEntry{
			{Name: "w", DType: "bfloat16", Shape: []int{2}, Size: 4, SHA256: hashB, Chunks: []checkpoint.ChunkRef{{SHA256: hashB, Size: 4}}},
		}},
		Cursors: map[string]uint64{"0": 5, "1": 6},
		Meta:    map[string]string{"note": "<&>"},
		Bytes:   28,
	}
}

func encode(t testing.TB, m *checkpoint.Manifest) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestManifestRoundTrip(t *testing.T) {
	b := encode(t, validManifest())
	m, err := checkpoint.ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if b2 := encode(t, m); !bytes.Equal(b, b2) {
		t.Fatalf("re-encoded manifest differs:\n%s\n%s", b, b2)
	}
	if m.Model.Seed != 1<<64-1 || m.Tokens != 1<<40 || !m.Created.Equal(validManifest().Created) || m.Optimizer.Tensors[0].DType != "bfloat16" {
		t.Fatalf("parsed %+v", m)
	}
	if !bytes.Contains(b, []byte("\n  \"format\": 1,\n")) {
		t.Fatalf("not indented JSON:\n%s", b)
	}
}

// rawEncode encodes a manifest with a correct checksum but without
// Encode's checks, to feed ParseManifest manifests only it refuses.
func rawEncode(t *testing.T, m *checkpoint.Manifest) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseManifestRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *checkpoint.Manifest)
		want   string
	}{
		{"format", func(m *checkpoint.Manifest) { m.Format = 2 }, "format: version 2 is not supported"},
		{"job", func(m *checkpoint.Manifest) { m.Job = "../x" }, "job: job ID \"../x\" starts with '.'"},
		{"empty job", func(m *checkpoint.Manifest) { m.Job = "" }, "job: job ID is empty"},
		{"upper-case hash", func(m *checkpoint.Manifest) { m.Tensors[0].Chunks[1].SHA256 = strings.ToUpper(hashC) }, "tensors[0].chunks[1].sha256: \"CCC"},
		{"short hash", func(m *checkpoint.Manifest) { m.Tensors[0].SHA256 = "abc" }, "tensors[0].sha256: \"abc\" is not a SHA-256"},
		{"optimizer hash", func(m *checkpoint.Manifest) { m.Optimizer.Tensors[0].Chunks[0].SHA256 = "" }, "optimizer.tensors[0].chunks[0].sha256"},
		{"chunk sizes", func(m *checkpoint.Manifest) { m.Tensors[0].Chunks[1].Size = 4 }, "tensors[0].chunks: add up to 20 bytes, but the tensor is 24"},
		{"chunk too big", func(m *checkpoint.Manifest) { m.Tensors[0].Chunks[0].Size = 30 }, "tensors[0].chunks[0].size: chunks add up to more than"},
		{"negative chunk", func(m *checkpoint.Manifest) { m.Tensors[0].Chunks[0].Size = -8 }, "tensors[0].chunks[0].size: -8, want > 0"},
		{"size vs shape", func(m *checkpoint.Manifest) { m.Tensors[0].Shape = []int{3, 3} }, "tensors[0].size: 24, but shape [3 3] of float32 is 36 bytes"},
		{"dtype", func(m *checkpoint.Manifest) { m.Tensors[0].DType = "float8" }, "tensors[0] (w): unknown dtype \"float8\""},
		{"negative dim", func(m *checkpoint.Manifest) { m.Tensors[1].Shape = []int{-1} }, "tensors[1] (empty): shape[0] is -1"},
		{"overflow", func(m *checkpoint.Manifest) { m.Tensors[1].Shape = []int{1 << 32, 1 << 32, 1 << 32} }, "tensors[1] (empty): shape [4294967296 4294967296 4294967296]: tensor larger than"},
		{"no name", func(m *checkpoint.Manifest) { m.Tensors[1].Name = "" }, "tensors[1].name: empty"},
		{"same name", func(m *checkpoint.Manifest) { m.Tensors[1].Name = "w" }, "tensors[1].name: \"w\" used twice"},
		{"bytes", func(m *checkpoint.Manifest) { m.Bytes = 24 }, "bytes: 24, but the tensors add up to 28"},
		{"checksum", func(m *checkpoint.Manifest) { m.Checksum = hashA }, "checksum: manifest content hashes to"},
		{"no checksum", func(m *checkpoint.Manifest) { m.Checksum = "" }, "checksum: \"\" is not a SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			encode(t, m) // fills the checksum
			tc.mutate(m)
			_, err := checkpoint.ParseManifest(rawEncode(t, m))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseManifest: %v, want %q", err, tc.want)
			}
		})
	}

	good := encode(t, validManifest())
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "not valid JSON"},
		{"trailing", append(append([]byte{}, good...), "{}"...), "data after its JSON object"},
		{"unknown field", bytes.Replace(good, []byte(`"format": 1,`), []byte(`"format": 1, "extra": 2,`), 1), `unknown field "extra"`},
		{"empty", nil, "not valid JSON"},
		{"null", []byte("null"), "format: version 0"},
		{"too big", bytes.Repeat([]byte(" "), 64<<20+1), "more than the 67108864 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkpoint.ParseManifest(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseManifest: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	m := validManifest()
	m.Bytes = 1
	if _, err := m.Encode(); err == nil || !strings.Contains(err.Error(), "bytes: 1") {
		t.Fatalf("Encode: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if got := checkpoint.ManifestKey("j-1", 42); got != "jobs/j-1/ckpt/000000000042/manifest.json" {
		t.Error(got)
	}
	if got := checkpoint.ChunkKey("j-1", hashA); got != "jobs/j-1/chunks/"+hashA {
		t.Error(got)
	}
	if got := checkpoint.JobPrefix("j-1"); got != "jobs/j-1/" {
		t.Error(got)
	}
}

func FuzzParseManifest(f *testing.F) {
	good := encode(f, validManifest())
	f.Add(good)
	f.Add(good[:len(good)-10])
	f.Add(bytes.Replace(good, []byte(`"size": 16`), []byte(`"size": 17`), 1))
	f.Add(bytes.Replace(good, []byte(`"float32"`), []byte(`"float64"`), 1))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"job":"j","tensors":[{"name":"x","dtype":"uint8","shape":[9223372036854775807,2]}]}`))
	f.Add([]byte("null"))
	small := &checkpoint.Manifest{Format: 1, Job: "j", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))}
	f.Add(encode(f, small))
	f.Add([]byte(`{"format":1,"job":"j","created":"2026-01-02T03:04:05+01:00","tensors":[{"name":"x","dtype":"uint8","shape":[2],"size":2,"sha256":"` + hashA + `","chunks":[{"sha256":"` + hashB + `","size":2}]}],"bytes":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrips(t, b)
		// Most inputs fail the checksum before anything else. Try b again
		// with the checksum its content should have, so that the fuzzer
		// also reaches the checks behind it with inputs Encode never
		// writes (other spacing, key order, escapes, duplicate keys…).
		var loose checkpoint.Manifest
		if json.Unmarshal(b, &loose) != nil {
			return
		}
		if _, err := loose.Encode(); err != nil {
			return
		}
		obj := bytes.TrimRight(b, " \t\r\n")
		if len(obj) == 0 || obj[len(obj)-1] != '}' {
			return
		}
		fixed := append(append([]byte{}, obj[:len(obj)-1]...), `,"checksum":"`+loose.Checksum+`"}`...)
		roundTrips(t, fixed)
	})
}

// roundTrips checks that a manifest ParseManifest accepts re-encodes to
// one that parses to the same thing and encodes the same again.
func roundTrips(t *testing.T, b []byte) {
	m, err := checkpoint.ParseManifest(b)
	if err != nil {
		return
	}
	b1, err := m.Encode()
	if err != nil {
		t.Fatalf("accepted manifest does not encode: %v\n%s", err, b)
	}
	m2, err := checkpoint.ParseManifest(b1)
	if err != nil {
		t.Fatalf("re-encoded manifest refused: %v\n%s", err, b1)
	}
	b2, err := m2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) || m.Checksum != m2.Checksum || !m.Created.Equal(m2.Created) {
		t.Fatalf("re-parse differs:\n%s\n%s", b1, b2)
	}
}
