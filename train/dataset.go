package train

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Batch is a batch of next-byte prediction examples: row b is the window
// Ctx[b·Context:(b+1)·Context] of a text, and Next[b·Context+i] is the byte
// that follows Ctx[b·Context+i] in that text (the window shifted by one).
// Tgt[b] = Next[(b+1)·Context−1] is the byte after the whole window: a model
// that reads the window as one context (MLP) predicts Tgt; a causal sequence
// model (transformer) predicts every byte of Next.
type Batch struct {
	Size, Context  int
	Ctx, Next, Tgt []byte
}

// NewBatch allocates a batch of size rows with context bytes each.
func NewBatch(size, context int) *Batch {
	return &Batch{Size: size, Context: context, Ctx: make([]byte, size*context),
		Next: make([]byte, size*context), Tgt: make([]byte, size)}
}

// Source fills batches deterministically: the same (rank, index) always
// yields the same batch, whatever else has been drawn.
type Source interface {
	Fill(b *Batch, rank, index int)
}

// SyntheticConfig describes a random sparse n-gram process over bytes.
// Alphabet symbols (≤256) are used; each context of Order previous symbols
// has Branch allowed successors with random probabilities (or equal ones if
// Uniform). BurnIn is the number of steps each sampled row runs before its
// example is taken (default 64), to approach the stationary distribution.
type SyntheticConfig struct {
	Seed                    uint64
	Order, Branch, Alphabet int
	Uniform                 bool
	BurnIn                  int
}

// Synthetic is a sparse n-gram process with a known entropy rate.
type Synthetic struct {
	Cfg     SyntheticConfig
	symbols []byte     // symbol index → byte
	index   [256]int16 // byte → symbol index, −1 if unused
	nctx    int
	succ    []uint8   // nctx×Branch successor symbol indices
	prob    []float64 // nctx×Branch probabilities
}

// NewSynthetic builds the process deterministically from cfg.Seed.
func NewSynthetic(cfg SyntheticConfig) (*Synthetic, error) {
	if cfg.Alphabet < 2 || cfg.Alphabet > 256 || cfg.Order < 1 || cfg.Branch < 1 || cfg.Branch > cfg.Alphabet {
		return nil, fmt.Errorf("train: bad synthetic config %+v", cfg)
	}
	nctx := 1
	for i := 0; i < cfg.Order; i++ {
		nctx *= cfg.Alphabet
		if nctx > 1<<22 {
			return nil, fmt.Errorf("train: synthetic process has too many contexts (%d^%d)", cfg.Alphabet, cfg.Order)
		}
	}
	if cfg.BurnIn == 0 {
		cfg.BurnIn = 64
	}
	s := &Synthetic{Cfg: cfg, nctx: nctx, succ: make([]uint8, nctx*cfg.Branch), prob: make([]float64, nctx*cfg.Branch)}
	r := newRNG(mix(cfg.Seed, 0x73796e))
	perm := make([]int, 256)
	for i := range perm {
		perm[i] = i
	}
	if cfg.Alphabet < 256 {
		for i := 0; i < cfg.Alphabet; i++ {
			j := i + r.intn(256-i)
			perm[i], perm[j] = perm[j], perm[i]
		}
	}
	for i := range s.index {
		s.index[i] = -1
	}
	s.symbols = make([]byte, cfg.Alphabet)
	for i := range s.symbols {
		s.symbols[i] = byte(perm[i])
		s.index[perm[i]] = int16(i)
	}
	sym := make([]int, cfg.Alphabet)
	for c := 0; c < nctx; c++ {
		for i := range sym {
			sym[i] = i
		}
		var total float64
		for j := 0; j < cfg.Branch; j++ {
			k := j + r.intn(cfg.Alphabet-j)
			sym[j], sym[k] = sym[k], sym[j]
			s.succ[c*cfg.Branch+j] = uint8(sym[j])
			w := 1.0
			if !cfg.Uniform {
				w = 0.1 + r.float64()
			}
			s.prob[c*cfg.Branch+j] = w
			total += w
		}
		for j := 0; j < cfg.Branch; j++ {
			s.prob[c*cfg.Branch+j] /= total
		}
	}
	return s, nil
}

