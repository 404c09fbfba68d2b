//go:build unix

package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/coordinator"
	"github.com/megha-ml/megha/internal/testcluster"
)

// These tests run `megha worker` processes against `megha coordinator`
// processes (internal/testcluster), so that a worker can be SIGKILLed (no
// Leave, no deferred cleanup), SIGSTOPped (its sockets open, its
// heartbeats silent) or SIGTERMed, and the coordinator leader can die
// under a live worker.

// Worker tracking of the test clusters: fast, so that a lost worker is
// declared within a few seconds.
const (
	hbInterval = 100 * time.Millisecond
	lostFloor  = time.Second
	checkEvery = 100 * time.Millisecond // coordinator.WorkerConfig's default
	grace      = 2 * time.Second        // --worker-grace default
	phiLimit   = 8.0
	// slack covers what the bound does not: proposing WorkerLost through
	// Raft and this test's polling.
	slack = 500 * time.Millisecond
)

var trackingArgs = []string{
	"--heartbeat-interval", hbInterval.String(),
	"--worker-lost-floor", lostFloor.String(),
	"--worker-phi", fmt.Sprint(phiLimit),
	"--worker-grace", grace.String(),
}

// lostBound is how long after its last heartbeat a worker that beat
// steadily every hbInterval is declared lost: the detector's own bound for
// that history, computed by a coordinator.Detector configured as the
// coordinator processes are.
func lostBound() time.Duration {
	det := coordinator.DefaultDetectorConfig()
	det.Threshold, det.AcceptablePause, det.FirstInterval = phiLimit, lostFloor, hbInterval
	d := coordinator.NewDetector(det)
	t0 := time.Now()
	d.Track("w", 1, t0)
	for i := 1; i <= det.Window; i++ {
		d.Heartbeat("w", 1, t0.Add(time.Duration(i)*hbInterval))
	}
	return d.Bound("w")
}

func startCluster(t *testing.T, nodes int) *testcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs coordinator and worker processes")
	}
	return testcluster.StartT(t, testcluster.Options{Nodes: nodes, Args: trackingArgs})
}

func adminClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: addrs, Token: testcluster.AdminToken, AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// workerProc is a `megha worker` process.
type workerProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	logPath string
	exited  chan struct{}
	err     error // valid once exited is closed
}

// startWorker starts `megha worker --emulate-gpu H100x2` against addrs
// (extra flags are appended; a repeated flag overrides). Its output goes to
// a file, shown if the test fails; the process is killed when the test
// ends.
func startWorker(t *testing.T, c *testcluster.Cluster, token string, addrs []string, extra ...string) *workerProc {
	t.Helper()
	dir := t.TempDir()
	w := &workerProc{t: t, dataDir: filepath.Join(dir, "worker"), logPath: filepath.Join(dir, "worker.log"),
		exited: make(chan struct{})}
	logf, err := os.Create(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"worker", "--coordinator", strings.Join(addrs, ","), "--token", token,
		"--emulate-gpu", "H100x2", "--data-dir", w.dataDir, "--calibrate", "50ms"}, extra...)
	w.cmd = exec.Command(c.Bin, args...)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		if w.running() {
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			<-w.exited
		}
		if t.Failed() || testing.Verbose() && os.Getenv("MEGHA_TEST_WORKER_LOG") != "" {
			t.Logf("worker log (%s), first and last lines:\n%s", w.logPath, headTail(w.log(), 8, 30))
		}
	})
	return w
}

func (w *workerProc) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

func (w *workerProc) log() string {
	b, _ := os.ReadFile(w.logPath)
	return string(b)
}

func (w *workerProc) signal(sig syscall.Signal) {
	w.t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		w.t.Fatalf("%v worker: %v", sig, err)
	}
}

// waitExit waits up to d for the process to exit and returns its exit
// code.
func (w *workerProc) waitExit(d time.Duration) int {
	w.t.Helper()
	select {
	case <-w.exited:
	case <-time.After(d):
		w.t.Fatalf("worker still running %v later", d)
	}
	var ee *exec.ExitError
	if errors.As(w.err, &ee) {
		return ee.ExitCode()
	}
	if w.err != nil {
		w.t.Fatalf("worker: %v", w.err)
	}
	return 0
}

