package coordinator

import (
	"context"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// workerEndpoint declares WorkerService. The worker agent that serves it
// arrives with the worker issue; until then every call says so plainly.
type workerEndpoint struct {
	meghav1.UnimplementedWorkerServiceServer
}

var errNoWorkerAPI = status.Error(codes.Unimplemented,
	"the worker API is not served by this coordinator version yet")

func (workerEndpoint) Register(context.Context, *meghav1.RegisterWorkerRequest) (*meghav1.RegisterWorkerResponse, error) {
	return nil, errNoWorkerAPI
}

func (workerEndpoint) Heartbeat(grpc.BidiStreamingServer[meghav1.HeartbeatRequest, meghav1.HeartbeatResponse]) error {
	return errNoWorkerAPI
}

func (workerEndpoint) Assignments(*meghav1.AssignmentsRequest, grpc.ServerStreamingServer[meghav1.Assignment]) error {
	return errNoWorkerAPI
}

func (workerEndpoint) ReportProgress(context.Context, *meghav1.ProgressReport) (*meghav1.ProgressAck, error) {
	return nil, errNoWorkerAPI
}
