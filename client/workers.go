package client

import (
	"context"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RegisterWorker registers a worker agent with the leader.
func (c *Client) RegisterWorker(ctx context.Context, req *meghav1.RegisterWorkerRequest) (*meghav1.RegisterWorkerResponse, error) {
	var resp *meghav1.RegisterWorkerResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewWorkerServiceClient(cc).Register(ctx, req)
		return err
	})
	return resp, err
}

// LeaveWorker tells the coordinator a worker is shutting down on purpose.
func (c *Client) LeaveWorker(ctx context.Context, req *meghav1.LeaveRequest) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := meghav1.NewWorkerServiceClient(cc).Leave(ctx, req)
		return err
	})
}

// ListWorkers lists workers and the measured throughput per GPU model.
func (c *Client) ListWorkers(ctx context.Context, req *meghav1.ListWorkersRequest) (*meghav1.ListWorkersResponse, error) {
	var resp *meghav1.ListWorkersResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = meghav1.NewWorkerServiceClient(cc).ListWorkers(ctx, req)
		return err
	})
	return resp, err
}

// HeartbeatStream is an open heartbeat stream to the leader.
type HeartbeatStream = grpc.BidiStreamingClient[meghav1.HeartbeatRequest, meghav1.HeartbeatResponse]

// OpenHeartbeat opens a heartbeat stream on the leader, retrying until
// ctx ends; see OpenHeartbeatWithin.
func (c *Client) OpenHeartbeat(ctx context.Context, first *meghav1.HeartbeatRequest) (HeartbeatStream, *meghav1.HeartbeatResponse, context.CancelFunc, error) {
	return c.OpenHeartbeatWithin(ctx, 0, first)
}

// OpenHeartbeatWithin opens a heartbeat stream on the leader, following
// leader hints and retrying for up to openTimeout (0: until ctx ends). The first heartbeat is sent and
// answered before it returns, so a follower's refusal is seen here; a node
// that does not answer it within AttemptTimeout is left for the next. The
// stream lives until ctx ends or the returned cancel is called.
func (c *Client) OpenHeartbeatWithin(ctx context.Context, openTimeout time.Duration, first *meghav1.HeartbeatRequest) (HeartbeatStream, *meghav1.HeartbeatResponse, context.CancelFunc, error) {
	var (
		stream HeartbeatStream
		resp   *meghav1.HeartbeatResponse
		cancel context.CancelFunc
	)
	octx, ocancel := context.WithCancel(ctx)
	if openTimeout > 0 {
		octx, ocancel = context.WithTimeout(ctx, openTimeout)
	}
	defer ocancel()
	err := c.stream(octx, func(_ context.Context, cc *grpc.ClientConn) error {
		sctx, scancel := context.WithCancel(ctx)
		t := time.AfterFunc(c.cfg.AttemptTimeout, scancel)
		s, r, err := firstBeat(sctx, cc, first)
		if !t.Stop() || err != nil {
			scancel()
			if err == nil || (sctx.Err() != nil && ctx.Err() == nil) {
				return status.Error(codes.Unavailable, "heartbeat: no answer from "+cc.Target())
			}
			return err
		}
		stream, resp, cancel = s, r, scancel
		return nil
	})
	return stream, resp, cancel, err
}

func firstBeat(ctx context.Context, cc *grpc.ClientConn, first *meghav1.HeartbeatRequest) (HeartbeatStream, *meghav1.HeartbeatResponse, error) {
	s, err := meghav1.NewWorkerServiceClient(cc).Heartbeat(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := s.Send(first); err != nil {
		return nil, nil, recvErr(s, err)
	}
	r, err := s.Recv()
	if err != nil {
		return nil, nil, err
	}
	return s, r, nil
}

// recvErr returns the stream's status (which carries NOT_LEADER hints)
// rather than the io.EOF a failed Send reports.
func recvErr(s HeartbeatStream, sendErr error) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	return sendErr
}

// AssignmentStream is an open stream of a worker's assignments.
type AssignmentStream = grpc.ServerStreamingClient[meghav1.Assignment]

// Assignments opens a worker's assignment stream on the leader. It lives
// until ctx ends.
func (c *Client) Assignments(ctx context.Context, req *meghav1.AssignmentsRequest) (AssignmentStream, error) {
	var stream AssignmentStream
	err := c.stream(ctx, func(_ context.Context, cc *grpc.ClientConn) error {
		s, err := meghav1.NewWorkerServiceClient(cc).Assignments(ctx, req)
		if err != nil {
			return err
		}
		// Surface a follower's refusal now: headers arrive with the first
		// message or the status.
		if _, err := s.Header(); err != nil {
			return err
		}
		stream = s
		return nil
	})
	return stream, err
}

// ReportProgress sends a worker's news about a task.
func (c *Client) ReportProgress(ctx context.Context, r *meghav1.ProgressReport) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := meghav1.NewWorkerServiceClient(cc).ReportProgress(ctx, r)
		return err
	})
}

// JoinRound says a task is ready for a sync round and returns the round's
// plan; Ready is false if the coordinator has not fixed it within the
// request's wait (call again). The wait is capped below the per-attempt
// timeout.
func (c *Client) JoinRound(ctx context.Context, r *meghav1.JoinRoundRequest) (*meghav1.RoundPlan, error) {
	var out *meghav1.RoundPlan
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		out, err = meghav1.NewWorkerServiceClient(cc).JoinRound(ctx, r)
		return err
	})
	return out, err
}

// FinishRound reports a member's outcome of a round attempt and returns
// the coordinator's decision (PENDING: call again). Safe to retry.
func (c *Client) FinishRound(ctx context.Context, r *meghav1.FinishRoundRequest) (*meghav1.RoundOutcome, error) {
	var out *meghav1.RoundOutcome
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		out, err = meghav1.NewWorkerServiceClient(cc).FinishRound(ctx, r)
		return err
	})
	return out, err
}

// StartTraining asks where a built-in training task begins: round 1, or
// after restoring a checkpoint. It long-polls for up to r.WaitMs.
func (c *Client) StartTraining(ctx context.Context, r *meghav1.StartTrainingRequest) (*meghav1.TrainingStart, error) {
	var out *meghav1.TrainingStart
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		out, err = meghav1.NewWorkerServiceClient(cc).StartTraining(ctx, r)
		return err
	})
	return out, err
}

// CommitCheckpoint reports a checkpoint whose manifest is written.
func (c *Client) CommitCheckpoint(ctx context.Context, r *meghav1.CommitCheckpointRequest) (*meghav1.CommitCheckpointResponse, error) {
	var out *meghav1.CommitCheckpointResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		out, err = meghav1.NewWorkerServiceClient(cc).CommitCheckpoint(ctx, r)
		return err
	})
	return out, err
}