// procState is the kernel's one-letter state of pid ('T' when stopped).
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) S ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// waitStopped waits until the kernel reports pid stopped (stop) or not;
// where there is no /proc it waits a moment instead.
func waitStopped(t *testing.T, pid int, stop bool) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		time.Sleep(20 * time.Millisecond)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for (procState(pid) == 'T') != stop {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d state %c, want stopped=%v", pid, procState(pid), stop)
		}
		time.Sleep(time.Millisecond)
	}
}

// id waits for the worker to write its ID into its data dir.
func (w *workerProc) id() string {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(w.dataDir, "worker-id"))
		if id := strings.TrimSpace(string(b)); err == nil && id != "" {
			return id
		}
		if time.Now().After(deadline) || !w.running() {
			w.t.Fatalf("worker wrote no ID into %s (running %v): %v", w.dataDir, w.running(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getWorker returns the worker as the leader lists it (nil if unknown).
func getWorker(ctx context.Context, cl *client.Client, id string) (*meghav1.Worker, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cl.ListWorkers(ctx, &meghav1.ListWorkersRequest{})
	if err != nil {
		return nil, err
	}
	for _, w := range resp.Workers {
		if w.Id == id {
			return w, nil
		}
	}
	return nil, nil
}

// waitReady waits until the leader lists the worker READY with its two
// emulated H100 SXM GPUs.
func waitReady(t *testing.T, cl *client.Client, w *workerProc) *meghav1.Worker {
	t.Helper()
	return waitReadyCheck(t, cl, w, checkGPUs)
}

// waitReadyCheck is waitReady with its own check of the listed GPUs.
func waitReadyCheck(t *testing.T, cl *client.Client, w *workerProc, check func([]*meghav1.GPU) error) *meghav1.Worker {
	t.Helper()
	id := w.id()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		got, err := getWorker(context.Background(), cl, id)
		switch {
		case err != nil:
			last = err.Error()
		case got == nil:
			last = "not listed"
		case got.State != meghav1.WorkerState_WORKER_STATE_READY:
			last = got.State.String()
		default:
			if err := check(got.Gpus); err != nil {
				t.Fatalf("worker %s: %v", id, err)
			}
			return got
		}
		if !w.running() {
			t.Fatalf("worker exited before it was ready (%v); last: %s", w.err, last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s not READY after 20s; last: %s", id, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkGPUs(gpus []*meghav1.GPU) error {
	if len(gpus) != 2 {
		return fmt.Errorf("%d GPUs listed, want 2: %v", len(gpus), gpus)
	}
	for _, g := range gpus {
		if g.Model != "H100-SXM" || !g.Emulated {
			return fmt.Errorf("GPU %v, want an emulated H100-SXM", g)
		}
	}
	return nil
}

// TestWorkerSIGKILLIsLost kills a ready worker outright: no Leave reaches
// the coordinator, so only the failure detector can notice, and it must
// declare the worker LOST within its bound.
func TestWorkerSIGKILLIsLost(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	w := startWorker(t, c, testcluster.WorkerToken, c.Addrs())
	ready := waitReady(t, cl, w)
	time.Sleep(10 * hbInterval) // a history of intervals, as lostBound assumes

	bound := lostBound()
	limit := bound + checkEvery + slack
	t.Logf("detector bound %v (interval %v, floor %v, phi %v); allowed %v = bound + check period %v + slack %v",
		bound, hbInterval, lostFloor, phiLimit, limit, checkEvery, slack)

	killed := time.Now()
	w.signal(syscall.SIGKILL)
	w.waitExit(5 * time.Second)
	var got *meghav1.Worker
	for {
		var err error
		got, err = getWorker(context.Background(), cl, ready.Id)
		if err == nil && got != nil && got.State != meghav1.WorkerState_WORKER_STATE_READY {
			break
		}
		if time.Since(killed) > limit+2*time.Second {
			t.Fatalf("worker %s still %v %v after SIGKILL (allowed %v); err %v", ready.Id, got.GetState(), time.Since(killed), limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := time.Since(killed)
	if got.State != meghav1.WorkerState_WORKER_STATE_LOST {
		t.Fatalf("worker %s is %v after SIGKILL, want LOST", got.Id, got.State)
	}
	lostAfter := got.LostAt.AsTime().Sub(killed)
	t.Logf("declared LOST %v after SIGKILL (seen by polling after %v): %s", lostAfter.Round(time.Millisecond),
		seen.Round(time.Millisecond), got.LostReason)
	if lostAfter > limit {
		t.Errorf("declared lost %v after SIGKILL, beyond the allowed %v", lostAfter, limit)
	}
	if lostAfter < lostFloor {
		t.Errorf("declared lost %v after SIGKILL, sooner than the floor %v", lostAfter, lostFloor)
	}
	if got.Epoch != ready.Epoch {
		t.Errorf("epoch %d, was %d", got.Epoch, ready.Epoch)
	}
}

// TestWorkerSIGSTOPShorterThanBoundIsNotLost freezes a worker for half the
// floor: its heartbeats stop but it must never leave READY, and it must
// carry on at the same epoch.
func TestWorkerSIGSTOPShorterThanBoundIsNotLost(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	w := startWorker(t, c, testcluster.WorkerToken, c.Addrs())
	ready := waitReady(t, cl, w)
	time.Sleep(10 * hbInterval)

	pause := lostFloor / 2
	bound := lostBound()
	t.Logf("SIGSTOP for %v; detector bound %v", pause, bound)
	ctx := context.Background()
	check := func(when string) *meghav1.Worker {
		t.Helper()
		got, err := getWorker(ctx, cl, ready.Id)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got == nil || got.State != meghav1.WorkerState_WORKER_STATE_READY || got.Epoch != ready.Epoch {
			t.Fatalf("%s: worker is %v at epoch %d, want READY at epoch %d (%s)", when, got.GetState(), got.GetEpoch(),
				ready.Epoch, got.GetLostReason())
		}
		return got
	}

	w.signal(syscall.SIGSTOP)
	waitStopped(t, w.cmd.Process.Pid, true)
	stopped := time.Now()
	polls := 0
	for time.Since(stopped) < pause {
		check(fmt.Sprintf("%v into the stop", time.Since(stopped).Round(time.Millisecond)))
		polls++
		time.Sleep(20 * time.Millisecond)
	}
	w.signal(syscall.SIGCONT)
	waitStopped(t, w.cmd.Process.Pid, false)
	resumed := time.Now()
	t.Logf("stopped for %v (%d checks, all READY)", resumed.Sub(stopped).Round(time.Millisecond), polls)

	// Through the bound measured from the stop, and a little after: still
	// READY, and heartbeats arriving again.
	var firstHB time.Time
	for time.Since(stopped) < bound+checkEvery+slack {
		got := check(fmt.Sprintf("%v after SIGCONT", time.Since(resumed).Round(time.Millisecond)))
		if hb := got.LastHeartbeat.AsTime(); firstHB.IsZero() && hb.After(resumed) {
			firstHB = hb
		}
		time.Sleep(20 * time.Millisecond)
	}
	if firstHB.IsZero() {
		t.Fatalf("no heartbeat reached the leader in the %v after SIGCONT", time.Since(resumed))
	}
	t.Logf("heartbeats resumed (one seen %v after SIGCONT); READY at epoch %d throughout", firstHB.Sub(resumed).Round(time.Millisecond), ready.Epoch)
	if strings.Count(w.log(), "msg=registered") > 1 {
		t.Errorf("worker registered again:\n%s", w.log())
	}
	if strings.Contains(w.log(), "no heartbeat answer") {
		t.Logf("note: after SIGCONT the worker took its own silence for the leader's and reopened its heartbeat stream")
	}
}

// TestWorkerFollowsLeaderChange kills the coordinator leader under a live
// worker: the worker must find the new leader by itself, its heartbeats
// must reach it, and the new leader must not declare it lost (its grace
// period), so that it stays at the same epoch. A crowd of simulated
// workers in this process reconnects at the same moment: none of them may
// be sent to register again or declared lost either. (A new leader that
// took heartbeats before tracking the known workers sent 184 of 3,000
// simulated workers away; 200 seldom hit that window, but the property
// is the same.)
func TestWorkerFollowsLeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cl := adminClient(t, c.Addrs()...)
	w := startWorker(t, c, testcluster.WorkerToken, c.Addrs())
	ready := waitReady(t, cl, w)
	crowd := startCrowd(t, c.Addrs(), 200)
	time.Sleep(10 * hbInterval)

	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(killed)
	ncl := adminClient(t, leader.GRPCAddr)

	// Heartbeats reach the new leader: its last_heartbeat for the worker
	// moves, and is not in the future (a new leader starts every worker's
	// clock at the end of its grace period until the first heartbeat).
	bound := lostBound()
	var (
		seen     []time.Time
		reached  time.Duration
		lastSeen *meghav1.Worker
		future   []time.Duration
	)
	for reached == 0 {
		got, err := getWorker(ctx, ncl, ready.Id)
		now := time.Now()
		if err == nil && got != nil {
			lastSeen = got
			if got.State != meghav1.WorkerState_WORKER_STATE_READY || got.Epoch != ready.Epoch {
				t.Fatalf("new leader %s lists the worker %v at epoch %d (%s), want READY at epoch %d",
					leader.ID, got.State, got.Epoch, got.LostReason, ready.Epoch)
			}
			if got.LastHeartbeat != nil {
				hb := got.LastHeartbeat.AsTime()
				if hb.After(now) {
					future = append(future, hb.Sub(now))
				}
				if hb.After(killed) && !hb.After(now) && (len(seen) == 0 || hb.After(seen[len(seen)-1])) {
					seen = append(seen, hb)
				}
				if len(seen) >= 3 && now.Sub(hb) < 5*hbInterval {
					reached = seen[0].Sub(killed)
				}
			}
		}
		if time.Since(killed) > grace+bound+5*time.Second {
			t.Fatalf("no steady heartbeats on new leader %s %v after the kill; last listing %v, err %v",
				leader.ID, time.Since(killed), lastSeen, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("killed leader %s; %s elected and agreed on %v later; the worker's heartbeats reached it %v after the kill",
		old.ID, leader.ID, elected.Round(time.Millisecond), reached.Round(time.Millisecond))
	if len(future) > 0 {
		t.Logf("note: the new leader listed a last_heartbeat in the future %d times (up to %v ahead): its grace period, shown as a heartbeat",
			len(future), slices.Max(future).Round(time.Millisecond))
	}

	// Past the new leader's grace and the worker's bound: still READY, same
	// epoch.
	until := killed.Add(elected + grace + bound + checkEvery + slack)
	for time.Now().Before(until) {
		got, err := getWorker(ctx, ncl, ready.Id)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || got.State != meghav1.WorkerState_WORKER_STATE_READY || got.Epoch != ready.Epoch {
			t.Fatalf("new leader lists the worker %v at epoch %d (%s), want READY at epoch %d",
				got.GetState(), got.GetEpoch(), got.GetLostReason(), ready.Epoch)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(w.log(), "msg=registered"); n != 1 {
		t.Errorf("worker registered %d times, want once", n)
	}
	crowd.check(t, ctx, ncl)
}

// crowd is simulated workers: each registers and holds a heartbeat stream,
// reopening it when it breaks, as the agent does, over a few shared
// connections.
type crowd struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	epochs  map[string]uint64
	sentOff []string // told to register again, with the reason
	reopens atomic.Int64
}

func startCrowd(t *testing.T, addrs []string, n int) *crowd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cr := &crowd{cancel: cancel, epochs: map[string]uint64{}}
	t.Cleanup(func() { cr.cancel(); cr.wg.Wait() })
	var clients []*client.Client
	for i := 0; i < 4; i++ {
		cl, err := client.New(client.Config{Addrs: addrs, Token: testcluster.WorkerToken})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		clients = append(clients, cl)
	}
	for i := 0; i < n; i++ {
		cl, id := clients[i%len(clients)], fmt.Sprintf("crowd-%03d", i)
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cl.RegisterWorker(rctx, &meghav1.RegisterWorkerRequest{WorkerId: id, Host: id,
			Gpus: []*meghav1.GPU{{Uuid: "CROWD-" + id, Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}})
		rcancel()
		if err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
		cr.epochs[id] = resp.Epoch
		cr.wg.Add(1)
		go func() { defer cr.wg.Done(); cr.beat(ctx, cl, id, resp.Epoch) }()
	}
	return cr
}

func (cr *crowd) beat(ctx context.Context, cl *client.Client, id string, epoch uint64) {
	var seq uint64
	for ctx.Err() == nil {
		seq++
		stream, resp, cancel, err := cl.OpenHeartbeat(ctx, &meghav1.HeartbeatRequest{WorkerId: id, Epoch: epoch, Seq: seq})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for err == nil {
			if resp.Reregister {
				cr.mu.Lock()
				cr.sentOff = append(cr.sentOff, id+": "+resp.Reason)
				cr.mu.Unlock()
				cancel()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond):
			}
			seq++
			if err = stream.Send(&meghav1.HeartbeatRequest{WorkerId: id, Epoch: epoch, Seq: seq}); err == nil {
				resp, err = stream.Recv()
			}
		}
		cancel()
		cr.reopens.Add(1)
	}
}

// check asserts that every simulated worker is READY at its first epoch
// on the leader, and none was told to register again.
func (cr *crowd) check(t *testing.T, ctx context.Context, leader *client.Client) {
	t.Helper()
	resp, err := leader.ListWorkers(ctx, &meghav1.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, w := range resp.Workers {
		if epoch, ok := cr.epochs[w.Id]; ok && (w.State != meghav1.WorkerState_WORKER_STATE_READY || w.Epoch != epoch) {
			bad = append(bad, fmt.Sprintf("%s %v epoch %d (%s)", w.Id, w.State, w.Epoch, w.LostReason))
		}
	}
	cr.mu.Lock()
	defer cr.mu.Unlock()
	t.Logf("%d simulated workers: %d stream reopenings, %d sent to register again, %d not READY at their epoch",
		len(cr.epochs), cr.reopens.Load(), len(cr.sentOff), len(bad))
	if len(cr.sentOff) > 0 {
		t.Errorf("%d of %d simulated workers were told to register again across the leader change, e.g. %s",
			len(cr.sentOff), len(cr.epochs), cr.sentOff[0])
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d simulated workers not READY at their epoch on the new leader, e.g. %s", len(bad), len(cr.epochs), bad[0])
	}
}

// TestWorkerKeepsOneHeartbeatStream checks that a healthy worker holds
// one heartbeat stream open and beats on it at the interval the
// coordinator asked for, rather than opening a stream per heartbeat: at
// thousands of workers, reconnecting costs the leader far more than a
// heartbeat does.
func TestWorkerKeepsOneHeartbeatStream(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	w := startWorker(t, c, testcluster.WorkerToken, c.Addrs())
	waitReady(t, cl, w)
	time.Sleep(5 * hbInterval)

	const window = 2 * time.Second
	const reopened = "heartbeat stream ended" // worker/heartbeat.go logs this per reconnect
	before := strings.Count(w.log(), reopened)
	cpu0, ok0 := testcluster.CPUTime(w.cmd.Process.Pid)
	time.Sleep(window)
	n := strings.Count(w.log(), reopened) - before
	cpu1, ok1 := testcluster.CPUTime(w.cmd.Process.Pid)
	cpu := "unknown"
	if ok0 && ok1 {
		cpu = fmt.Sprintf("%.0f%% of a core", 100*(cpu1-cpu0).Seconds()/window.Seconds())
	}
	t.Logf("in %v (%d heartbeat intervals): %d heartbeat streams reopened; worker CPU %s", window, window/hbInterval, n, cpu)
	if n > 1 {
		t.Errorf("a healthy worker reopened its heartbeat stream %d times in %v (%.0f/s), want at most once; worker CPU %s; last lines:\n%s",
			n, window, float64(n)/window.Seconds(), cpu, tail(w.log(), 3))
	}
}

func headTail(s string, head, tail int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) <= head+tail {
		return strings.Join(ls, "\n")
	}
	return strings.Join(ls[:head], "\n") + fmt.Sprintf("\n[... %d lines ...]\n", len(ls)-head-tail) +
		strings.Join(ls[len(ls)-tail:], "\n")
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// TestWorkerSIGTERMLeaves stops a worker the polite way: it tells the
// coordinator it leaves, and exits 0.
func TestWorkerSIGTERMLeaves(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	w := startWorker(t, c, testcluster.WorkerToken, c.Addrs())
	ready := waitReady(t, cl, w)

	w.signal(syscall.SIGTERM)
	if code := w.waitExit(10 * time.Second); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	got, err := getWorker(context.Background(), cl, ready.Id)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != meghav1.WorkerState_WORKER_STATE_LEFT {
		t.Fatalf("worker is %v after SIGTERM, want LEFT", got.GetState())
	}
}

// TestWorkerRefusedOnBadToken starts a worker with a token the coordinator
// does not know: retrying cannot help, so it must exit at once, non-zero,
// saying why.
func TestWorkerRefusedOnBadToken(t *testing.T) {
	c := startCluster(t, 1)
	start := time.Now()
	w := startWorker(t, c, "not-a-known-token-0123456789", c.Addrs())
	code := w.waitExit(10 * time.Second)
	took := time.Since(start)
	out := w.log()
	if code == 0 {
		t.Fatalf("worker with a bad token exited 0:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(out), "token") {
		t.Fatalf("exit message does not name the token problem:\n%s", out)
	}
	if took > 5*time.Second {
		t.Errorf("took %v to give up on a bad token", took)
	}
	t.Logf("exited %d after %v: %s", code, took.Round(time.Millisecond), lastLine(out))
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}
