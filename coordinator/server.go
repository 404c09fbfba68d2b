package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
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
	"google.golang.org/grpc/peer"
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
	Workers   WorkerConfig
	// ShutdownTimeout bounds how long Close lets in-flight calls finish;
	// default 3s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Services, when set, registers more services on the API server (the
	// embedded market's, for operators); their methods are admin-only
	// unless policy.go says otherwise.
	Services func(*grpc.Server)
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

	batcher   *submitBatcher
	stopBatch chan struct{}
	// gpuStats holds the latest GPU readings per worker ID, from heartbeats
	// (leader memory; []*meghav1.GPU).
	gpuStats sync.Map

	serveErr  chan error
	closeOnce sync.Once
}

// NewServer opens the node's data dir, starts Raft and begins serving the
// API. Call Close to stop.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Workers = cfg.Workers.withDefaults()
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
	nc.Workers = cfg.Workers
	s.node, err = NewNode(nc)
	if err != nil {
		lis.Close()
		return nil, err
	}

	s.stopBatch = make(chan struct{})
	s.batcher = newSubmitBatcher(s.node, s.stopBatch)

	opts = append(opts, s.interceptors()...)
	opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 10 * time.Second, PermitWithoutStream: true}))
	s.grpc = grpc.NewServer(opts...)
	meghav1.RegisterJobServiceServer(s.grpc, &jobEndpoint{s: s})
	meghav1.RegisterClusterServiceServer(s.grpc, &clusterEndpoint{s: s})
	meghav1.RegisterWorkerServiceServer(s.grpc, &workerEndpoint{s: s})
	if cfg.Services != nil {
		cfg.Services(s.grpc)
	}
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
	logUnary, logStream := s.callLoggers()
	needsAuth := selector.MatchFunc(func(_ context.Context, cm interceptors.CallMeta) bool {
		return cm.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	limiter := newTokenLimiter(s.cfg.RateLimit, s.cfg.RateBurst)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(rec),
			logUnary,
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.cfg.Tokens.authFunc), needsAuth),
			selector.UnaryServerInterceptor(authorizeUnary, needsAuth),
			selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(limiter), needsAuth),
			validateUnary,
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(rec),
			logStream,
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(s.cfg.Tokens.authFunc), needsAuth),
			selector.StreamServerInterceptor(authorizeStream, needsAuth),
			selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(limiter), needsAuth),
			validateStream,
		),
		// Reuse goroutines for calls instead of growing a fresh stack
		// through the interceptor chain on every RPC.
		grpc.NumStreamWorkers(uint32(runtime.NumCPU())),
	}
}

// callLoggers returns the call-logging interceptors. At debug level every
// call is logged by go-grpc-middleware's logging interceptor, with all its
// fields. Above debug only failed calls are logged, by a lean interceptor
// that costs a successful call nothing: the middleware builds its fields
// for every call before the level filter drops them, which measurably cut
// submit throughput.
func (s *Server) callLoggers() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	l := s.cfg.Logger.With("component", "grpc")
	if l.Enabled(context.Background(), slog.LevelDebug) {
		opts := []logging.Option{
			logging.WithLogOnEvents(logging.FinishCall),
			logging.WithLevels(codeLevel),
		}
		return logging.UnaryServerInterceptor(slogAdapter(l), opts...),
			logging.StreamServerInterceptor(slogAdapter(l), opts...)
	}
	logFailed := func(ctx context.Context, method string, start time.Time, err error) {
		code := status.Code(err)
		lvl := slog.Level(codeLevel(code))
		if !l.Enabled(ctx, lvl) {
			return
		}
		addr := ""
		if p, ok := peer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
		l.Log(ctx, lvl, "call failed", "grpc.method", method, "grpc.code", code.String(),
			"error", status.Convert(err).Message(), "peer", addr,
			"duration_ms", time.Since(start).Milliseconds())
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		if err != nil {
			logFailed(ctx, info.FullMethod, start, err)
		}
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		if err != nil {
			logFailed(ss.Context(), info.FullMethod, start, err)
		}
		return err
	}
	return unary, stream
}

// codeLevel is the log level of a finished call: expected outcomes (and
// redirects to the leader) at debug, client mistakes at info, server faults
// at error.
func codeLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.NotFound, codes.Unavailable:
		return logging.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return logging.LevelError
	}
	return logging.LevelInfo
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
		close(s.stopBatch)
		err = s.node.Close()
	})
	return err
}
