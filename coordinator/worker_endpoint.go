package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// workerEndpoint serves WorkerService: registration, the heartbeat stream,
// leaving, and the operator's worker list. Heartbeats stay in the leader's
// memory (the Detector); only transitions go through Raft.
type workerEndpoint struct {
	meghav1.UnimplementedWorkerServiceServer
	s *Server
}

func (e *workerEndpoint) Register(ctx context.Context, req *meghav1.RegisterWorkerRequest) (*meghav1.RegisterWorkerResponse, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	if req.LeaseId != "" {
		l, ok := n.fsm.State().Lease(req.LeaseId)
		switch {
		case !ok:
			return nil, toStatus(fmt.Errorf("%w: %q; start the worker without --lease, or with the ID of a lease the coordinator holds (megha leases)", ErrUnknownLease, req.LeaseId))
		case l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE:
			return nil, toStatus(fmt.Errorf("%w: %q is closed (%s)", ErrUnknownLease, req.LeaseId, l.CloseReason))
		}
	}
	id, _ := IdentityFrom(ctx)
	wid := req.WorkerId
	if wid == "" {
		wid = newWorkerID()
	}
	w := &meghav1.Worker{
		Id: wid, LeaseId: req.LeaseId, Host: req.Host, AdvertiseAddr: req.AdvertiseAddr,
		Version: req.Version, Gpus: req.Gpus, Throughput: req.Throughput, Tenant: id.Tenant, AgentKey: req.AgentKey,
		RegisteredAt: timestamppb.Now(),
	}
	res, err := n.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_RegisterWorker{
		RegisterWorker: &meghav1.RegisterWorkerCommand{Worker: w}}})
	if err != nil {
		return nil, toStatus(err)
	}
	n.detector.Track(wid, res.Worker.Epoch, time.Now())
	e.s.logger.Info("worker registered", "worker_id", wid, "epoch", res.Worker.Epoch, "host", req.Host,
		"gpus", len(req.Gpus), "advertise_addr", req.AdvertiseAddr)
	return &meghav1.RegisterWorkerResponse{WorkerId: wid, Epoch: res.Worker.Epoch,
		HeartbeatIntervalMs: uint32(e.s.cfg.Workers.HeartbeatInterval.Milliseconds())}, nil
}

func newWorkerID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "w-" + hex.EncodeToString(b)
}

// Heartbeat takes a stream of heartbeats from one worker. Each is answered:
// empty while the worker's epoch is current, with reregister once it is
// not (declared lost, or registered again elsewhere). The stream ends with
// NOT_LEADER when this node stops leading, and the worker reconnects to
// the new leader.
func (e *workerEndpoint) Heartbeat(stream grpc.BidiStreamingServer[meghav1.HeartbeatRequest, meghav1.HeartbeatResponse]) error {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return toStatus(err)
	}
	interval := uint32(e.s.cfg.Workers.HeartbeatInterval.Milliseconds())
	for {
		hb, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := validateRequest(hb); err != nil {
			return toStatus(err)
		}
		if !n.IsLeader() {
			return toStatus(n.leaderErr(ErrNotLeader))
		}
		resp := &meghav1.HeartbeatResponse{HeartbeatIntervalMs: interval}
		now := time.Now()
		if len(hb.Gpus) > 0 {
			e.s.gpuStats.Store(hb.WorkerId, hb.Gpus)
		}
		// The state decides: the detector can still track a worker for a
		// moment after WorkerLost has been applied (declareLost forgets it
		// once the apply returns).
		_, stale := n.fsm.State().liveWorker(hb.WorkerId, hb.Epoch)
		switch tracked := n.detector.Heartbeat(hb.WorkerId, hb.Epoch, now); {
		case stale != nil:
			resp.Reregister, resp.Reason = true, e.staleReason(hb.WorkerId, hb.Epoch)
		case !tracked:
			// Ready in this epoch but not tracked (it registered as this
			// node took over): track it from now.
			n.detector.Track(hb.WorkerId, hb.Epoch, now)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// staleReason explains to a worker why it must register again.
func (e *workerEndpoint) staleReason(id string, epoch uint64) string {
	w, ok := e.s.node.fsm.State().Worker(id)
	switch {
	case !ok:
		return "the coordinator does not know this worker"
	case w.State == meghav1.WorkerState_WORKER_STATE_LOST:
		return fmt.Sprintf("declared lost at %s (%s); its work has been handed to others", w.LostAt.AsTime().Format(time.RFC3339), w.LostReason)
	case w.Epoch != epoch:
		return fmt.Sprintf("registered again since (epoch %d, this is %d)", w.Epoch, epoch)
	}
	return fmt.Sprintf("the worker is %s", w.State)
}

func (e *workerEndpoint) Leave(ctx context.Context, req *meghav1.LeaveRequest) (*meghav1.LeaveResponse, error) {
	n := e.s.node
	_, err := n.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_WorkerLeft{WorkerLeft: &meghav1.WorkerLeftCommand{
		Id: req.WorkerId, Epoch: req.Epoch, Reason: req.Reason, At: timestamppb.Now()}}})
	if err != nil {
		return nil, toStatus(err)
	}
	n.detector.Forget(req.WorkerId)
	e.s.logger.Info("worker left", "worker_id", req.WorkerId, "reason", req.Reason)
	return &meghav1.LeaveResponse{}, nil
}

