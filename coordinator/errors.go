package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/jobspec"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors of the coordinator. FSM business-rule failures are
// returned as values (identical on every replica); endpoints wrap them with
// %w and toStatus maps them to gRPC codes with errors.Is.
var (
	ErrJobNotFound     = errors.New("coordinator: job not found")
	ErrJobExists       = errors.New("coordinator: job already exists")
	ErrJobTerminal     = errors.New("coordinator: job already finished")
	ErrBadTransition   = errors.New("coordinator: invalid job state transition")
	ErrPermission      = errors.New("coordinator: permission denied")
	ErrInvalid         = errors.New("coordinator: invalid argument")
	ErrUnknownCommand  = errors.New("coordinator: unknown command")
	ErrMemberNotFound  = errors.New("coordinator: member not found")
	ErrNotLeader       = errors.New("coordinator: not the leader")
	ErrNoLeader        = errors.New("coordinator: no leader elected")
	ErrLeaderNotReady  = errors.New("coordinator: leader is catching up")
	ErrUnauthenticated = errors.New("coordinator: missing or unknown token")
	ErrRateLimited     = errors.New("coordinator: rate limit exceeded")
	ErrWorkerNotFound  = errors.New("coordinator: worker not found")
	ErrStaleEpoch      = errors.New("coordinator: worker registration is stale")
	ErrUnknownLease    = errors.New("coordinator: unknown lease")
	ErrBudget          = errors.New("coordinator: over the job's budget")
	ErrTaskFinished    = errors.New("coordinator: task already finished")
)

// notLeaderError carries the leader's gRPC address, if known, to toStatus.
type notLeaderError struct {
	leaderAddr string
	cause      error
}

func (e *notLeaderError) Error() string {
	if e.leaderAddr == "" {
		return e.cause.Error()
	}
	return fmt.Sprintf("%v; leader is at %s", e.cause, e.leaderAddr)
}

func (e *notLeaderError) Unwrap() error { return e.cause }

// toStatus maps an error from the domain to a gRPC status. Errors that are
// already statuses pass through.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe jobspec.FieldErrors
	if errors.As(err, &fe) {
		return invalidArgument(fe)
	}
	var nl *notLeaderError
	if errors.As(err, &nl) {
		st := status.New(codes.Unavailable, nl.Error())
		info := &errdetails.ErrorInfo{Reason: client.ReasonNotLeader, Domain: client.ErrorDomain,
			Metadata: map[string]string{client.MetaLeader: nl.leaderAddr}}
		if d, derr := st.WithDetails(info); derr == nil {
			st = d
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, ErrJobNotFound), errors.Is(err, ErrMemberNotFound), errors.Is(err, ErrWorkerNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrJobExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrJobTerminal), errors.Is(err, ErrBadTransition), errors.Is(err, ErrStaleEpoch),
		errors.Is(err, ErrUnknownLease), errors.Is(err, ErrTaskFinished), errors.Is(err, ErrBudget):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrPermission):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrRateLimited):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), errors.Is(err, ErrLeaderNotReady),
		errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// invalidArgument turns field errors into InvalidArgument with a
// google.rpc.BadRequest detail listing every bad field.
func invalidArgument(fe jobspec.FieldErrors) error {
	st := status.New(codes.InvalidArgument, fe.Error())
	br := &errdetails.BadRequest{}
	for _, f := range fe {
		br.FieldViolations = append(br.FieldViolations,
			&errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Msg})
	}
	if d, err := st.WithDetails(br); err == nil {
		st = d
	}
	return st.Err()
}

func isStale(err error) bool {
	return errors.Is(err, ErrStaleEpoch) || errors.Is(err, ErrWorkerNotFound)
}
