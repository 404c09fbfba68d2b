// Package worker is the agent that runs on a leased machine: it registers
// with the coordinator, keeps a heartbeat stream to the leader (following
// leader changes by itself), and leaves cleanly on shutdown.
//
//	start ──▶ register ──▶ heartbeat ◀──────────────┐
//	            ▲   │          │ stream broken      │ reconnect
//	            │   │          └────────────────────┘ (same epoch)
//	            │   └─ refused (bad token, lease) ──▶ exit with the reason
//	            └────── told to re-register (declared lost) ──┘
//	SIGTERM ──▶ leave ──▶ exit
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/worker/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Version is the worker's software version, reported at registration.
var Version = "dev"

// Config configures an agent.
type Config struct {
	Client *client.Client
	// Coordinators are the addresses handed to tasks (MEGHA_COORDINATOR).
	Coordinators  []string
	LeaseID       string
	DataDir       string // keeps the worker's ID across restarts
	Host          string
	AdvertiseAddr string // where peers reach this worker (collective traffic)
	GPUs          []*meghav1.GPU
	// GPUStats, when set, refreshes the GPUs' utilization, temperature and
	// health; their latest reading rides on a heartbeat every StatsEvery.
	GPUStats   func() ([]*meghav1.GPU, error)
	StatsEvery time.Duration
	Throughput *meghav1.Throughput
	Logger     *slog.Logger
	// MaxBackoff caps the wait between attempts to reach the coordinator.
	MaxBackoff time.Duration
	// Runtime runs assigned tasks; default the process runtime.
	Runtime runtime.Runtime
	// Listen, when set, is where the agent serves task logs to the
	// coordinator; AdvertiseAddr defaults to the address it binds.
	Listen string
	// LeaseWait is how long a worker started on a lease keeps retrying
	// while the coordinator does not know the lease yet (default 0: a
	// refusal is final; `megha worker --lease` sets 30s).
	LeaseWait time.Duration
}

// Agent is a running worker agent.
type Agent struct {
	cfg    Config
	logger *slog.Logger

	mu    sync.Mutex
	id    string
	epoch uint64

	tasks  *tasks
	key    string // authenticates the coordinator to the agent server
	server *agentServer
}

// New returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errors.New("worker: no coordinator client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 10 * time.Second
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Runtime == nil {
		cfg.Runtime = runtime.NewProcessRuntime(runtime.ProcessConfig{})
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "megha-worker")
		if err != nil {
			return nil, err
		}
		cfg.DataDir = dir
	}
	a := &Agent{cfg: cfg, logger: cfg.Logger.With("component", "worker")}
	id, err := loadID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.id = id
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	a.key = hex.EncodeToString(key)
	a.tasks = newTasks(a, cfg.Runtime)
	if cfg.Listen != "" {
		if a.server, err = newAgentServer(a, cfg.Listen); err != nil {
			return nil, err
		}
		if a.cfg.AdvertiseAddr == "" || strings.HasSuffix(a.cfg.AdvertiseAddr, ":0") {
			a.cfg.AdvertiseAddr = a.server.addr
		}
	}
	return a, nil
}

// ID returns the worker's ID.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Epoch returns the worker's current registration epoch (0 before the
// first registration).
func (a *Agent) Epoch() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch
}

// loadID reads the worker's ID from dataDir, creating it on first start.
func loadID(dataDir string) (string, error) {
	if dataDir == "" {
		return "", nil // the coordinator assigns one per run
	}
	path := filepath.Join(dataDir, "worker-id")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("worker: read ID: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := "w-" + hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("worker: data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("worker: write ID: %w", err)
	}
	return id, nil
}

// Run registers and heartbeats until ctx ends, then leaves. It returns an
// error only for what retrying cannot fix (a refused token or lease).
func (a *Agent) Run(ctx context.Context) error {
	if a.server != nil {
		defer a.server.close()
	}
	for ctx.Err() == nil {
		if err := a.register(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		// Tasks belong to an epoch: when it ends (declared lost, told to
		// register again) they are stopped, since the coordinator has
		// already given their ranks to others.
		ectx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.tasks.follow(ectx, a.Epoch()) }()
		err := a.heartbeat(ctx)
		cancel()
		<-done
		if ctx.Err() == nil {
			a.logger.Warn("registering again", "reason", err)
			a.tasks.stopAll("this worker's registration ended")
		}
	}
	a.tasks.stopAll("worker shutting down")
	a.leave()
	return nil
}

// permanent reports errors no retry will fix.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition:
		return true
	}
	return false
}

// register retries with backoff and jitter until the coordinator accepts
// the worker, saying what it waits for.
func (a *Agent) register(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		req := &meghav1.RegisterWorkerRequest{
			WorkerId: a.ID(), LeaseId: a.cfg.LeaseID, Host: a.cfg.Host, AdvertiseAddr: a.cfg.AdvertiseAddr,
			Version: Version, Gpus: a.cfg.GPUs, Throughput: a.cfg.Throughput, AgentKey: a.key,
		}
		// A short attempt, so that an unreachable coordinator is reported
		// within seconds rather than after the client's own retries.
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := a.cfg.Client.RegisterWorker(actx, req)
		cancel()
		if err == nil {
			a.mu.Lock()
			a.id, a.epoch = resp.WorkerId, resp.Epoch
			a.mu.Unlock()
			a.logger.Info("registered", "worker_id", resp.WorkerId, "epoch", resp.Epoch, "gpus", len(a.cfg.GPUs),
				"heartbeat_ms", resp.HeartbeatIntervalMs)
			return nil
		}
		if permanent(err) && !(a.cfg.LeaseID != "" && unknownLease(err) && time.Since(start) < a.cfg.LeaseWait) {
			return fmt.Errorf("worker: the coordinator refused to register this worker: %s", status.Convert(err).Message())
		}
		wait := jitter(backoff)
		a.logger.Warn("waiting for the coordinator to accept registration", "attempt", attempt,
			"retry_in", wait.Round(time.Millisecond), "error", status.Convert(err).Message())
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		backoff = min(2*backoff, a.cfg.MaxBackoff)
	}
}

// unknownLease reports a refusal because the coordinator does not know the
// worker's lease (yet: a market may start the worker a moment before the
// coordinator records the lease it accepted).
func unknownLease(err error) bool {
	return status.Code(err) == codes.FailedPrecondition && strings.Contains(status.Convert(err).Message(), "unknown lease")
}

// jitter spreads retries of many workers: a random wait in [d/2, d).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leave tells the coordinator this worker is going away on purpose.
func (a *Agent) leave() {
	id, epoch := a.ID(), a.Epoch()
	if epoch == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.cfg.Client.LeaveWorker(ctx, &meghav1.LeaveRequest{WorkerId: id, Epoch: epoch, Reason: "worker shut down"}); err != nil {
		a.logger.Warn("could not tell the coordinator this worker is leaving; it will be declared lost", "error", err)
		return
	}
	a.logger.Info("left the cluster", "worker_id", id)
}