func (e *workerEndpoint) ListWorkers(ctx context.Context, req *meghav1.ListWorkersRequest) (*meghav1.ListWorkersResponse, error) {
	n := e.s.node
	if err := n.checkLeader(true); err != nil {
		return nil, toStatus(err)
	}
	ws := n.fsm.State().Workers(req.States...)
	for _, w := range ws {
		w.AgentKey = "" // a secret between coordinator and worker
		if g, ok := e.s.gpuStats.Load(w.Id); ok && w.State == meghav1.WorkerState_WORKER_STATE_READY {
			w.Gpus = mergeGPUStats(w.Gpus, g.([]*meghav1.GPU))
		}
		if t, ok := n.detector.LastHeartbeat(w.Id); ok && w.State == meghav1.WorkerState_WORKER_STATE_READY {
			w.LastHeartbeat = timestamppb.New(t)
		}
	}
	return &meghav1.ListWorkersResponse{Workers: ws, Throughput: n.fsm.State().Throughput()}, nil
}

// Assignments streams a worker's tasks: each assigned task once, and a
// stop for each it was sent that has since been cancelled or lost. The
// stream ends when the worker's epoch is no longer current, or when this
// node stops leading (the worker reconnects to the new leader, which sends
// the live tasks again; the worker ignores tasks it already runs).
func (e *workerEndpoint) Assignments(req *meghav1.AssignmentsRequest, stream grpc.ServerStreamingServer[meghav1.Assignment]) error {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return toStatus(err)
	}
	sent := map[string]bool{}
	for {
		st := n.fsm.State()
		if _, err := st.liveWorker(req.WorkerId, req.Epoch); err != nil {
			return toStatus(err)
		}
		tasks, changed := st.WorkerTasks(req.WorkerId)
		for _, t := range tasks {
			switch {
			case t.WorkerEpoch != req.Epoch:
			case t.State == meghav1.TaskState_TASK_STATE_ASSIGNED && !sent[t.Id]:
				job, _ := st.Job(t.JobId)
				as := &meghav1.Assignment{TaskId: t.Id, JobId: t.JobId, Rank: t.Rank, World: t.World,
					Command: job.GetSpec().GetModel().GetCommand(), Env: job.GetSpec().GetModel().GetEnv()}
				if scheduler.BuiltinTrain(job) {
					as.Spec = job.Spec
				}
				if err := stream.Send(as); err != nil {
					return err
				}
				sent[t.Id] = true
			case sent[t.Id] && (t.State == meghav1.TaskState_TASK_STATE_CANCELLED || t.State == meghav1.TaskState_TASK_STATE_LOST):
				if err := stream.Send(&meghav1.Assignment{TaskId: t.Id, JobId: t.JobId, Stop: true}); err != nil {
					return err
				}
				delete(sent, t.Id)
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
		if !n.IsLeader() {
			return toStatus(n.leaderErr(ErrNotLeader))
		}
	}
}

// ReportProgress records a worker's news about a task.
func (e *workerEndpoint) ReportProgress(ctx context.Context, r *meghav1.ProgressReport) (*meghav1.ProgressAck, error) {
	_, err := e.s.node.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_UpdateTask{UpdateTask: &meghav1.UpdateTaskCommand{
		TaskId: r.TaskId, WorkerId: r.WorkerId, WorkerEpoch: r.Epoch, State: r.State, ExitCode: r.ExitCode,
		Error: r.Error, Progress: r.Progress, At: timestamppb.Now()}}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.ProgressAck{}, nil
}

// mergeGPUStats overlays the latest readings (utilization, temperature,
// health) a worker sent with its heartbeats on the GPUs it registered,
// matched by UUID. Readings live in the leader's memory only.
func mergeGPUStats(registered, latest []*meghav1.GPU) []*meghav1.GPU {
	by := make(map[string]*meghav1.GPU, len(latest))
	for _, g := range latest {
		by[g.Uuid] = g
	}
	for _, g := range registered {
		if l, ok := by[g.Uuid]; ok {
			g.UtilizationPct, g.TemperatureC, g.Healthy, g.HealthReason = l.UtilizationPct, l.TemperatureC, l.Healthy, l.HealthReason
		}
	}
	return registered
}