// Symbols returns the bytes the process emits.
func (s *Synthetic) Symbols() []byte { return s.symbols }

func (s *Synthetic) nextCtx(c, sym int) int { return (c*s.Cfg.Alphabet + sym) % s.nctx }

// contextEntropy is H(next | context c) in nats.
func (s *Synthetic) contextEntropy(c int) float64 {
	var h float64
	for _, p := range s.prob[c*s.Cfg.Branch : (c+1)*s.Cfg.Branch] {
		if p > 0 {
			h -= p * math.Log(p)
		}
	}
	return h
}

// EntropyRate returns the process's entropy rate in nats/byte: Σ_c π(c)·H(c),
// with π the stationary distribution over contexts reached from the uniform
// start, found by power iteration on the lazy chain ½(I+P) (same stationary
// distributions, aperiodic, so the iteration converges). This is the best
// achievable expected loss for a model that sees at least Order bytes.
func (s *Synthetic) EntropyRate() float64 {
	pi := make([]float64, s.nctx)
	next := make([]float64, s.nctx)
	for i := range pi {
		pi[i] = 1 / float64(s.nctx)
	}
	B := s.Cfg.Branch
	for it := 0; it < 100000; it++ {
		for i := range next {
			next[i] = 0.5 * pi[i]
		}
		for c, pc := range pi {
			if pc == 0 {
				continue
			}
			for j := 0; j < B; j++ {
				next[s.nextCtx(c, int(s.succ[c*B+j]))] += 0.5 * pc * s.prob[c*B+j]
			}
		}
		var diff float64
		for i := range pi {
			diff += math.Abs(next[i] - pi[i])
		}
		pi, next = next, pi
		if diff < 1e-13 {
			break
		}
	}
	var h float64
	for c, pc := range pi {
		h += pc * s.contextEntropy(c)
	}
	return h
}

func (s *Synthetic) step(r *rng, c int) int {
	B := s.Cfg.Branch
	u := r.float64()
	j := 0
	for ; j < B-1; j++ {
		u -= s.prob[c*B+j]
		if u < 0 {
			break
		}
	}
	return int(s.succ[c*B+j])
}

// Fill writes batch `index` for worker `rank`. Each row is an independent
// run of the process from a uniformly random context, burnt in for
// Cfg.BurnIn steps; rows depend only on (Cfg.Seed, rank, index, row).
func (s *Synthetic) Fill(b *Batch, rank, index int) {
	K := b.Context
	for row := 0; row < b.Size; row++ {
		r := newRNG(mix(s.Cfg.Seed, uint64(int64(rank)), uint64(int64(index)), uint64(row)))
		c := r.intn(s.nctx)
		for i := 0; i < s.Cfg.BurnIn; i++ {
			c = s.nextCtx(c, s.step(&r, c))
		}
		out := b.Ctx[row*K : (row+1)*K]
		next := b.Next[row*K : (row+1)*K]
		for i := 0; i <= K; i++ {
			sym := s.step(&r, c)
			c = s.nextCtx(c, sym)
			if i < K {
				out[i] = s.symbols[sym]
			}
			if i > 0 {
				next[i-1] = s.symbols[sym]
			}
		}
		b.Tgt[row] = next[K-1]
	}
}

// LogProb returns log p(next | last Order bytes of ctx) under the process
// (−Inf if next cannot follow; NaN if ctx contains foreign bytes or is short).
func (s *Synthetic) LogProb(ctx []byte, next byte) float64 {
	if len(ctx) < s.Cfg.Order {
		return math.NaN()
	}
	c := 0
	for _, by := range ctx[len(ctx)-s.Cfg.Order:] {
		i := s.index[by]
		if i < 0 {
			return math.NaN()
		}
		c = c*s.Cfg.Alphabet + int(i)
	}
	ni := s.index[next]
	B := s.Cfg.Branch
	for j := 0; j < B; j++ {
		if int16(s.succ[c*B+j]) == ni {
			return math.Log(s.prob[c*B+j])
		}
	}
	return math.Inf(-1)
}

