//go:build unix

package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/megha-ml/megha/internal/testcluster"
)

// All-reduce benchmark parameters.
const (
	arWorld    = 4
	arGoal     = 0.8
	arRawChunk = 1 << 20 // bytes per write/read of the raw ring
)

// arParams is one configuration of the all-reduce benchmark.
type arParams struct {
	elems int // float32 values per member
	pairs int // trials, each one gRPC run and one raw run
	iters int // all-reduces per run
}

func allreduceParams(quick bool) arParams {
	if quick {
		return arParams{elems: 1 << 20, pairs: 1, iters: 1}
	}
	return arParams{elems: 16 << 20, pairs: 7, iters: 3} // 64 MiB
}

// arChildArgs are the helper process's arguments (a test binary needs one
// to get to its helper test).
var arChildArgs []string

// RunAllReduce measures the collective's ring all-reduce on N = 4 member
// processes on loopback against a ring of raw TCP connections between the
// same processes, run by the same schedule, interleaved. The figure is the
// bus bandwidth as nccl-tests defines it: algbw = payload bytes / time,
// busbw = algbw · 2(N−1)/N (the bytes each member sends and receives,
// per second).
func RunAllReduce(ctx context.Context, cfg Config) (*Result, error) {
	p := allreduceParams(cfg.Quick)
	if cfg.CPUProfileDir != "" {
		if err := os.MkdirAll(cfg.CPUProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	ms, err := startARMembers(ctx, arWorld, p.elems, cfg.CPUProfileDir)
	if err != nil {
		return nil, fmt.Errorf("collective-allreduce: %w", err)
	}
	defer ms.close()
	payload := float64(4 * p.elems)
	busbw := func(d time.Duration) float64 {
		return payload / d.Seconds() * 2 * (arWorld - 1) / arWorld / 1e9
	}
	cfg.logf("collective-allreduce: %d member processes (pids %v), %d MiB of float32 each", arWorld, ms.pids(), 4*p.elems>>20)
	load0 := loadAvg()

	round := uint64(1)
	run := func(kind string, iters int) (arRun, error) {
		r, err := ms.run(ctx, kind, iters, round)
		round += uint64(iters)
		return r, err
	}
	// Warm-up: connections, buffers, page faults.
	for _, kind := range []string{"none", "raw"} {
		if _, err := run(kind, 1); err != nil {
			return nil, fmt.Errorf("collective-allreduce: warm-up %s: %w", kind, err)
		}
	}

	var grpcBW, rawBW, ratios, grpcCPU, rawCPU []float64
	for i := range p.pairs {
		// Alternate which goes first, so drift favours neither.
		order := []string{"raw", "none"}
		if i%2 == 1 {
			order = []string{"none", "raw"}
		}
		got := map[string]arRun{}
		for _, kind := range order {
			r, err := run(kind, p.iters)
			if err != nil {
				return nil, fmt.Errorf("collective-allreduce: pair %d %s: %w", i+1, kind, err)
			}
			got[kind] = r
		}
		g, w := busbw(got["none"].per(p.iters)), busbw(got["raw"].per(p.iters))
		grpcBW, rawBW, ratios = append(grpcBW, g), append(rawBW, w), append(ratios, g/w)
		grpcCPU, rawCPU = append(grpcCPU, got["none"].cpuPerGB(payload*float64(p.iters))),
			append(rawCPU, got["raw"].cpuPerGB(payload*float64(p.iters)))
		cfg.logf("collective-allreduce: pair %d/%d: gRPC %.3f GB/s, raw %.3f GB/s busbw, ratio %.3f", i+1, p.pairs, g, w, g/w)
	}

	// Compressed runs: busbw of the logical (float32) payload.
	var comp []string
	for _, kind := range []string{"fp16", "int8"} {
		r, err := run(kind, p.iters)
		if err != nil {
			return nil, fmt.Errorf("collective-allreduce: %s: %w", kind, err)
		}
		bw := busbw(r.per(p.iters))
		comp = append(comp, fmt.Sprintf("%s %.3f GB/s", kind, bw))
		cfg.logf("collective-allreduce: %s: %.3f GB/s busbw (logical float32 bytes)", kind, bw)
	}

	fig, base := Median(grpcBW), Median(rawBW)
	notes := fmt.Sprintf("busbw (nccl-tests: payload/time × 2(N−1)/N) of collective.Node.AllReduce, compression none, "+
		"default ChunkBytes, weights 1, over N=%d member processes on loopback, vs a raw TCP ring between the same processes "+
		"(one net.Conn to each neighbour, the same reduce-scatter + all-gather schedule, %d KiB chunks pipelined step to step, "+
		"float32 add in the reduce-scatter, no weighting, checksums or framing); payload %d MiB of float32 per member; "+
		"%d interleaved pairs of %d all-reduces each after one warm-up of each, order alternating; time = slowest member; "+
		"ratio = median of per-pair ratios; pair ratios %s; member CPU per payload GB: gRPC %.2f s, raw %.2f s "+
		"(4 processes share the machine's cores, so the ratio is about the ratio of CPU per byte; the gRPC path also "+
		"checks every value is finite, scales by the weight, checksums every chunk (CRC-32C) and stages the result in a "+
		"scratch buffer so that a failed round leaves the caller's buffer unchanged); load average %s at the start, %s at the end "+
		"(other jobs on the machine); compressed (busbw of the float32 payload): %s",
		arWorld, arRawChunk>>10, 4*p.elems>>20, p.pairs, p.iters, fmtRatios(ratios),
		Median(grpcCPU), Median(rawCPU), load0, loadAvg(), strings.Join(comp, ", "))
	if cfg.Quick {
		notes = "QUICK RUN, not a measurement; " + notes
	}
	rounded := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = round3(x)
		}
		return out
	}
	return &Result{
		Name: "collective-allreduce", Figure: round3(fig), Unit: "GB/s busbw",
		Baseline: ptr(round3(base)), BaselineName: fmt.Sprintf("raw TCP ring, N=%d, same schedule", arWorld),
		Ratio: round3(Median(ratios)), Goal: arGoal, Better: Higher, Runs: p.pairs,
		Machine: ThisMachine(), Date: Today(), Notes: notes,
		Samples: rounded(grpcBW), BaselineSamples: rounded(rawBW),
	}, nil
}

