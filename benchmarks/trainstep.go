package benchmarks

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/megha-ml/megha/train"
)

// Train-step benchmark parameters: one result per built-in model,
// train-step-<model>.json.
var trainStepModels = []struct {
	name  string
	batch int // rows per step
}{
	// Rows per step chosen so that each model trains on 1–2k predicted
	// bytes per step: the MLP predicts one byte per row, the transformers
	// one per position; 16 rows is also the job spec's default batch size.
	{"mlp-tiny", 1024},
	{"transformer-tiny", 16},
	{"transformer-small", 16},
}

const (
	trainStepGoal    = 0.5
	trainStepMatN    = 1024 // baseline: an N×N by N×N MatMul
	trainStepBatches = 8    // distinct batches cycled through
)

// TrainStepBenchmarks returns the train-step benchmarks by name
// (train-step-<model>), for meghabench to register.
func TrainStepBenchmarks() map[string]func(context.Context, Config) (*Result, error) {
	out := map[string]func(context.Context, Config) (*Result, error){}
	for _, m := range trainStepModels {
		out["train-step-"+m.name] = func(ctx context.Context, cfg Config) (*Result, error) {
			return RunTrainStep(ctx, cfg, m.name, m.batch)
		}
	}
	return out
}

// RunTrainStep measures the built-in trainer's step throughput (forward,
// backward, clipping and AdamW: Trainer.Step) for the named model on a pool
// of one worker per CPU, in tokens (predicted bytes) per second per core.
// Its baseline is the same pool's rate on a large square MatMul, measured in
// interleaved runs; the ratio is the model's achieved training FLOP rate
// (FLOPs per token × tokens/s) over that matmul rate, the median of the
// per-pair ratios.
func RunTrainStep(ctx context.Context, cfg Config, model string, batch int) (*Result, error) {
	loadAvg := loadAverage()
	cores := runtime.NumCPU()
	pool := train.NewPool(cores)
	defer pool.Close()
	m, err := train.NewModel(model, batch, 1, pool)
	if err != nil {
		return nil, err
	}
	flopsPerToken, formula, err := trainFLOPsPerToken(m)
	if err != nil {
		return nil, err
	}
	src, err := train.NewSynthetic(train.SyntheticConfig{Seed: 1, Order: 2, Branch: 4, Alphabet: 256})
	if err != nil {
		return nil, err
	}
	batches := train.FillBatches(src, trainStepBatches, batch, m.ContextLen(), 0, 0)
	tr := train.NewTrainer(m, train.DefaultAdamW(), train.Schedule{Warmup: 10, Total: 1 << 30, Max: 1e-3, Min: 1e-4})
	tokensPerStep := m.Tokens(batches[0])

	// Many short pairs rather than a few long ones: on a shared machine the
	// matmul rate drifts by ±30% over seconds, and each pair's ratio
	// compares neighbours.
	runs, trainDur, matDur, matN, minSteps := 11, 1500*time.Millisecond, 500*time.Millisecond, trainStepMatN, 1
	if cfg.Quick {
		runs, trainDur, matDur, matN, minSteps = 1, 200*time.Millisecond, 100*time.Millisecond, 256, 1
	}
	step := 0
	trainRun := func(d time.Duration, min int) float64 {
		start := time.Now()
		n := 0
		for ; n < min || time.Since(start) < d; n++ {
			tr.Step(batches[step%len(batches)])
			step++
		}
		return float64(n*tokensPerStep) / time.Since(start).Seconds()
	}
	r := newMatRun(matN)
	cfg.logf("train-step-%s: %d params, %d tokens/step, %.3g FLOP/token, pool of %d", model, len(m.Weights()),
		tokensPerStep, flopsPerToken, cores)
	trainRun(trainDur/3, 1) // warm-up
	r.rate(pool, matDur/3)

	var tokSamples, matSamples, ratios []float64
	for i := 0; i < runs; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		gflops := r.rate(pool, matDur) / 1e9
		tps := trainRun(trainDur, minSteps)
		ratio := tps * flopsPerToken / (gflops * 1e9)
		cfg.logf("train-step-%s: run %d: matmul %.2f GFLOP/s, %.0f tokens/s (%.0f/core), ratio %.3f",
			model, i+1, gflops, tps, tps/float64(cores), ratio)
		tokSamples = append(tokSamples, round(tps/float64(cores), 1))
		matSamples = append(matSamples, round(gflops, 3))
		ratios = append(ratios, ratio)
	}
	info, _ := train.Describe(model)
	notes := fmt.Sprintf("%s; %d params; Trainer.Step (forward, backward, clip, AdamW) on %d rows × %d bytes = %d "+
		"predicted bytes per step, %d pre-filled synthetic batches cycled, on a train.Pool of %d workers (one per CPU); "+
		"figure = tokens/s ÷ cores; baseline = the same pool's MatMul of two %d×%d matrices, GFLOP/s (2N³ per product); "+
		"ratio = model FLOP/s ÷ matmul FLOP/s with model FLOP/s = tokens/s × %s = %.3g FLOP/token "+
		"(2 per multiply-add of those products, forward and backward; the rest of the step (LayerNorm, GELU or tanh, "+
		"softmax, embeddings, AdamW) is not counted, so its time lowers the ratio); "+
		"goal %.1f: a step runs at no less than half the machine's large-matmul rate; "+
		"%d interleaved matmul/train pairs (%v / ≥%v and ≥%d steps) after warm-up, ratio = median of pair ratios; "+
		"pair ratios %s; 1-minute load average at the start %s (a shared machine; it includes any benchmark just before)",
		info.Summary, len(m.Weights()), batch, m.ContextLen(), tokensPerStep, trainStepBatches, cores, matN, matN,
		formula, flopsPerToken, trainStepGoal, runs, matDur, trainDur, minSteps, fmtList(ratios), loadAvg)
	return &Result{
		Name: "train-step-" + model, Figure: round(Median(tokSamples), 1), Unit: "tokens/s/core",
		Baseline: ptr(round(Median(matSamples), 3)), BaselineName: fmt.Sprintf("MatMul %d³ on the same pool, GFLOP/s", matN),
		Ratio: round(Median(ratios), 3), Goal: trainStepGoal, Better: Higher, Runs: runs,
		Machine: ThisMachine(), Date: Today(), Notes: notes,
		Samples: tokSamples, BaselineSamples: matSamples,
	}, nil
}

