package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"unicode/utf8"
)

// safetensors dtype names for ours.
var safetensorsDTypes = map[string]string{
	"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
	"int64": "I64", "int32": "I32", "uint8": "U8",
}

// maxSafetensorsHeader is the largest header ReadSafetensors accepts (the
// format's own limit, 100 MB).
const maxSafetensorsHeader = 100 << 20

// stEntry is one tensor in a safetensors header.
type stEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// WriteSafetensors writes tensors in the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header giving each tensor's dtype ("F32"…), shape
// and data offsets plus meta under "__metadata__", then the data. Tensors
// are written in name order and the header is padded to 8 bytes, so the
// same tensors always give the same bytes.
func WriteSafetensors(w io.Writer, tensors []Tensor, meta map[string]string) error {
	sorted := append([]Tensor(nil), tensors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := make(map[string]any, len(sorted)+1)
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for i, t := range sorted {
		if err := t.check(); err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
		if t.Name == "__metadata__" {
			return errors.New(`safetensors: a tensor cannot be named "__metadata__"`)
		}
		if i > 0 && sorted[i-1].Name == t.Name {
			return fmt.Errorf("safetensors: two tensors named %q", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		n := int64(len(t.Data))
		header[t.Name] = stEntry{DType: safetensorsDTypes[t.DType], Shape: shape, DataOffsets: []int64{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors: encoding header: %w", err)
	}
	// Pad with spaces so that the data starts 8-byte aligned.
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	for _, t := range sorted {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: writing tensor %s: %w", t.Name, err)
		}
	}
	return nil
}

// ReadSafetensors reads a safetensors file, returning its tensors in the
// order of their data and its metadata. It checks what it reads: the
// header's size and JSON (no duplicate or unknown keys), known dtypes,
// offsets that match the shapes and cover the data exactly, no trailing
// bytes. Memory grows with the data actually read, not with what the
// header claims.
func ReadSafetensors(r io.Reader) ([]Tensor, map[string]string, error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	hlen := binary.LittleEndian.Uint64(n[:])
	if hlen < 2 || hlen > maxSafetensorsHeader {
		return nil, nil, fmt.Errorf("safetensors: header length %d is out of range (2 to %d)", hlen, maxSafetensorsHeader)
	}
	var hb bytes.Buffer
	if _, err := io.CopyN(&hb, r, int64(hlen)); err != nil {
		return nil, nil, fmt.Errorf("safetensors: reading %d-byte header: %w", hlen, err)
	}
	if !utf8.Valid(hb.Bytes()) {
		return nil, nil, errors.New("safetensors: header is not UTF-8")
	}
	names, entries, meta, err := parseSafetensorsHeader(hb.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}

	// Offsets must tile the data from 0 with no gap or overlap.
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return entries[idx[a]].DataOffsets[0] < entries[idx[b]].DataOffsets[0] })
	var end int64
	for _, i := range idx {
		e := entries[i]
		if e.DataOffsets[0] != end {
			return nil, nil, fmt.Errorf("safetensors: tensor %q starts at byte %d, want %d (offsets must cover the data without gaps or overlaps)", names[i], e.DataOffsets[0], end)
		}
		end = e.DataOffsets[1]
	}
	var data bytes.Buffer
	if m, err := io.CopyN(&data, r, end); err != nil {
		return nil, nil, fmt.Errorf("safetensors: data is %d bytes, the header says %d: %w", m, end, err)
	}
	var one [1]byte
	if m, _ := io.ReadFull(r, one[:]); m > 0 {
		return nil, nil, fmt.Errorf("safetensors: data goes on past the %d bytes the header describes", end)
	}
	b := data.Bytes()
	out := make([]Tensor, 0, len(idx))
	for _, i := range idx {
		e := entries[i]
		out = append(out, Tensor{Name: names[i], DType: e.dtype, Shape: e.Shape, Data: b[e.DataOffsets[0]:e.DataOffsets[1]:e.DataOffsets[1]]})
	}
	return out, meta, nil
}

// stParsed is a checked header entry.
type stParsed struct {
	stEntry
	dtype string // ours
}

// parseSafetensorsHeader decodes a header token by token, so that a key
// given twice is refused rather than silently replaced.
func parseSafetensorsHeader(h []byte) (names []string, entries []stParsed, meta map[string]string, err error) {
	dec := json.NewDecoder(bytes.NewReader(h))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, nil, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, err
		}
		name := tok.(string) // object keys are strings
		if seen[name] {
			return nil, nil, nil, fmt.Errorf("key %q appears twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, nil, fmt.Errorf("%q: %w", name, err)
		}
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, nil, fmt.Errorf("__metadata__: want an object of strings: %w", err)
			}
			continue
		}
		e, err := parseSafetensorsEntry(raw)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if name == "" {
			return nil, nil, nil, errors.New("a tensor has an empty name")
		}
		names = append(names, name)
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, nil, err
	}
	// Only the padding may follow.
	if rest := h[dec.InputOffset():]; len(bytes.TrimRight(rest, " ")) > 0 {
		return nil, nil, nil, errors.New("data after the JSON object")
	}
	return names, entries, meta, nil
}

func parseSafetensorsEntry(raw json.RawMessage) (stParsed, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var e stParsed
	if err := dec.Decode(&e.stEntry); err != nil {
		return e, err
	}
	for ours, theirs := range safetensorsDTypes {
		if theirs == e.DType {
			e.dtype = ours
		}
	}
	if e.dtype == "" {
		return e, fmt.Errorf("dtype %q is not supported (F32, F64, F16, BF16, I64, I32, U8)", e.DType)
	}
	want, err := tensorBytes(e.dtype, e.Shape)
	if err != nil {
		return e, err
	}
	if len(e.DataOffsets) != 2 {
		return e, fmt.Errorf("data_offsets has %d numbers, want 2", len(e.DataOffsets))
	}
	b, end := e.DataOffsets[0], e.DataOffsets[1]
	if b < 0 || end < b || end-b != want {
		return e, fmt.Errorf("data_offsets [%d, %d] do not hold the %d bytes of shape %v of %s", b, end, want, e.Shape, e.DType)
	}
	return e, nil
}
