package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/coordinator"
)

// Config is what every benchmark takes.
type Config struct {
	// Quick makes fewer, shorter runs (a smoke test, not a measurement).
	Quick bool
	// Logf receives progress lines.
	Logf func(format string, args ...any)
	// CPUProfileDir, if set, gets a CPU profile of each measured run.
	CPUProfileDir string
	// Bin is the megha binary for process benchmarks; empty builds one.
	Bin string
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Tokens of the in-process cluster.
const (
	benchAdmin  = "bench-admin-token-0123456789"
	benchTenant = "bench-tenant-token-0123456789"
)

// Submit benchmark parameters.
const (
	submitConcurrency = 64
	rawCommandBytes   = 256
)

// submitSpec is the minimal valid job spec the benchmark submits.
func submitSpec() *meghav1.JobSpec {
	return &meghav1.JobSpec{Name: "bench", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Builtin: "transformer-tiny"},
		Data:  &meghav1.DataSpec{Dataset: "synthetic"},
		Stop:  &meghav1.StopCondition{Rounds: 10}}
}

// noopCommand returns an encoded Noop command of exactly n bytes.
func noopCommand(n int) ([]byte, error) {
	for p := n; p >= 0; p-- {
		b, err := coordinator.EncodeCommand(&meghav1.Command{Cmd: &meghav1.Command_Noop{
			Noop: &meghav1.NoopCommand{Payload: make([]byte, p)}}})
		if err != nil {
			return nil, err
		}
		if len(b) == n {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no Noop command encodes to %d bytes", n)
}

// inProcCluster is three coordinator.Servers in this process on loopback
// TCP, each with raft-wal in its own dir.
type inProcCluster struct {
	dir     string
	servers []*coordinator.Server
}

func startInProcCluster(ctx context.Context, dir string, logger *slog.Logger) (*inProcCluster, error) {
	tokens, err := coordinator.ParseTokens([]byte(benchAdmin + " admin\n" + benchTenant + " tenant bench\n"))
	if err != nil {
		return nil, err
	}
	c := &inProcCluster{dir: dir}
	start := func(id string, bootstrap bool) (*coordinator.Server, error) {
		s, err := coordinator.NewServer(coordinator.ServerConfig{
			Node: coordinator.NodeConfig{ID: id, DataDir: filepath.Join(dir, id), RaftAddr: "127.0.0.1:0",
				Bootstrap: bootstrap, Raft: coordinator.DefaultRaftConfig()},
			GRPCAddr: "127.0.0.1:0", Tokens: tokens, Logger: logger, // RateLimit 0: disabled
		})
		if err == nil {
			c.servers = append(c.servers, s)
		}
		return s, err
	}
	first, err := start("n1", true)
	if err != nil {
		return nil, err
	}
	if err := waitCond(ctx, "n1 to lead", first.Node().IsLeader); err != nil {
		c.Close()
		return nil, err
	}
	for _, id := range []string{"n2", "n3"} {
		s, err := start(id, false)
		if err != nil {
			c.Close()
			return nil, err
		}
		if err := s.Join(ctx, []string{first.Addr()}, benchAdmin, ""); err != nil {
			c.Close()
			return nil, err
		}
	}
	err = waitCond(ctx, "3 caught-up voters", func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		f := l.Node().Raft().GetConfiguration()
		if f.Error() != nil || len(f.Configuration().Servers) != 3 {
			return false
		}
		commit := l.Node().Raft().CommitIndex()
		for _, s := range c.servers {
			if s.Node().Raft().AppliedIndex() < commit {
				return false
			}
		}
		return true
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// leader returns the server that leads and has caught up, or nil.
func (c *inProcCluster) leader() *coordinator.Server {
	for _, s := range c.servers {
		if s.Node().IsLeader() {
			return s
		}
	}
	return nil
}

func (c *inProcCluster) addrs() []string {
	var out []string
	for _, s := range c.servers {
		out = append(out, s.Addr())
	}
	return out
}

func (c *inProcCluster) Close() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
}

// waitCond polls cond every 10ms until it holds or ctx ends.
func waitCond(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// runStats is one timed run of a closed-loop load.
type runStats struct {
	ops, errs int64
	elapsed   time.Duration
	firstErr  error
}

func (r runStats) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// closedLoop runs op from n goroutines back to back for d and counts the
// operations that succeeded. Elapsed runs until the last one returns.
func closedLoop(n int, d time.Duration, op func(worker int, seq int64) error) runStats {
	var (
		ops, errs atomic.Int64
		stop      atomic.Bool
		errOnce   sync.Once
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); !stop.Load(); i++ {
				if err := op(w, i); err != nil {
					errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	return runStats{ops: ops.Load(), errs: errs.Load(), elapsed: time.Since(start), firstErr: firstErr}
}

// RunSubmit measures job submission through the gRPC API against raw
// raft.Apply on the same in-process 3-node cluster, interleaved.
func RunSubmit(ctx context.Context, cfg Config) (*Result, error) {
	pairs, runDur, warm := 5, 3*time.Second, 2*time.Second
	if cfg.Quick {
		pairs, runDur, warm = 1, 500*time.Millisecond, 200*time.Millisecond
	}
	dir, err := os.MkdirTemp("", "meghabench-submit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The production logging setup (text, info level; the submit handler
	// logs every job), with the output thrown away.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	c, err := startInProcCluster(sctx, dir, logger)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("coordinator-submit: start cluster: %w", err)
	}
	defer c.Close()
	cfg.logf("coordinator-submit: 3-node in-process cluster up in %s", dir)

	cmd, err := noopCommand(rawCommandBytes)
	if err != nil {
		return nil, err
	}
	// raw applies on the leader; after a leadership change it waits for
	// the new leader rather than spin on errors.
	var rafts atomic.Pointer[raft.Raft]
	raw := func(d time.Duration) (runStats, error) {
		leader := c.leader()
		if leader == nil {
			return runStats{}, errors.New("no leader")
		}
		rafts.Store(leader.Node().Raft())
		return closedLoop(submitConcurrency, d, func(int, int64) error {
			r := rafts.Load()
			err := r.Apply(cmd, 10*time.Second).Error()
			if err != nil && r.State() != raft.Leader {
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
					if l := c.leader(); l != nil {
						rafts.CompareAndSwap(r, l.Node().Raft())
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			return err
		}), nil
	}

	clients := make([]*client.Client, submitConcurrency)
	for i := range clients {
		cl, err := client.New(client.Config{Addrs: c.addrs(), Token: benchTenant})
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		clients[i] = cl
	}
	spec := submitSpec()
	var runNo atomic.Int64
	submit := func(d time.Duration) (runStats, error) {
		run := runNo.Add(1)
		return closedLoop(submitConcurrency, d, func(w int, seq int64) error {
			octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
			defer ocancel()
			_, err := clients[w].Submit(octx, spec, fmt.Sprintf("r%d-w%d-%d", run, w, seq))
			return err
		}), nil
	}

	profile := func(kind string, i int, f func() (runStats, error)) (runStats, error) {
		if cfg.CPUProfileDir == "" {
			return f()
		}
		if err := os.MkdirAll(cfg.CPUProfileDir, 0o755); err != nil {
			return runStats{}, err
		}
		pf, err := os.Create(filepath.Join(cfg.CPUProfileDir, fmt.Sprintf("submit-%s-%d.pprof", kind, i)))
		if err != nil {
			return runStats{}, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return runStats{}, err
		}
		defer pprof.StopCPUProfile()
		return f()
	}

	cfg.logf("coordinator-submit: warming up (%v raw, %v submit)", warm, warm)
	if _, err := raw(warm); err != nil {
		return nil, err
	}
	if _, err := submit(warm); err != nil {
		return nil, err
	}
	runtime.GC()

	var rawRates, subRates, ratios []float64
	var errNotes []string
	for i := 1; i <= pairs; i++ {
		rs, err := profile("raw", i, func() (runStats, error) { return raw(runDur) })
		if err != nil {
			return nil, err
		}
		ss, err := profile("api", i, func() (runStats, error) { return submit(runDur) })
		if err != nil {
			return nil, err
		}
		rawRates = append(rawRates, rs.rate())
		subRates = append(subRates, ss.rate())
		ratios = append(ratios, ss.rate()/rs.rate())
		cfg.logf("coordinator-submit: pair %d/%d: raw %.0f commands/s (%d errors), submit %.0f jobs/s (%d errors), ratio %.2f",
			i, pairs, rs.rate(), rs.errs, ss.rate(), ss.errs, ss.rate()/rs.rate())
		for _, s := range []struct {
			kind string
			st   runStats
		}{{"raw", rs}, {"submit", ss}} {
			if s.st.errs > 0 {
				errNotes = append(errNotes, fmt.Sprintf("run %d %s: %d errors, first: %v", i, s.kind, s.st.errs, s.st.firstErr))
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	base, fig := Median(rawRates), Median(subRates)
	notes := fmt.Sprintf("%d concurrent clients (separate client.Client and connection each) vs %d goroutines "+
		"calling raft.Apply on the leader; one in-process 3-node cluster, loopback TCP, raft-wal on disk, "+
		"default Raft timing, rate limit off, info logging discarded; %d interleaved pairs of %v runs after %v warm-up; "+
		"ratio is the median of the per-pair ratios (each submit run against the raw run just before it); pair ratios %s",
		submitConcurrency, submitConcurrency, pairs, runDur, warm, fmtRatios(ratios))
	if cfg.Quick {
		notes = "QUICK RUN, not a measurement; " + notes
	}
	for _, e := range errNotes {
		notes += "; " + e
	}
	rounded := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = round(x, 0)
		}
		return out
	}
	return &Result{
		Name: "coordinator-submit", Figure: round(fig, 0), Unit: "jobs/s",
		Baseline: ptr(round(base, 0)), BaselineName: fmt.Sprintf("raw raft.Apply, 3 nodes, %d B", rawCommandBytes),
		Ratio: round(Median(ratios), 3), Goal: 0.5, Better: Higher, Runs: pairs,
		Machine: ThisMachine(), Date: Today(), Notes: notes,
		Samples: rounded(subRates), BaselineSamples: rounded(rawRates),
	}, nil
}

func fmtRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