// trainFLOPsPerToken is the model's training FLOPs per predicted byte and
// the formula, in words, for the notes.
func trainFLOPsPerToken(m train.Model) (float64, string, error) {
	switch m := m.(type) {
	case *train.Transformer:
		c := m.Cfg
		return c.TrainFLOPsPerToken(), fmt.Sprintf("(6·%d matrix params + 6·layers·dim·(context+1) causal attention)",
			c.MatrixParams()), nil
	case *train.MLP:
		c := m.Cfg
		n := c.Context*c.Embed*c.Hidden + c.Hidden*c.Vocab
		return 6 * float64(n), fmt.Sprintf("(6·%d matrix params; one predicted byte per row)", n), nil
	}
	return 0, "", fmt.Errorf("train-step: no FLOP count for %T", m)
}

// matRun is the baseline: repeated N×N by N×N products on a pool.
type matRun struct {
	n       int
	a, b, c []float32
}

func newMatRun(n int) *matRun {
	r := &matRun{n: n, a: make([]float32, n*n), b: make([]float32, n*n), c: make([]float32, n*n)}
	for i := range r.a {
		r.a[i] = float32(i%7) - 3
		r.b[i] = float32(i%5) - 2
	}
	return r
}

// rate runs products for at least d (and at least two) and returns FLOP/s.
func (r *matRun) rate(p *train.Pool, d time.Duration) float64 {
	start := time.Now()
	n := 0
	for ; n < 2 || time.Since(start) < d; n++ {
		p.MatMul(r.c, r.a, r.b, r.n, r.n, r.n, false)
	}
	return 2 * float64(r.n) * float64(r.n) * float64(r.n) * float64(n) / time.Since(start).Seconds()
}

// loadAverage is the 1-minute load average from /proc/loadavg, or "unknown":
// the benchmark shares the machine with whatever else runs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func fmtList(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}
