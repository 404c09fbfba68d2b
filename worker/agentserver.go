package worker

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"os"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/worker/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// agentServer serves AgentService (task logs) to the coordinator, which
// authenticates with the key this agent gave at registration.
type agentServer struct {
	meghav1.UnimplementedAgentServiceServer
	a    *Agent
	srv  *grpc.Server
	addr string
}

func newAgentServer(a *Agent, listen string) (*agentServer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	s := &agentServer{a: a, addr: ln.Addr().String()}
	s.srv = grpc.NewServer(grpc.StreamInterceptor(auth.StreamServerInterceptor(s.authenticate)))
	meghav1.RegisterAgentServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *agentServer) authenticate(ctx context.Context) (context.Context, error) {
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil || subtle.ConstantTimeCompare([]byte(tok), []byte(s.a.key)) != 1 {
		return nil, status.Error(codes.Unauthenticated, "worker: only the coordinator this worker registered with may read its task logs")
	}
	return ctx, nil
}

func (s *agentServer) close() { s.srv.Stop() }

// TaskLogs streams one task's stdout or stderr, from the last tail lines,
// following new output while asked to.
func (s *agentServer) TaskLogs(req *meghav1.AgentLogsRequest, stream grpc.ServerStreamingServer[meghav1.LogChunk]) error {
	which := req.Stream
	if which == "" {
		which = runtime.Stdout
	}
	r, err := runtime.OpenLogs(s.a.taskDir(req.TaskId), which, req.Follow)
	if errors.Is(err, os.ErrNotExist) {
		return status.Errorf(codes.NotFound, "worker %s has no logs for task %s", s.a.ID(), req.TaskId)
	}
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer r.Close()
	if req.Tail > 0 {
		if err := r.Tail(int(req.Tail)); err != nil {
			return status.Error(codes.Internal, err.Error())
		}
	}
	for {
		line, err := r.ReadLine(stream.Context())
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if stream.Context().Err() != nil {
				return nil
			}
			return status.Error(codes.Internal, err.Error())
		}
		if err := stream.Send(&meghav1.LogChunk{TaskId: req.TaskId, Data: []byte(line + "\n")}); err != nil {
			return err
		}
	}
}
