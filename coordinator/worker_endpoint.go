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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
		// Leases arrive with the market; until then no lease is known.
		return nil, toStatus(fmt.Errorf("%w: %q; start the worker without --lease, or with the ID of a lease the coordinator holds", ErrUnknownLease, req.LeaseId))
	}
	id, _ := IdentityFrom(ctx)
	wid := req.WorkerId
	if wid == "" {
		wid = newWorkerID()
	}
	w := &meghav1.Worker{
		Id: wid, LeaseId: req.LeaseId, Host: req.Host, AdvertiseAddr: req.AdvertiseAddr,
		Version: req.Version, Gpus: req.Gpus, Throughput: req.Throughput, Tenant: id.Tenant,
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
		if !n.detector.Heartbeat(hb.WorkerId, hb.Epoch, time.Now()) {
			resp.Reregister, resp.Reason = true, e.staleReason(hb.WorkerId, hb.Epoch)
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
	return "not tracked by this leader yet"
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
		if t, ok := n.detector.LastHeartbeat(w.Id); ok && w.State == meghav1.WorkerState_WORKER_STATE_READY {
			w.LastHeartbeat = timestamppb.New(t)
		}
	}
	return &meghav1.ListWorkersResponse{Workers: ws, Throughput: n.fsm.State().Throughput()}, nil
}

// Assignments will stream tasks once the scheduler places them.
func (e *workerEndpoint) Assignments(*meghav1.AssignmentsRequest, grpc.ServerStreamingServer[meghav1.Assignment]) error {
	return status.Error(codes.Unimplemented, "task assignment arrives with the scheduler")
}