// TextDataset is a byte corpus split by file into training and validation
// text.
type TextDataset struct {
	Train, Val           []byte
	TrainFiles, ValFiles []string // paths relative to the root, in read order
}

// GoRoot returns the Go installation root: runtime.GOROOT() or, failing
// that, the output of `go env GOROOT`.
func GoRoot() (string, error) {
	//lint:ignore SA1019 fallback below covers the deprecated case.
	if r := runtime.GOROOT(); r != "" {
		return r, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("train: go env GOROOT: %w", err)
	}
	r := strings.TrimSpace(string(out))
	if r == "" {
		return "", errors.New("train: GOROOT is empty")
	}
	return r, nil
}

// LoadGoRoot reads the .go files under $GOROOT/src; see LoadGoFiles.
func LoadGoRoot(maxBytes, valPercent int) (*TextDataset, error) {
	root, err := GoRoot()
	if err != nil {
		return nil, err
	}
	return LoadGoFiles(filepath.Join(root, "src"), maxBytes, valPercent)
}

// InValidation reports whether relPath belongs to the validation split:
// FNV-1a(relPath) mod 100 < valPercent. It depends only on the path.
func InValidation(relPath string, valPercent int) bool {
	h := fnv.New64a()
	h.Write([]byte(filepath.ToSlash(relPath)))
	return int(h.Sum64()%100) < valPercent
}

// LoadGoFiles reads .go files under root in lexical walk order, stopping
// once maxBytes (if > 0) have been read, and assigns each whole file to the
// validation split if InValidation(relPath, valPercent), else to training.
// Files are separated by a 0 byte.
func LoadGoFiles(root string, maxBytes, valPercent int) (*TextDataset, error) {
	d := &TextDataset{}
	total := 0
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if maxBytes > 0 && total >= maxBytes {
			return fs.SkipAll
		}
		if e.IsDir() {
			if name := e.Name(); path != root && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		total += len(b)
		if InValidation(rel, valPercent) {
			d.Val = append(append(d.Val, b...), 0)
			d.ValFiles = append(d.ValFiles, rel)
		} else {
			d.Train = append(append(d.Train, b...), 0)
			d.TrainFiles = append(d.TrainFiles, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(d.Train) == 0 || len(d.Val) == 0 {
		return nil, fmt.Errorf("train: %s gave %d training and %d validation bytes", root, len(d.Train), len(d.Val))
	}
	return d, nil
}

// TextSource samples windows from a byte slice at offsets drawn from
// (Seed, rank, index, row).
type TextSource struct {
	Data []byte
	Seed uint64
}

// TrainSource returns a Source over the training split.
func (d *TextDataset) TrainSource(seed uint64) TextSource {
	return TextSource{Data: d.Train, Seed: seed}
}

// ValSource returns a Source over the validation split.
func (d *TextDataset) ValSource(seed uint64) TextSource { return TextSource{Data: d.Val, Seed: seed} }

// Fill implements Source.
func (s TextSource) Fill(b *Batch, rank, index int) {
	K := b.Context
	n := len(s.Data) - K
	if n <= 0 {
		panic("train: text shorter than the context")
	}
	for row := 0; row < b.Size; row++ {
		r := newRNG(mix(s.Seed, uint64(int64(rank)), uint64(int64(index)), uint64(row)))
		off := r.intn(n)
		copy(b.Ctx[row*K:(row+1)*K], s.Data[off:off+K])
		copy(b.Next[row*K:(row+1)*K], s.Data[off+1:off+K+1])
		b.Tgt[row] = s.Data[off+K]
	}
}