func round3(v float64) float64 { return round(v, 3) }

// loadAvg is the 1-minute load average from /proc ("?" where there is
// none).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// arRun is one timed run on every member.
type arRun struct {
	slowest time.Duration // the slowest member's time for all iterations
	cpu     time.Duration // CPU of all members during the run (0 if unknown)
}

func (r arRun) per(iters int) time.Duration { return r.slowest / time.Duration(iters) }

func (r arRun) cpuPerGB(bytes float64) float64 { return r.cpu.Seconds() / (bytes / 1e9) }

// arMembers are the member processes.
type arMembers struct {
	procs []*arProc
}

type arProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line; closed at EOF
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// startARMembers starts n member processes (this binary in helper mode),
// learns their addresses and connects the rings.
func startARMembers(ctx context.Context, n, elems int, profileDir string) (*arMembers, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ms := &arMembers{}
	for range n {
		cmd := exec.Command(exe, arChildArgs...)
		cmd.Env = append(os.Environ(), ChildEnv+"="+arChildMode)
		if profileDir != "" {
			cmd.Env = append(cmd.Env, arProfileEnv+"="+profileDir)
		}
		p := &arProc{cmd: cmd, lines: make(chan string, 16), stderr: &lockedBuffer{}}
		cmd.Stderr = p.stderr
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			ms.close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			ms.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			ms.close()
			return nil, err
		}
		ms.procs = append(ms.procs, p)
		go func() {
			defer close(p.lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
	}
	grpcAddrs, rawAddrs := make([]string, n), make([]string, n)
	for i, p := range ms.procs {
		f, err := p.expect(ctx, "addrs", 30*time.Second)
		if err != nil || len(f) != 3 {
			ms.close()
			return nil, fmt.Errorf("member %d: addresses: %v", i, err)
		}
		grpcAddrs[i], rawAddrs[i] = f[1], f[2]
	}
	for i, p := range ms.procs {
		if err := p.send("ring %d %d %d %d %s %s", i, n, elems, arRawChunk,
			strings.Join(grpcAddrs, ","), strings.Join(rawAddrs, ",")); err != nil {
			ms.close()
			return nil, err
		}
	}
	for i, p := range ms.procs {
		if _, err := p.expect(ctx, "ok", 30*time.Second); err != nil {
			ms.close()
			return nil, fmt.Errorf("member %d: ring: %w", i, err)
		}
	}
	return ms, nil
}

func (ms *arMembers) pids() []int {
	var out []int
	for _, p := range ms.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

// close ends the members: stdin closed, then killed if they linger.
func (ms *arMembers) close() {
	for _, p := range ms.procs {
		p.stdin.Close()
	}
	for _, p := range ms.procs {
		done := make(chan struct{})
		go func() {
			_ = p.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
}

func (ms *arMembers) cpu() time.Duration {
	var sum time.Duration
	for _, p := range ms.procs {
		c, _ := testcluster.CPUTime(p.cmd.Process.Pid)
		sum += c
	}
	return sum
}

// run runs iters all-reduces of kind on every member after a barrier.
func (ms *arMembers) run(ctx context.Context, kind string, iters int, round uint64) (arRun, error) {
	for _, p := range ms.procs {
		if err := p.send("run %s %d %d", kind, iters, round); err != nil {
			return arRun{}, err
		}
	}
	for i, p := range ms.procs {
		if _, err := p.expect(ctx, "ready", time.Minute); err != nil {
			return arRun{}, fmt.Errorf("member %d: %w", i, err)
		}
	}
	cpu0 := ms.cpu()
	for _, p := range ms.procs {
		if err := p.send("go"); err != nil {
			return arRun{}, err
		}
	}
	var r arRun
	var errs []error
	for i, p := range ms.procs {
		f, err := p.expect(ctx, "done", 5*time.Minute)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %d: %w", i, err))
			continue
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return arRun{}, err
		}
		r.slowest = max(r.slowest, time.Duration(ns))
	}
	if err := errors.Join(errs...); err != nil {
		return arRun{}, err
	}
	r.cpu = ms.cpu() - cpu0
	return r, nil
}

func (p *arProc) send(format string, args ...any) error {
	_, err := fmt.Fprintf(p.stdin, format+"\n", args...)
	return err
}

// expect waits for the member's next line and checks that it starts with
// word; an "error" line or an exit fails.
func (p *arProc) expect(ctx context.Context, word string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			return nil, fmt.Errorf("exited (stderr: %s)", p.stderr)
		}
		f := strings.Fields(line)
		if len(f) < 2 && word == "done" || len(f) == 0 || f[0] != word {
			return nil, fmt.Errorf("want %s, got %q", word, line)
		}
		return f, nil
	case <-t.C:
		return nil, fmt.Errorf("no %s after %v", word, timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
