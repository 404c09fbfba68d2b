package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/megha-ml/megha/checkpoint"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/megha-ml/megha/coordinator"
	"github.com/spf13/cobra"
)

type coordinatorFlags struct {
	checkpointStore              string
	id, dataDir                  string
	raftAddr, raftAdvertise      string
	grpcAddr, grpcAdvertise      string
	bootstrap                    bool
	join                         []string
	joinToken                    string
	tokens                       string
	tlsCert, tlsKey, tlsCA       string
	rateLimit                    float64
	rateBurst                    int
	logLevel, logFormat          string
	heartbeat, election, lease   time.Duration
	commit, snapshotInterval     time.Duration
	snapshotThreshold            uint64
	joinTimeout, shutdownTimeout time.Duration
	readyFile                    string
	hbInterval, lostFloor, grace time.Duration
	workerPhi                    float64
	market                       marketFlags
}

func newCoordinatorCmd() *cobra.Command {
	f := &coordinatorFlags{}
	def := coordinator.DefaultRaftConfig()
	det := coordinator.DefaultDetectorConfig()
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator node (Raft-replicated job store and API)",
		Long: `Run a coordinator node.

With no --join, the node forms a one-node cluster on first start (as with
--bootstrap). With --join ADDR it asks an existing cluster to add it as a
voter. A node restarted on the same --data-dir resumes where it stopped.

Without --tokens, the node creates an admin token in DATA_DIR/admin.token on
first start. A cluster of several nodes needs one --tokens file shared by all.`,
		Example: `  megha coordinator
  megha coordinator --id n1 --data-dir /var/lib/megha/n1 --raft-addr 127.0.0.1:7001 --grpc-addr 127.0.0.1:7000 --bootstrap --tokens tokens.txt
  megha coordinator --id n2 --data-dir /var/lib/megha/n2 --raft-addr 127.0.0.1:7011 --grpc-addr 127.0.0.1:7010 --join 127.0.0.1:7000 --tokens tokens.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCoordinator(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "n1", "node ID, unique in the cluster and stable across restarts")
	fl.StringVar(&f.dataDir, "data-dir", "", "where the Raft log and snapshots live (default ./megha-data/ID)")
	fl.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7001", "address to listen on for Raft traffic")
	fl.StringVar(&f.raftAdvertise, "raft-advertise", "", "Raft address peers dial, if not --raft-addr")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7000", "address to serve the gRPC API on")
	fl.StringVar(&f.grpcAdvertise, "grpc-advertise", "", "gRPC address clients are pointed at, if not --grpc-addr")
	fl.BoolVar(&f.bootstrap, "bootstrap", false, "form a new cluster with this node as its only voter (the default without --join)")
	fl.StringSliceVar(&f.join, "join", nil, "gRPC address(es) of an existing cluster to join")
	fl.StringVar(&f.joinToken, "join-token", os.Getenv("MEGHA_TOKEN"), "admin token for --join [$MEGHA_TOKEN]")
	fl.StringVar(&f.tokens, "tokens", "", "`FILE` of bearer tokens, one per line as: TOKEN ROLE [TENANT] (roles admin, tenant, worker)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve the API with TLS using this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key for --tls-cert (PEM)")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "CA that signs the other nodes' certificates (for --join)")
	fl.Float64Var(&f.rateLimit, "rate-limit", 2000, "requests per second allowed per token; 0 disables")
	fl.IntVar(&f.rateBurst, "rate-burst", 4000, "burst size of --rate-limit")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fl.DurationVar(&f.heartbeat, "raft-heartbeat-timeout", def.HeartbeatTimeout, "Raft heartbeat timeout")
	fl.DurationVar(&f.election, "raft-election-timeout", def.ElectionTimeout, "Raft election timeout")
	fl.DurationVar(&f.lease, "raft-leader-lease-timeout", def.LeaderLeaseTimeout, "Raft leader lease timeout (at most the heartbeat timeout)")
	fl.DurationVar(&f.commit, "raft-commit-timeout", def.CommitTimeout, "Raft commit timeout")
	fl.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", def.SnapshotThreshold, "log entries between snapshots")
	fl.DurationVar(&f.snapshotInterval, "snapshot-interval", def.SnapshotInterval, "how often to check whether to snapshot")
	fl.DurationVar(&f.joinTimeout, "join-timeout", time.Minute, "give up joining after this long")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain on SIGTERM")
	fl.StringVar(&f.readyFile, "ready-file", "", "once serving, write {id, grpc_addr, raft_addr, pid} as JSON to this file (for scripts and tests)")
	fl.DurationVar(&f.hbInterval, "heartbeat-interval", time.Second, "how often workers are told to send heartbeats")
	fl.DurationVar(&f.lostFloor, "worker-lost-floor", det.AcceptablePause, "pause a worker may take on top of its usual heartbeat interval before it can be declared lost")
	fl.Float64Var(&f.workerPhi, "worker-phi", det.Threshold, "suspicion level (phi-accrual) at which a silent worker is declared lost")
	fl.DurationVar(&f.grace, "worker-grace", 2*time.Second, "how long a new leader waits, on top of each worker's bound, before declaring workers lost")
	fl.StringVar(&f.checkpointStore, "checkpoint-store", checkpoint.DefaultStoreURL,
		"store for the checkpoints of training jobs whose spec names none: file://DIR (relative to here) or s3://BUCKET/PREFIX?endpoint=HOST:PORT")
	f.market.register(fl)
	return cmd
}

func runCoordinator(cmd *cobra.Command, f *coordinatorFlags) error {
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.bootstrap && len(f.join) > 0 {
		return errors.New("--bootstrap and --join exclude each other: bootstrap the first node, join the others to it")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together; pass both or neither")
	}
	if f.lease > f.heartbeat {
		return fmt.Errorf("--raft-leader-lease-timeout (%v) must not exceed --raft-heartbeat-timeout (%v)", f.lease, f.heartbeat)
	}
	if f.hbInterval <= 0 || f.lostFloor < 0 || f.workerPhi <= 0 || f.grace < 0 {
		return errors.New("--heartbeat-interval and --worker-phi must be positive; --worker-lost-floor and --worker-grace must not be negative")
	}
	if f.dataDir == "" {
		f.dataDir = filepath.Join("megha-data", f.id)
	}
	if f.checkpointStore, err = absFileURL(f.checkpointStore); err != nil {
		return fmt.Errorf("--checkpoint-store: %w", err)
	}
	if !strings.HasPrefix(f.checkpointStore, "file://") && !strings.HasPrefix(f.checkpointStore, "s3://") {
		return fmt.Errorf("--checkpoint-store %q: write file://DIR or s3://BUCKET/PREFIX?endpoint=HOST:PORT", f.checkpointStore)
	}
	if strings.HasPrefix(f.checkpointStore, "file://") {
		// Made here, so that a bad directory is found now, not by the
		// first worker to checkpoint. (An S3 store is opened by the
		// workers, with their credentials.)
		if _, err := checkpoint.Open(cmd.Context(), f.checkpointStore); err != nil {
			return fmt.Errorf("--checkpoint-store: %w", err)
		}
	}
	tokens, tokenNote, err := loadTokens(f)
	if err != nil {
		return err
	}
	if len(f.join) > 0 && f.joinToken == "" {
		return errors.New("--join needs an admin token: pass --join-token or set MEGHA_TOKEN")
	}

	det := coordinator.DefaultDetectorConfig()
	det.Threshold, det.AcceptablePause, det.FirstInterval = f.workerPhi, f.lostFloor, f.hbInterval
	grace := f.grace
	if grace == 0 {
		grace = -1 // WorkerConfig reads 0 as "default"
	}
	if f.market.market == "embedded" && len(f.join) > 0 {
		return errors.New("--market embedded runs a market inside one node; a cluster shares one market: run `megha market serve` and pass --market ADDR (and the same --market-key-file) to every node")
	}
	mkt, err := setupMarket(&f.market, f.dataDir, f.tokens != "", logger)
	if err != nil {
		return err
	}
	defer mkt.close()
	rc := coordinator.DefaultRaftConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = f.heartbeat, f.election, f.lease
	rc.CommitTimeout, rc.SnapshotThreshold, rc.SnapshotInterval = f.commit, f.snapshotThreshold, f.snapshotInterval
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		Node: coordinator.NodeConfig{
			ID: f.id, DataDir: f.dataDir, RaftAddr: f.raftAddr, RaftAdvertise: f.raftAdvertise,
			Bootstrap: len(f.join) == 0, Raft: rc, Market: mkt.cfg, CheckpointStore: f.checkpointStore,
		},
		GRPCAddr: f.grpcAddr, GRPCAdvertise: f.grpcAdvertise, Tokens: tokens,
		TLSCert: f.tlsCert, TLSKey: f.tlsKey, RateLimit: f.rateLimit, RateBurst: f.rateBurst,
		ShutdownTimeout: f.shutdownTimeout, Logger: logger, Services: mkt.services(),
		Workers: coordinator.WorkerConfig{HeartbeatInterval: f.hbInterval, Grace: grace, Detector: det},
	})
	if err != nil {
		return err
	}
	if tokenNote != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), tokenNote)
	}
	if err := mkt.serving(srv.Addr(), filepath.Join(f.dataDir, "admin.token")); err != nil {
		srv.Close()
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(f.join) > 0 && srv.Node().HadState() {
		logger.Info("data dir holds Raft state: rejoining as a member, not asking to join", "join", f.join)
	} else if len(f.join) > 0 {
		jctx, cancel := context.WithTimeout(ctx, f.joinTimeout)
		err := srv.Join(jctx, f.join, f.joinToken, f.tlsCA)
		cancel()
		if err != nil {
			srv.Close()
			return err
		}
	}
	if f.readyFile != "" {
		rctx, cancel := context.WithTimeout(ctx, f.joinTimeout)
		err := srv.WaitReady(rctx)
		cancel()
		if err != nil {
			srv.Close()
			return err
		}
		if err := writeReadyFile(f.readyFile, f.id, srv); err != nil {
			srv.Close()
			return err
		}
	}
	err = srv.Wait(ctx)
	logger.Info("shutting down")
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	return err
}

func loadTokens(f *coordinatorFlags) (*coordinator.Tokens, string, error) {
	if f.tokens != "" {
		t, err := coordinator.LoadTokens(f.tokens)
		return t, "", err
	}
	t, path, err := coordinator.EnsureAdminToken(f.dataDir)
	if err != nil {
		return nil, "", err
	}
	return t, fmt.Sprintf("No --tokens file: the admin token is in %s\n  export MEGHA_TOKEN=$(cat %s)", path, path), nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// writeReadyFile records where the node listens, atomically (write and
// rename), so a script can wait for the file and read real ports.
func writeReadyFile(path, id string, srv *coordinator.Server) error {
	return writeJSONFile(path, map[string]any{"id": id, "grpc_addr": srv.Addr(),
		"raft_addr": srv.Node().RaftAddr(), "pid": os.Getpid()})
}

// writeJSONFile writes v as JSON to path atomically (write, then rename),
// so a script waiting for a --ready-file never reads half of one.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return os.Rename(tmp, path)
}
