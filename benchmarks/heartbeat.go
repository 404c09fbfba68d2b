//go:build unix

package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/coordinator"
	"github.com/megha-ml/megha/internal/testcluster"
)

// Heartbeat capacity benchmark parameters.
const (
	heartbeatGoal    = 10000 // workers one leader tracks
	hbVictims        = 5     // workers silenced per step
	hbClients        = 16    // shared gRPC connections of the simulated workers
	hbSetupParallel  = 64    // registrations and stream opens in flight
	hbCheckEvery     = 100 * time.Millisecond
	hbSlack          = 250 * time.Millisecond // proposing WorkerLost through Raft
	hbHistoryEntries = 65                     // send times kept per worker: the detector's 64 intervals
)

// hbParams is one ramp: the worker counts to step through and the worker
// tracking the coordinator runs with.
type hbParams struct {
	steps    []int
	interval time.Duration // --heartbeat-interval
	floor    time.Duration // --worker-lost-floor (Detector.AcceptablePause)
	phi      float64       // --worker-phi
	warm     int           // intervals of warm-up after a step's workers are up
	window   time.Duration // measurement window per step (at least the bound plus a little)
}

func heartbeatParams(quick bool) hbParams {
	if quick {
		return hbParams{steps: []int{100, 300}, interval: 250 * time.Millisecond, floor: time.Second, phi: 8,
			warm: 3, window: 3 * time.Second}
	}
	return hbParams{steps: []int{1000, 2500, 5000, 10000, 15000, 20000, 25000, 30000}, interval: time.Second, floor: 5 * time.Second,
		phi: 8, warm: 3, window: 10 * time.Second}
}

func (p hbParams) detectorConfig() coordinator.DetectorConfig {
	d := coordinator.DefaultDetectorConfig()
	d.Threshold, d.AcceptablePause, d.FirstInterval = p.phi, p.floor, p.interval
	return d
}

// steadyBound is the detector's bound for a worker that beat exactly every
// interval.
func (p hbParams) steadyBound() time.Duration {
	d := coordinator.NewDetector(p.detectorConfig())
	t0 := time.Now()
	d.Track("w", 1, t0)
	for i := 1; i < hbHistoryEntries; i++ {
		d.Heartbeat("w", 1, t0.Add(time.Duration(i)*p.interval))
	}
	return d.Bound("w")
}

