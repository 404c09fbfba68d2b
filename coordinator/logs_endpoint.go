package coordinator

import (
	"errors"
	"fmt"
	"io"

	"context"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func (e *jobEndpoint) ListTasks(ctx context.Context, req *meghav1.ListTasksRequest) (*meghav1.ListTasksResponse, error) {
	if _, err := e.visibleJob(ctx, req.JobId); err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.ListTasksResponse{Tasks: e.s.node.fsm.State().Tasks(req.JobId)}, nil
}

// ListLeases returns the market leases held for a job; an admin may leave
// job_id empty to see every job's.
func (e *jobEndpoint) ListLeases(ctx context.Context, req *meghav1.ListLeasesRequest) (*meghav1.ListLeasesResponse, error) {
	if req.JobId == "" {
		id, _ := IdentityFrom(ctx)
		if id.Role != RoleAdmin {
			return nil, toStatus(fmt.Errorf("%w: job_id is required (only admins list every job's leases)", ErrInvalid))
		}
		return &meghav1.ListLeasesResponse{Leases: e.s.node.fsm.State().Leases("")}, nil
	}
	if _, err := e.visibleJob(ctx, req.JobId); err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.ListLeasesResponse{Leases: e.s.node.fsm.State().Leases(req.JobId)}, nil
}

// Logs relays a task's output from the worker that runs (or ran) it: the
// newest attempt of the requested rank. The coordinator calls the worker's
// AgentService with the key the worker gave at registration; users never
// talk to workers directly.
func (e *jobEndpoint) Logs(req *meghav1.TaskLogsRequest, stream grpc.ServerStreamingServer[meghav1.LogChunk]) error {
	ctx := stream.Context()
	if _, err := e.visibleJob(ctx, req.JobId); err != nil {
		return toStatus(err)
	}
	st := e.s.node.fsm.State()
	var task *meghav1.Task
	for _, t := range st.Tasks(req.JobId) {
		if t.Rank == req.Rank {
			task = t // sorted by attempt: the last one wins
		}
	}
	if task == nil {
		return status.Errorf(codes.NotFound, "job %s has no task for rank %d yet; `megha status %s` shows whether it has been placed", req.JobId, req.Rank, req.JobId)
	}
	w, ok := st.Worker(task.WorkerId)
	if !ok || w.AdvertiseAddr == "" {
		return status.Errorf(codes.FailedPrecondition, "worker %s of task %s has no address for logs (started without --advertise)", task.WorkerId, task.Id)
	}
	cc, err := grpc.NewClient(w.AdvertiseAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return toStatus(err)
	}
	defer cc.Close()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+w.AgentKey)
	src, err := meghav1.NewAgentServiceClient(cc).TaskLogs(actx, &meghav1.AgentLogsRequest{
		TaskId: task.Id, Stream: req.Stream, Follow: req.Follow, Tail: req.Tail})
	if err != nil {
		return workerErr(task.WorkerId, w.AdvertiseAddr, err)
	}
	for {
		chunk, err := src.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return workerErr(task.WorkerId, w.AdvertiseAddr, err)
		}
		chunk.Rank = task.Rank
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
}

// workerErr reports a failure reaching a worker. An unreachable worker is
// FailedPrecondition, not Unavailable: the coordinator is fine, and clients
// must not retry the call elsewhere as if it were not.
func workerErr(workerID, addr string, err error) error {
	code := status.Code(err)
	if code == codes.Unavailable || code == codes.Unknown {
		code = codes.FailedPrecondition
	}
	return status.Errorf(code, "logs from worker %s at %s: %s", workerID, addr, status.Convert(err).Message())
}
