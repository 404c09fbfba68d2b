package worker

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/coordinator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	adminTok  = "admin-token-0123456789"
	workerTok = "worker-token-0123456789"
	tenantTok = "tenant-token-0123456789"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startCoordinator runs a one-node coordinator with fast worker tracking:
// heartbeats every 50ms, lost after about half a second of silence.
func startCoordinator(t *testing.T) *coordinator.Server {
	t.Helper()
	toks, err := coordinator.ParseTokens([]byte(adminTok + " admin\n" + workerTok + " worker\n" + tenantTok + " tenant acme\n"))
	if err != nil {
		t.Fatal(err)
	}
	rc := coordinator.DefaultRaftConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 150*time.Millisecond
	s, err := coordinator.NewServer(coordinator.ServerConfig{
		Node: coordinator.NodeConfig{ID: "n1", DataDir: filepath.Join(t.TempDir(), "n1"), RaftAddr: "127.0.0.1:0",
			Bootstrap: true, Raft: rc},
		GRPCAddr: "127.0.0.1:0", Tokens: toks, Logger: quiet(),
		Workers: coordinator.WorkerConfig{
			HeartbeatInterval: 50 * time.Millisecond, Grace: 100 * time.Millisecond, CheckEvery: 20 * time.Millisecond,
			Detector: coordinator.DetectorConfig{Threshold: 8, MinStdDev: 50 * time.Millisecond, AcceptablePause: 300 * time.Millisecond},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitFor(t, "leadership", 10*time.Second, s.Node().IsLeader)
	return s
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newClient(t *testing.T, tok string, addrs ...string) *client.Client {
	c, err := client.New(client.Config{Addrs: addrs, Token: tok, AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var emulatedGPU = []*meghav1.GPU{{Uuid: "EMU-H100-SXM-0", Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}

func workerState(s *coordinator.Server, id string) meghav1.WorkerState {
	w, ok := s.Node().FSM().State().Worker(id)
	if !ok {
		return meghav1.WorkerState_WORKER_STATE_UNSPECIFIED
	}
	return w.State
}

func TestAgentRegistersHeartbeatsAndLeaves(t *testing.T) {
	s := startCoordinator(t)
	dir := t.TempDir()
	a, err := New(Config{Client: newClient(t, workerTok, s.Addr()), DataDir: dir, AdvertiseAddr: "127.0.0.1:9999",
		GPUs: emulatedGPU, Throughput: &meghav1.Throughput{SamplesPerSecond: 100, Probe: "test"}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "registration", 10*time.Second, func() bool { return a.Epoch() == 1 })
	id := a.ID()

	// Alive well past the detector's bound: heartbeats keep it ready.
	ops := newClient(t, tenantTok, s.Addr())
	waitFor(t, "heartbeats recorded", 5*time.Second, func() bool {
		r, err := ops.ListWorkers(context.Background(), &meghav1.ListWorkersRequest{})
		return err == nil && len(r.Workers) == 1 && r.Workers[0].LastHeartbeat != nil &&
			time.Since(r.Workers[0].LastHeartbeat.AsTime()) < 200*time.Millisecond
	})
	time.Sleep(time.Second) // not synchronisation: the span the worker must survive
	if st := workerState(s, id); st != meghav1.WorkerState_WORKER_STATE_READY {
		t.Fatalf("a heartbeating worker is %v", st)
	}
	r, _ := ops.ListWorkers(context.Background(), &meghav1.ListWorkersRequest{})
	if len(r.Throughput) != 1 || r.Throughput[0].Model != "H100-SXM" || r.Throughput[0].Mean != 100 {
		t.Fatalf("throughput history: %v", r.Throughput)
	}

	// SIGTERM-like shutdown: the worker leaves.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := workerState(s, id); st != meghav1.WorkerState_WORKER_STATE_LEFT {
		t.Fatalf("after shutdown the worker is %v, want left", st)
	}

	// The ID survives a restart of the agent.
	b, err := New(Config{Client: newClient(t, workerTok, s.Addr()), DataDir: dir, Logger: quiet()})
	if err != nil || b.ID() != id {
		t.Fatalf("ID after restart %q (%v), want %q", b.ID(), err, id)
	}
}

func TestSilentWorkerIsLostAndMustReregister(t *testing.T) {
	s := startCoordinator(t)
	c := newClient(t, workerTok, s.Addr())
	ctx := context.Background()
	reg, err := c.RegisterWorker(ctx, &meghav1.RegisterWorkerRequest{WorkerId: "w-silent", Gpus: emulatedGPU})
	if err != nil {
		t.Fatal(err)
	}
	// It never heartbeats: lost within the detector's bound.
	waitFor(t, "worker declared lost", 5*time.Second, func() bool {
		return workerState(s, "w-silent") == meghav1.WorkerState_WORKER_STATE_LOST
	})
	w, _ := s.Node().FSM().State().Worker("w-silent")
	if w.LostReason == "" || w.LostAt == nil {
		t.Fatalf("lost without a reason: %v", w)
	}
	// A late heartbeat of the old epoch is told to register again.
	stream, resp, cancel, err := c.OpenHeartbeat(ctx, &meghav1.HeartbeatRequest{WorkerId: "w-silent", Epoch: reg.Epoch, Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	_ = stream
	if !resp.Reregister || resp.Reason == "" {
		t.Fatalf("stale heartbeat answered %v", resp)
	}
	// Registering again starts a new epoch.
	reg2, err := c.RegisterWorker(ctx, &meghav1.RegisterWorkerRequest{WorkerId: "w-silent", Gpus: emulatedGPU})
	if err != nil || reg2.Epoch != reg.Epoch+1 {
		t.Fatalf("re-register: %v %v", reg2, err)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	s := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		tok  string
		req  *meghav1.RegisterWorkerRequest
		code codes.Code
	}{
		"no token":      {"", &meghav1.RegisterWorkerRequest{}, codes.Unauthenticated},
		"wrong token":   {"nope-nope-nope-nope-nope", &meghav1.RegisterWorkerRequest{}, codes.Unauthenticated},
		"tenant token":  {tenantTok, &meghav1.RegisterWorkerRequest{}, codes.PermissionDenied},
		"unknown lease": {workerTok, &meghav1.RegisterWorkerRequest{LeaseId: "lease-42"}, codes.FailedPrecondition},
		"gpu without uuid": {workerTok, &meghav1.RegisterWorkerRequest{Gpus: []*meghav1.GPU{{MemoryBytes: 1}}},
			codes.InvalidArgument},
		"duplicate uuid": {workerTok, &meghav1.RegisterWorkerRequest{Gpus: []*meghav1.GPU{
			{Uuid: "a", MemoryBytes: 1}, {Uuid: "a", MemoryBytes: 1}}}, codes.InvalidArgument},
		"bad advertise": {workerTok, &meghav1.RegisterWorkerRequest{AdvertiseAddr: "nowhere"}, codes.InvalidArgument},
		"bad id":        {workerTok, &meghav1.RegisterWorkerRequest{WorkerId: "Bad ID!"}, codes.InvalidArgument},
	} {
		c := newClient(t, tc.tok, s.Addr())
		_, err := c.RegisterWorker(ctx, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %v", name, err, tc.code)
		}
	}
	if ws := s.Node().FSM().State().Workers(); len(ws) != 0 {
		t.Fatalf("refused registrations wrote workers: %v", ws)
	}
}

func TestAgentStopsOnPermanentRefusal(t *testing.T) {
	s := startCoordinator(t)
	a, err := New(Config{Client: newClient(t, workerTok, s.Addr()), LeaseID: "no-such-lease", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("Run: %v (ctx %v), want a refusal", err, ctx.Err())
	}
}

func TestHeartbeatsCarryGPUStats(t *testing.T) {
	s := startCoordinator(t)
	stats := func() ([]*meghav1.GPU, error) {
		return []*meghav1.GPU{{Uuid: "EMU-H100-SXM-0", UtilizationPct: 42, TemperatureC: 61, Healthy: true}}, nil
	}
	a, err := New(Config{Client: newClient(t, workerTok, s.Addr()), GPUs: emulatedGPU, GPUStats: stats,
		StatsEvery: 50 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ops := newClient(t, tenantTok, s.Addr())
	waitFor(t, "GPU stats listed", 10*time.Second, func() bool {
		r, err := ops.ListWorkers(context.Background(), &meghav1.ListWorkersRequest{})
		return err == nil && len(r.Workers) == 1 && r.Workers[0].Gpus[0].UtilizationPct == 42 &&
			r.Workers[0].Gpus[0].TemperatureC == 61 && r.Workers[0].Gpus[0].Model == "H100-SXM"
	})
}
