package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// ServerConfig configures a coordinator: its Raft node and its gRPC API.
type ServerConfig struct {
	Node NodeConfig
	// GRPCAddr is the address to listen on; port 0 picks one.
	GRPCAddr string
	// GRPCAdvertise is the address clients are pointed at; empty means the
	// bound address.
	GRPCAdvertise string
	Tokens        *Tokens
	// TLSCert and TLSKey, when both set, make the API serve TLS.
	TLSCert, TLSKey string
	// RateLimit is requests per second per token (0: unlimited), with
	// bursts up to RateBurst.
	RateLimit float64
	RateBurst int
	// ShutdownTimeout bounds how long Close lets in-flight calls finish;
	// default 3s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Server is a running coordinator: a Raft node and the gRPC services over it.
type Server struct {
	cfg    ServerConfig
	logger *slog.Logger
	node   *Node
	grpc   *grpc.Server
	lis    net.Listener
	health *health.Server
	addr   string

	serveErr  chan error
	closeOnce sync.Once
}

// NewServer opens the node's data dir, starts Raft and begins serving the
// API. Call Close to stop.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 3 * time.Second
	}
	if cfg.Tokens == nil {
		return nil, errors.New("coordinator: no tokens; pass a tokens file or use EnsureAdminToken")
	}
	s := &Server{cfg: cfg, logger: cfg.Logger.With("component", "server", "node_id", cfg.Node.ID),
		serveErr: make(chan error, 1)}

	var opts []grpc.ServerOption
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("coordinator: TLS certificate: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("coordinator: gRPC listen on %s: %w", cfg.GRPCAddr, err)
	}
	s.lis = lis
	s.addr = lis.Addr().String()
	if cfg.GRPCAdvertise != "" {
		s.addr = cfg.GRPCAdvertise
	}

	nc := cfg.Node
	nc.GRPCAddr = s.addr
	nc.Logger = cfg.Logger
	s.node, err = NewNode(nc)
	if err != nil {
		lis.Close()
		return nil, err
	}

	opts = append(opts, s.interceptors()...)
	opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 10 * time.Second, PermitWithoutStream: true}))
	s.grpc = grpc.NewServer(opts...)
	meghav1.RegisterJobServiceServer(s.grpc, &jobEndpoint{s: s})
	meghav1.RegisterClusterServiceServer(s.grpc, &clusterEndpoint{s: s})
	meghav1.RegisterWorkerServiceServer(s.grpc, &workerEndpoint{})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	go func() { s.serveErr <- s.grpc.Serve(lis) }()
	s.logger.Info("coordinator started", "grpc_addr", s.addr, "raft_addr", s.node.RaftAddr(),
		"data_dir", nc.DataDir)
	return s, nil
}

// interceptors chains, outermost first: recovery, logging, auth, method
// policy, rate limit, validation. Health checks skip auth.
func (s *Server) interceptors() []grpc.ServerOption {
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.logger.Error("panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error; the coordinator logged the details")
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			case codes.OK, codes.Canceled, codes.NotFound, codes.Unavailable:
				return logging.LevelDebug
			case codes.Internal, codes.Unknown, codes.DataLoss:
				return logging.LevelError
			}
			return logging.LevelInfo
		}),
	}
	logger := slogAdapter(s.cfg.Logger.With("component", "grpc"))
	needsAuth := selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
		return cm.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	limiter := newTokenLimiter(s.cfg.RateLimit, s.cfg.RateBurst)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(rec),
			logging.UnaryServerInterceptor(logger, logOpts...),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.cfg.Tokens.authFunc), needsAuth),
			selector.UnaryServerInterceptor(authorizeUnary, needsAuth),
			selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(limiter), needsAuth),
			validateUnary,
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(rec),
			logging.StreamServerInterceptor(logger, logOpts...),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(s.cfg.Tokens.authFunc), needsAuth),
			selector.StreamServerInterceptor(authorizeStream, needsAuth),
			selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(limiter), needsAuth),
			validateStream,
		),
	}
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// Addr is the gRPC address clients reach this node on.
func (s *Server) Addr() string { return s.addr }

// Node returns the server's Raft node.
func (s *Server) Node() *Node { return s.node }

// Join asks an existing cluster, through any of its members, to add this
// node as a voter. It retries until ctx ends; joining twice is harmless.
func (s *Server) Join(ctx context.Context, addrs []string, token string, tlsCA string) error {
	return joinCluster(ctx, joinRequest{
		addrs: addrs, token: token, tlsCA: tlsCA,
		req: &meghav1.AddVoterRequest{Id: s.node.ID(), RaftAddr: s.node.RaftAddr(), GrpcAddr: s.addr},
	}, s.logger)
}

// WaitReady blocks until the node knows a leader and its own address is in
// the replicated member table, so that it can serve and redirect.
func (s *Server) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		_, leader := s.node.raft.LeaderWithID()
		if _, ok := s.node.fsm.State().Member(s.node.ID()); ok && leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coordinator: not ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Wait blocks until the gRPC server stops on its own (an error) or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.serveErr:
		return err
	}
}

// Close stops serving (letting in-flight calls finish for a moment), then
// shuts Raft down and closes the log.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(s.cfg.ShutdownTimeout):
			s.grpc.Stop()
		}
		err = s.node.Close()
	})
	return err
}