// RunHeartbeats measures how many workers one coordinator leader tracks
// on this machine while it still declares a silent worker lost within the
// detector's bound and no live worker lost. The leader is a real `megha
// coordinator` process (one node: heartbeats never touch Raft); simulated
// workers in this process register and keep one heartbeat stream each,
// beating every interval at phases spread uniformly over it. The number of
// workers steps up; at each step, after a warm-up, a few workers fall
// silent and the benchmark times how long the leader takes to declare
// them lost, against the bound the detector computes from the same
// heartbeat history, and checks that nobody else was declared lost. The
// leader's CPU is read from /proc for its process alone.
func RunHeartbeats(ctx context.Context, cfg Config) (*Result, error) {
	p := heartbeatParams(cfg.Quick)
	bound := p.steadyBound()
	if min := bound + hbCheckEvery + p.interval + time.Second; p.window < min {
		p.window = min
	}
	args := []string{
		"--heartbeat-interval", p.interval.String(), "--worker-lost-floor", p.floor.String(),
		"--worker-phi", strconv.FormatFloat(p.phi, 'f', -1, 64),
	}
	c, err := testcluster.Start(testcluster.Options{Nodes: 1, Bin: cfg.Bin, Args: args, Logf: cfg.Logf})
	if err != nil {
		return nil, fmt.Errorf("worker-heartbeats: %w", err)
	}
	defer c.Close()
	leaderPID := c.Nodes[0].PID()

	admin, err := client.New(client.Config{Addrs: c.Addrs(), Token: testcluster.AdminToken, AttemptTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	f, err := newHBFleet(ctx, p, c.Addrs())
	if err != nil {
		return nil, err
	}
	defer f.close()
	cfg.logf("worker-heartbeats: 1-node coordinator (pid %d); interval %v, floor %v, phi %v: steady bound %v; steps %v",
		leaderPID, p.interval, p.floor, p.phi, bound.Round(time.Millisecond), p.steps)

	// The leader idle, with no worker: what the per-worker cost adds to.
	idle := math.NaN()
	if c0, ok0 := testcluster.CPUTime(leaderPID); ok0 {
		t0 := time.Now()
		if !sleepCtx(ctx, 2*p.interval) {
			return nil, ctx.Err()
		}
		if c1, ok1 := testcluster.CPUTime(leaderPID); ok1 {
			idle = 100 * (c1 - c0).Seconds() / time.Since(t0).Seconds()
		}
	}

	var (
		steps   []hbStep
		figure  int
		failure string
	)
	for _, n := range p.steps {
		st, err := f.step(ctx, n, admin, leaderPID)
		if err != nil {
			return nil, fmt.Errorf("worker-heartbeats: %d workers: %w", n, err)
		}
		steps = append(steps, st)
		cfg.logf("worker-heartbeats: %s", st.summary())
		if !st.pass() {
			failure = fmt.Sprintf("%d workers", n)
			break
		}
		figure = n
	}

	samples := make([]float64, len(steps))
	var parts []string
	for i, st := range steps {
		samples[i] = float64(st.workers)
		parts = append(parts, st.brief())
	}
	notes := fmt.Sprintf("1 `megha coordinator` process (one node: heartbeats stay in the leader's memory and never touch Raft; "+
		"3 nodes would add only the replication of Register/WorkerLost), --heartbeat-interval %v --worker-lost-floor %v "+
		"--worker-phi %v, check every %v, rate limit off; simulated workers in the benchmark process (not the leader's), "+
		"each registered with 2 emulated GPUs and holding one heartbeat stream, beating at phases spread uniformly over the interval, "+
		"multiplexed over %d shared gRPC connections (%d TCP connections in one process is not what is measured); "+
		"leader CPU from /proc/PID/stat of the coordinator alone (idle with no workers: %.1f%% of a core), over a %v window after %d intervals of warm-up; "+
		"per step %d workers fall silent (the stream closed right after a heartbeat) and must be declared LOST within "+
		"the detector's bound for their own heartbeat history + the %v check period + %v slack, with no other worker declared lost; "+
		"the simulated workers share the machine's cores with the leader (their CPU is given per step), so near the top "+
		"the limit is the machine as much as the leader; "+
		"figure = the most workers for which that held (goal %d); steps: %s",
		p.interval, p.floor, p.phi, hbCheckEvery, hbClients, heartbeatGoal, idle, p.window.Round(100*time.Millisecond), p.warm, hbVictims, hbCheckEvery, hbSlack,
		heartbeatGoal, strings.Join(parts, "; "))
	if failure != "" {
		notes += "; stopped at the first failing step, " + failure
	} else if figure == p.steps[len(p.steps)-1] {
		notes += "; the largest step held, so the capacity is at least the figure"
	}
	if cfg.Quick {
		notes = "QUICK RUN, not a measurement; " + notes
	}
	return &Result{
		Name: "worker-heartbeats", Figure: float64(figure), Unit: "workers",
		Baseline: nil, BaselineName: "none (absolute bound)",
		Ratio: float64(figure), Goal: heartbeatGoal, Better: Higher, Runs: 1,
		Machine: ThisMachine(), Date: Today(), Notes: notes, Samples: samples,
	}, nil
}

// hbStep is what one step measured.
type hbStep struct {
	workers     int
	register    time.Duration // registering and opening the step's new workers
	newWorkers  int
	leaderCPU   float64 // percent of one core; NaN if unknown
	selfCPU     float64 // the benchmark process (simulated workers)
	leaderRSS   int64   // bytes; 0 if unknown
	beats       int64   // heartbeats answered in the window
	window      time.Duration
	rttP50      time.Duration
	rttP99      time.Duration
	lagP99      time.Duration // how late the simulated workers sent (their own CPU)
	victims     []hbVictim
	falseLost   []string // declared lost though they kept beating
	reregister  int64    // answers telling a live worker to register again
	streamFails int64    // live workers' streams that broke
}

type hbVictim struct {
	id      string
	lost    bool
	latency time.Duration // last heartbeat sent → LostAt on the leader
	bound   time.Duration // the detector's bound for this worker's history
	reason  string
}

func (s hbStep) allowed(v hbVictim) time.Duration { return v.bound + hbCheckEvery + hbSlack }

func (s hbStep) pass() bool { return s.why() == "" }

func (s hbStep) why() string {
	var out []string
	for _, v := range s.victims {
		switch {
		case !v.lost:
			out = append(out, fmt.Sprintf("%s not declared lost (bound %v)", v.id, v.bound.Round(time.Millisecond)))
		case v.latency > s.allowed(v):
			out = append(out, fmt.Sprintf("%s declared lost after %v, allowed %v", v.id,
				v.latency.Round(time.Millisecond), s.allowed(v).Round(time.Millisecond)))
		}
	}
	if len(s.falseLost) > 0 {
		ids := s.falseLost
		if len(ids) > 5 {
			ids = ids[:5]
		}
		out = append(out, fmt.Sprintf("%d live workers declared lost (%s)", len(s.falseLost), strings.Join(ids, " ")))
	}
	if s.reregister > 0 {
		out = append(out, fmt.Sprintf("%d heartbeats of live workers answered with reregister", s.reregister))
	}
	return strings.Join(out, ", ")
}

func (s hbStep) summary() string {
	var lat, bnd []float64
	for _, v := range s.victims {
		if v.lost {
			lat = append(lat, v.latency.Seconds())
		}
		bnd = append(bnd, v.bound.Seconds())
	}
	cpu := "leader CPU unknown"
	if !math.IsNaN(s.leaderCPU) {
		cpu = fmt.Sprintf("leader CPU %.1f%% of a core (%.2f%% per 1,000 workers)", s.leaderCPU,
			s.leaderCPU/(float64(s.workers)/1000))
	}
	detected := "none detected"
	if len(lat) > 0 {
		detected = fmt.Sprintf("%.2f-%.2f s", minOf(lat), maxOf(lat))
	}
	out := fmt.Sprintf("%d workers: %s, RSS %d MiB, simulated workers %.0f%%; %.0f heartbeats/s, RTT p50 %v p99 %v, send lag p99 %v; "+
		"%d/%d silenced workers declared lost after %s vs bound %.2f-%.2f s (allowed +%v); %d false positives",
		s.workers, cpu, s.leaderRSS>>20, s.selfCPU, float64(s.beats)/s.window.Seconds(),
		roundDur(s.rttP50), roundDur(s.rttP99), roundDur(s.lagP99),
		countLost(s.victims), len(s.victims), detected, minOf(bnd), maxOf(bnd), hbCheckEvery+hbSlack, len(s.falseLost))
	if s.newWorkers > 0 {
		out += fmt.Sprintf("; %d new workers registered and streaming in %v", s.newWorkers, s.register.Round(time.Millisecond))
	}
	if s.streamFails > 0 {
		out += fmt.Sprintf("; %d streams broke", s.streamFails)
	}
	if w := s.why(); w != "" {
		out += "; FAILED: " + w
	}
	return out
}

// brief is summary for the notes: what a reader of RESULTS.md needs.
func (s hbStep) brief() string {
	var lat, bnd []float64
	for _, v := range s.victims {
		if v.lost {
			lat = append(lat, v.latency.Seconds())
		}
		bnd = append(bnd, v.bound.Seconds())
	}
	cpu := "leader CPU ?"
	if !math.IsNaN(s.leaderCPU) {
		cpu = fmt.Sprintf("leader %.1f%% of a core (%.2f%% per 1,000)", s.leaderCPU, s.leaderCPU/(float64(s.workers)/1000))
	}
	out := fmt.Sprintf("%d: %s, %d MiB, simulated workers %.0f%%, RTT p99 %v; %d/%d lost after %.2f-%.2f s vs bound %.2f-%.2f s; %d false positives",
		s.workers, cpu, s.leaderRSS>>20, s.selfCPU, roundDur(s.rttP99), countLost(s.victims), len(s.victims),
		minOf(lat), maxOf(lat), minOf(bnd), maxOf(bnd), len(s.falseLost))
	if w := s.why(); w != "" {
		out += " (FAILED: " + w + ")"
	}
	return out
}

func countLost(vs []hbVictim) int {
	n := 0
	for _, v := range vs {
		if v.lost {
			n++
		}
	}
	return n
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// hbFleet is the simulated workers.
type hbFleet struct {
	p       hbParams
	clients []*client.Client
	origin  time.Time // phases count from here
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	rng     *rand.Rand

	live    []*simWorker    // beating
	victims map[string]bool // every worker silenced so far
	byID    map[string]*simWorker

	beats       atomic.Int64
	reregister  atomic.Int64
	streamFails atomic.Int64
	rtt, lag    hist
	seq         atomic.Int64
}

type simWorker struct {
	id    string
	epoch uint64
	cl    *client.Client
	phase time.Duration
	regAt time.Time

	silence atomic.Bool   // stop after the next heartbeat
	done    chan struct{} // closed when the worker stopped beating
	// Written by the worker's goroutine only; read after done.
	sends    [hbHistoryEntries]int64 // unix nanos of heartbeats sent, a ring
	nsent    int
	lastSent time.Time
	err      error
}

func (w *simWorker) sent(t time.Time) {
	w.sends[w.nsent%len(w.sends)] = t.UnixNano()
	w.nsent++
	w.lastSent = t
}

// bound is what the leader's detector computes for this worker: the same
// configuration fed the same heartbeat times.
func (w *simWorker) bound(p hbParams) time.Duration {
	d := coordinator.NewDetector(p.detectorConfig())
	start := 0
	if w.nsent > len(w.sends) {
		start = w.nsent - len(w.sends)
	} else {
		d.Track(w.id, w.epoch, w.regAt)
	}
	for i := start; i < w.nsent; i++ {
		t := time.Unix(0, w.sends[i%len(w.sends)])
		if i == start && start > 0 {
			d.Track(w.id, w.epoch, t)
			continue
		}
		d.Heartbeat(w.id, w.epoch, t)
	}
	return d.Bound(w.id)
}

func newHBFleet(ctx context.Context, p hbParams, addrs []string) (*hbFleet, error) {
	f := &hbFleet{p: p, origin: time.Now(), victims: map[string]bool{}, byID: map[string]*simWorker{},
		rng: rand.New(rand.NewPCG(1, 2))}
	f.ctx, f.cancel = context.WithCancel(ctx)
	for i := 0; i < hbClients; i++ {
		cl, err := client.New(client.Config{Addrs: addrs, Token: testcluster.WorkerToken, AttemptTimeout: 10 * time.Second})
		if err != nil {
			f.close()
			return nil, err
		}
		f.clients = append(f.clients, cl)
	}
	return f, nil
}

func (f *hbFleet) close() {
	f.cancel()
	f.wg.Wait()
	for _, cl := range f.clients {
		cl.Close()
	}
}

// grow registers workers until n beat, each with its stream open.
func (f *hbFleet) grow(n int) (int, time.Duration, error) {
	need := n - len(f.live)
	if need <= 0 {
		return 0, 0, nil
	}
	start := time.Now()
	var (
		mu      sync.Mutex
		added   []*simWorker
		errs    []error
		setup   sync.WaitGroup
		sem     = make(chan struct{}, hbSetupParallel)
		phases  = make([]time.Duration, need)
		seqBase = f.seq.Add(int64(need)) - int64(need)
	)
	for i := range phases {
		phases[i] = time.Duration(f.rng.Int64N(int64(f.p.interval)))
	}
	for i := 0; i < need; i++ {
		seq := seqBase + int64(i)
		w := &simWorker{id: fmt.Sprintf("sim-%06d", seq), cl: f.clients[int(seq)%len(f.clients)],
			phase: phases[i], done: make(chan struct{})}
		setup.Add(1)
		sem <- struct{}{}
		go func() {
			defer setup.Done()
			stream, cancel, err := f.open(w)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", w.id, err))
				return
			}
			added = append(added, w)
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.beat(w, stream, cancel) }()
		}()
	}
	setup.Wait()
	sort.Slice(added, func(i, j int) bool { return added[i].id < added[j].id })
	for _, w := range added {
		f.live = append(f.live, w)
		f.byID[w.id] = w
	}
	if len(errs) > 0 {
		return len(added), time.Since(start), fmt.Errorf("%d of %d workers could not register and stream: %w",
			len(errs), need, errors.Join(errs[:min(len(errs), 3)]...))
	}
	return need, time.Since(start), nil
}

// open registers the worker and opens its heartbeat stream (whose first
// heartbeat is answered before it returns).
func (f *hbFleet) open(w *simWorker) (client.HeartbeatStream, context.CancelFunc, error) {
	rctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	resp, err := w.cl.RegisterWorker(rctx, &meghav1.RegisterWorkerRequest{
		WorkerId: w.id, Host: w.id + ".sim", Version: "bench",
		Gpus: []*meghav1.GPU{
			{Uuid: "SIM-" + w.id + "-0", Model: "H100-SXM", Name: "NVIDIA H100 SXM (emulated)", MemoryBytes: 80 << 30, Emulated: true, Healthy: true},
			{Uuid: "SIM-" + w.id + "-1", Model: "H100-SXM", Name: "NVIDIA H100 SXM (emulated)", MemoryBytes: 80 << 30, Emulated: true, Healthy: true},
		},
		Throughput: &meghav1.Throughput{SamplesPerSecond: 1000, Probe: "bench", Emulated: true},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("register: %w", err)
	}
	w.epoch, w.regAt = resp.Epoch, time.Now()
	// The stream lives on f.ctx (until scancel): a context that ends when
	// the open returns would end the stream with it.
	stream, first, scancel, err := w.cl.OpenHeartbeat(f.ctx, &meghav1.HeartbeatRequest{WorkerId: w.id, Epoch: w.epoch, Seq: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("open heartbeat stream: %w", err)
	}
	w.sent(time.Now())
	if first.Reregister {
		scancel()
		return nil, nil, fmt.Errorf("first heartbeat answered with reregister: %s", first.Reason)
	}
	return stream, scancel, nil
}

// beat sends a heartbeat at every interval on the worker's phase and waits
// for each answer, until the fleet closes or the worker is silenced (right
// after a heartbeat, as a worker killed then would be).
func (f *hbFleet) beat(w *simWorker, stream client.HeartbeatStream, cancel context.CancelFunc) {
	defer close(w.done)
	defer func() { cancel() }()
	interval := f.p.interval
	k := (time.Since(f.origin)-w.phase)/interval + 1
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	seq := uint64(1)
	for {
		due := f.origin.Add(w.phase + k*interval)
		timer.Reset(time.Until(due))
		select {
		case <-f.ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		f.lag.add(now.Sub(due))
		for now.Sub(due) >= interval { // fell behind: skip the missed slots
			k++
			due = due.Add(interval)
		}
		k++
		seq++
		err := stream.Send(&meghav1.HeartbeatRequest{WorkerId: w.id, Epoch: w.epoch, Seq: seq})
		var resp *meghav1.HeartbeatResponse
		if err == nil {
			resp, err = stream.Recv()
		}
		if err != nil {
			if f.ctx.Err() != nil {
				return
			}
			// A broken stream: reopen it, as the agent would.
			f.streamFails.Add(1)
			cancel()
			s, first, c, oerr := w.cl.OpenHeartbeat(f.ctx, &meghav1.HeartbeatRequest{WorkerId: w.id, Epoch: w.epoch, Seq: seq})
			if oerr != nil {
				w.err = fmt.Errorf("stream broke (%v) and could not reopen: %w", err, oerr)
				return
			}
			stream, cancel, resp = s, c, first
		}
		f.rtt.add(time.Since(now))
		w.sent(now)
		f.beats.Add(1)
		if resp.Reregister {
			f.reregister.Add(1)
			w.err = fmt.Errorf("told to register again: %s", resp.Reason)
			return
		}
		if w.silence.Load() {
			return
		}
	}
}

// step grows the fleet to n workers, warms up, silences a few and watches
// the leader declare them lost.
func (f *hbFleet) step(ctx context.Context, n int, admin *client.Client, leaderPID int) (hbStep, error) {
	st := hbStep{workers: n, window: f.p.window}
	added, took, err := f.grow(n)
	st.newWorkers, st.register = added, took
	if err != nil {
		return st, err
	}
	if !sleepCtx(ctx, time.Duration(f.p.warm)*f.p.interval) {
		return st, ctx.Err()
	}

	// Silence a few workers, chosen at random among the live ones.
	f.rng.Shuffle(len(f.live), func(i, j int) { f.live[i], f.live[j] = f.live[j], f.live[i] })
	victims := f.live[:hbVictims]
	f.live = append([]*simWorker(nil), f.live[hbVictims:]...)
	sort.Slice(f.live, func(i, j int) bool { return f.live[i].id < f.live[j].id })

	f.rtt.reset()
	f.lag.reset()
	beats0, rereg0, fails0 := f.beats.Load(), f.reregister.Load(), f.streamFails.Load()
	lcpu0, lok0 := testcluster.CPUTime(leaderPID)
	scpu0 := selfCPUTime()
	t0 := time.Now()
	for _, v := range victims {
		f.victims[v.id] = true
		v.silence.Store(true)
	}

	lost := map[string]*meghav1.Worker{}
	poll := func() error {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := admin.ListWorkers(pctx, &meghav1.ListWorkersRequest{States: []meghav1.WorkerState{meghav1.WorkerState_WORKER_STATE_LOST}})
		if err != nil {
			return err
		}
		for _, w := range resp.Workers {
			lost[w.Id] = w
		}
		return nil
	}
	allFound := func() bool {
		for _, v := range victims {
			if lost[v.id] == nil {
				return false
			}
		}
		return true
	}
	windowEnd := t0.Add(f.p.window)
	giveUp := windowEnd.Add(f.p.floor + 2*f.p.interval) // only a missed detection waits this long
	measured := false
	for {
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return st, ctx.Err()
		}
		now := time.Now()
		if !measured && !now.Before(windowEnd) {
			measured = true
			st.window = now.Sub(t0)
			lcpu1, lok1 := testcluster.CPUTime(leaderPID)
			st.leaderCPU = math.NaN()
			if lok0 && lok1 {
				st.leaderCPU = 100 * (lcpu1 - lcpu0).Seconds() / st.window.Seconds()
			}
			st.selfCPU = 100 * (selfCPUTime() - scpu0).Seconds() / st.window.Seconds()
			st.leaderRSS = procRSS(leaderPID)
			st.beats = f.beats.Load() - beats0
			st.rttP50, st.rttP99 = f.rtt.quantile(0.5), f.rtt.quantile(0.99)
			st.lagP99 = f.lag.quantile(0.99)
		}
		if err := poll(); err != nil {
			return st, fmt.Errorf("list lost workers: %w", err)
		}
		if measured && (allFound() || now.After(giveUp)) {
			break
		}
	}
	st.reregister = f.reregister.Load() - rereg0
	st.streamFails = f.streamFails.Load() - fails0

	for _, v := range victims {
		select {
		case <-v.done:
		case <-time.After(5 * time.Second):
			return st, fmt.Errorf("silenced worker %s still beating", v.id)
		}
		hv := hbVictim{id: v.id, bound: v.bound(f.p)}
		if w := lost[v.id]; w != nil {
			hv.lost = true
			hv.latency = w.LostAt.AsTime().Sub(v.lastSent)
			hv.reason = w.LostReason
		}
		st.victims = append(st.victims, hv)
	}
	for id := range lost {
		if !f.victims[id] {
			st.falseLost = append(st.falseLost, id)
		}
	}
	sort.Strings(st.falseLost)
	return st, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// hist is a lock-free latency histogram with buckets 20% apart from 1µs.
type hist struct{ b [128]atomic.Int64 }

const histGrowth = 1.2

func (h *hist) add(d time.Duration) {
	i := 0
	if us := float64(d) / float64(time.Microsecond); us > 1 {
		i = min(int(math.Log(us)/math.Log(histGrowth))+1, len(h.b)-1)
	}
	h.b[i].Add(1)
}

func (h *hist) reset() {
	for i := range h.b {
		h.b[i].Store(0)
	}
}

// quantile returns the upper edge of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
	var counts [len(h.b)]int64
	var total int64
	for i := range h.b {
		counts[i] = h.b[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= want {
			return time.Duration(math.Pow(histGrowth, float64(i)) * float64(time.Microsecond))
		}
	}
	return time.Duration(math.Pow(histGrowth, float64(len(counts)-1)) * float64(time.Microsecond))
}

// procRSS is the resident set of process pid in bytes (0 if unknown).
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// selfCPUTime is the CPU time this process has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
