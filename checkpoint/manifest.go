package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// maxManifestBytes bounds a manifest read from a store (64 MiB: about
// 400,000 chunks, far more than any model we train).
const maxManifestBytes = 64 << 20

// Manifest describes one checkpoint: the training position, the model, and
// every tensor as a list of content-addressed chunks. It is stored as JSON
// at ManifestKey(job, round) and written after all its chunks: a manifest
// in the store is a committed checkpoint.
type Manifest struct {
	Format  int         `json:"format"`
	Job     string      `json:"job"`
	Round   uint64      `json:"round"`
	Step    uint64      `json:"step"`
	Tokens  uint64      `json:"tokens"`
	Created time.Time   `json:"created"`
	Model   ModelConfig `json:"model"`
	// Tensors are the model weights.
	Tensors   []TensorEntry     `json:"tensors"`
	Optimizer *OptimizerEntry   `json:"optimizer,omitempty"`
	Cursors   map[string]uint64 `json:"cursors,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
	// Bytes is the size of the checkpoint: the sum of the sizes of the
	// weights and the optimizer's tensors.
	Bytes int64 `json:"bytes"`
	// Checksum is the SHA-256 (hex) of the manifest as Encode writes it
	// with Checksum empty. It catches a manifest damaged in storage, and
	// covers the chunk hashes, so that a verified manifest vouches for
	// every byte of the checkpoint.
	Checksum string `json:"checksum"`
}

// TensorEntry is one tensor of a manifest: what it is, and the chunks that
// hold its bytes, in order.
type TensorEntry struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Size  int64  `json:"size"`
	// SHA256 identifies the tensor's content (hex): for a tensor of one
	// chunk, that chunk's SHA-256 (the data's); otherwise the SHA-256 of
	// its chunks' binary SHA-256 digests in order (see TensorDigest). Every
	// byte is covered by its chunk's hash, so the tensor's costs no second
	// pass over the data, and it still catches chunks listed in the wrong
	// order.
	SHA256 string     `json:"sha256"`
	Chunks []ChunkRef `json:"chunks"`
}

// ChunkRef names one chunk: ChunkKey(job, SHA256) holds Size bytes.
type ChunkRef struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// OptimizerEntry is the outer optimizer of a manifest.
type OptimizerEntry struct {
	Name     string        `json:"name"`
	LR       float64       `json:"lr"`
	Momentum float64       `json:"momentum"`
	Tensors  []TensorEntry `json:"tensors"`
}

// JobPrefix is the key prefix of everything stored for a job.
func JobPrefix(job string) string { return "jobs/" + job + "/" }

// ManifestKey is the key of a job's checkpoint manifest for a round. The
// round is zero-padded to 12 digits so that listings sort by round.
func ManifestKey(job string, round uint64) string {
	return fmt.Sprintf("%sckpt/%012d/manifest.json", JobPrefix(job), round)
}

// ChunkKey is the key of a job's chunk with the given SHA-256 (hex).
func ChunkKey(job, sha string) string { return JobPrefix(job) + "chunks/" + sha }

// checkJob refuses a job ID that cannot be a single key segment.
func checkJob(job string) error {
	if job == "" {
		return errors.New("job ID is empty")
	}
	if len(job) > 200 {
		return fmt.Errorf("job ID %.20q… is %d bytes long; at most 200", job, len(job))
	}
	if job[0] == '.' {
		return fmt.Errorf("job ID %q starts with '.'", job)
	}
	for _, c := range job {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("job ID %q: character %q not allowed (letters, digits, '-', '_' and '.')", job, c)
		}
	}
	return nil
}

// ParseManifest decodes and checks a manifest read from a store. It trusts
// nothing: the size is bounded, unknown fields and trailing data are
// refused, the format version and checksum must match, every hash must be
// 64 lowercase hex digits, and every size must agree with the shapes and
// chunk lists. Errors name the field, e.g. "tensors[2].chunks[0].sha256".
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("manifest is %d bytes, more than the %d allowed", len(b), maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("manifest has data after its JSON object")
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("format: version %d is not supported (this build reads %d); use the megha version that wrote it", m.Format, FormatVersion)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	if !isHash(m.Checksum) {
		return nil, fmt.Errorf("checksum: %s", badHash(m.Checksum))
	}
	sum, _, err := m.checksum()
	if err != nil {
		return nil, err
	}
	if sum != m.Checksum {
		return nil, fmt.Errorf("checksum: manifest content hashes to %s, but its checksum says %s: the manifest was changed or damaged", sum, m.Checksum)
	}
	return &m, nil
}

// Encode fills in the checksum and returns the manifest as indented JSON.
// It refuses a manifest that ParseManifest would refuse.
func (m *Manifest) Encode() ([]byte, error) {
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("format: %d, want %d", m.Format, FormatVersion)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	sum, _, err := m.checksum()
	if err != nil {
		return nil, err
	}
	m.Checksum = sum
	return json.MarshalIndent(m, "", "  ")
}

// checksum returns the hash of the manifest encoded with Checksum empty,
// and that encoding.
func (m *Manifest) checksum() (string, []byte, error) {
	c := *m
	c.Checksum = ""
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return "", nil, fmt.Errorf("encoding manifest: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), b, nil
}

// validate checks everything but the format version and the checksum.
func (m *Manifest) validate() error {
	if err := checkJob(m.Job); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	total, err := validateTensors("tensors", m.Tensors)
	if err != nil {
		return err
	}
	if o := m.Optimizer; o != nil {
		n, err := validateTensors("optimizer.tensors", o.Tensors)
		if err != nil {
			return err
		}
		total += n // each ≤ 2^40 per tensor, at most a few million tensors: no overflow
	}
	if m.Bytes != total {
		return fmt.Errorf("bytes: %d, but the tensors add up to %d", m.Bytes, total)
	}
	return nil
}

// validateTensors checks a list of tensor entries and returns their total
// size.
func validateTensors(field string, ts []TensorEntry) (int64, error) {
	seen := make(map[string]bool, len(ts))
	var total int64
	for i, t := range ts {
		f := fmt.Sprintf("%s[%d]", field, i)
		if t.Name == "" {
			return 0, fmt.Errorf("%s.name: empty", f)
		}
		if seen[t.Name] {
			return 0, fmt.Errorf("%s.name: %q used twice", f, t.Name)
		}
		seen[t.Name] = true
		want, err := tensorBytes(t.DType, t.Shape)
		if err != nil {
			return 0, fmt.Errorf("%s (%s): %w", f, t.Name, err)
		}
		if t.Size != want {
			return 0, fmt.Errorf("%s.size: %d, but shape %v of %s is %d bytes", f, t.Size, t.Shape, t.DType, want)
		}
		if !isHash(t.SHA256) {
			return 0, fmt.Errorf("%s.sha256: %s", f, badHash(t.SHA256))
		}
		var sum int64
		for j, c := range t.Chunks {
			if !isHash(c.SHA256) {
				return 0, fmt.Errorf("%s.chunks[%d].sha256: %s", f, j, badHash(c.SHA256))
			}
			if c.Size <= 0 {
				return 0, fmt.Errorf("%s.chunks[%d].size: %d, want > 0", f, j, c.Size)
			}
			if c.Size > t.Size-sum {
				return 0, fmt.Errorf("%s.chunks[%d].size: chunks add up to more than the tensor's %d bytes", f, j, t.Size)
			}
			sum += c.Size
		}
		if sum != t.Size {
			return 0, fmt.Errorf("%s.chunks: add up to %d bytes, but the tensor is %d", f, sum, t.Size)
		}
		total += t.Size
	}
	return total, nil
}

// isHash reports whether s is a SHA-256 in 64 lowercase hex digits.
func isHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func badHash(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q is not a SHA-256 (want 64 lowercase hex digits)", s)
}

// short abbreviates a hash for messages.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12] + "…"
	}
	return sha
}

// entryRef is a tensor entry of a manifest and whether it is one of the
// optimizer's.
type entryRef struct {
	*TensorEntry
	optimizer bool
}

// label names the tensor for messages: "tensor w", "optimizer tensor w".
func (e entryRef) label() string {
	if e.optimizer {
		return "optimizer tensor " + e.Name
	}
	return "tensor " + e.Name
}

// entries returns every tensor entry of the manifest, weights first.
func (m *Manifest) entries() []entryRef {
	out := make([]entryRef, 0, len(m.Tensors))
	for i := range m.Tensors {
		out = append(out, entryRef{&m.Tensors[i], false})
	}
	if m.Optimizer != nil {
		for i := range m.Optimizer.Tensors {
			out = append(out, entryRef{&m.Optimizer.Tensors[i], true})
		}
	}
	return out
}

// TensorDigest is the SHA256 a tensor entry with these chunks must carry:
// the chunk's hash for one chunk, otherwise the SHA-256 of the chunks'
// binary digests in order (of nothing, for an empty tensor). Chunk hashes
// that are not valid hex make it "" (ParseManifest refuses them anyway).
func TensorDigest(chunks []ChunkRef) string {
	if len(chunks) == 1 {
		return chunks[0].SHA256
	}
	h := sha256.New()
	for _, c := range chunks {
		b, err := hex.DecodeString(c.SHA256)
		if err != nil || len(b) != sha256.Size {
			return ""
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
