package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// RaftConfig holds the Raft timing knobs. The defaults fail over in well
// under a second on a LAN; raise them for nodes far apart.
type RaftConfig struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	SnapshotsRetained  int
}

// DefaultRaftConfig returns timeouts tuned for fast failover.
func DefaultRaftConfig() RaftConfig {
	return RaftConfig{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		SnapshotsRetained:  2,
	}
}

// NodeConfig configures one coordinator Raft node.
type NodeConfig struct {
	ID       string // stable node ID, e.g. "n1"
	DataDir  string // raft log (wal/), snapshots (snapshots/)
	RaftAddr string // host:port to bind for Raft traffic; port 0 picks one
	// RaftAdvertise is the address peers dial; empty means RaftAddr as bound.
	RaftAdvertise string
	GRPCAddr      string // host:port clients reach this node's API on
	Bootstrap     bool   // form a new one-node cluster if there is no state yet
	Raft          RaftConfig
	Workers       WorkerConfig
	// Market, when set, is where the leader leases workers for jobs.
	Market MarketConfig
	// CheckpointStore is the store URL given to training jobs that name
	// none (checkpoint.store); empty means file://DATA_DIR/checkpoints.
	CheckpointStore string
	Logger          *slog.Logger
}

// Node is one member of the coordinator's Raft cluster: the log on disk,
// the FSM, and the leader-only duties that go with winning an election.
type Node struct {
	cfg    NodeConfig
	logger *slog.Logger

	raft *raft.Raft
	fsm  *FSM
	// detector holds worker heartbeats; only the leader's is in use.
	detector *Detector
	// rounds is the leader's memory of sync rounds in progress.
	rounds *roundBook
	wal    *wal.WAL
	meta   *metadb.BoltMetaDB
	trans  *raft.NetworkTransport

	// ready is true on the leader once it has applied everything committed
	// before its term (a barrier), so its local reads are fresh.
	ready    atomic.Bool
	notifyCh chan bool
	hadState bool

	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool
}

// NewNode opens (or creates) the node's data directory and starts Raft.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return nil, errors.New("coordinator: node needs an ID, a data dir and a Raft address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Raft == (RaftConfig{}) {
		cfg.Raft = DefaultRaftConfig()
	}
	cfg.Workers = cfg.Workers.withDefaults()
	n := &Node{
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "raft", "node_id", cfg.ID),
		fsm:      NewFSM(cfg.Logger),
		detector: NewDetector(cfg.Workers.Detector),
		rounds:   newRoundBook(),
		notifyCh: make(chan bool, 16),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := n.open(); err != nil {
		n.closeStores()
		return nil, err
	}
	go n.monitorLeadership()
	return n, nil
}

func (n *Node) open() error {
	cfg := n.cfg
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "wal"), 0o700); err != nil {
		return fmt.Errorf("coordinator: data dir: %w", err)
	}
	hlog := raftLogger(cfg.Logger)

	var err error
	// raft-wal v0.4.0's Close leaves its bolt meta store open (and locked),
	// so the node owns the meta store and closes it itself.
	n.meta = &metadb.BoltMetaDB{}
	n.wal, err = wal.Open(filepath.Join(cfg.DataDir, "wal"), wal.WithMetaStore(n.meta), wal.WithLogger(hlog.Named("wal")))
	if err != nil {
		return fmt.Errorf("coordinator: open raft log in %s: %w", cfg.DataDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.Raft.SnapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("coordinator: snapshot store: %w", err)
	}
	layer, err := newStreamLayer(cfg.RaftAddr, cfg.RaftAdvertise)
	if err != nil {
		return err
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 5, Timeout: 5 * time.Second, Logger: hlog,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Raft.CommitTimeout
	rc.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	rc.SnapshotInterval = cfg.Raft.SnapshotInterval
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.NotifyCh = n.notifyCh
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("coordinator: raft config: %w", err)
	}

	existing, err := raft.HasExistingState(n.wal, n.wal, snaps)
	if err != nil {
		return fmt.Errorf("coordinator: read raft state: %w", err)
	}
	n.hadState = existing
	n.raft, err = raft.NewRaft(rc, n.fsm, n.wal, n.wal, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("coordinator: start raft: %w", err)
	}
	if cfg.Bootstrap && !existing {
		f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: n.trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("coordinator: bootstrap: %w", err)
		}
	}
	return nil
}

// HadState reports whether the data dir held Raft state when the node
// started: a restarted member, which needs no bootstrap and no join.
func (n *Node) HadState() bool { return n.hadState }

// FSM returns the node's state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// Raft returns the underlying hashicorp/raft instance.
func (n *Node) Raft() *raft.Raft { return n.raft }

// ID is the node's Raft server ID.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr is the address Raft listens on (resolved, with the real port).
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node is the leader and has caught up.
func (n *Node) IsLeader() bool {
	return n.raft.State() == raft.Leader && n.ready.Load()
}

// Apply proposes a command and waits for it to be applied on this node.
// The context bounds the wait for the log to accept it.
func (n *Node) Apply(ctx context.Context, c *meghav1.Command) (*ApplyResult, error) {
	if err := n.checkLeader(false); err != nil {
		return nil, err
	}
	b, err := EncodeCommand(c)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encode command: %w", err)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return nil, n.leaderErr(err)
	}
	switch r := f.Response().(type) {
	case error:
		return nil, r
	case *ApplyResult:
		return r, nil
	}
	return &ApplyResult{}, nil
}

// checkLeader returns nil when this node may serve a write or a fresh
// read; otherwise an error that names the leader. With verify it also
// confirms with a quorum that it is still the leader.
func (n *Node) checkLeader(verify bool) error {
	if n.raft.State() != raft.Leader {
		return n.leaderErr(ErrNotLeader)
	}
	if !n.ready.Load() {
		return ErrLeaderNotReady
	}
	if verify {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return n.leaderErr(err)
		}
	}
	return nil
}

// leaderErr wraps err with the current leader's gRPC address, so that the
// client can retry there.
func (n *Node) leaderErr(err error) error {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return &notLeaderError{cause: fmt.Errorf("%w (%v)", ErrNoLeader, err)}
	}
	addr := ""
	if m, ok := n.fsm.State().Member(string(id)); ok {
		addr = m.GrpcAddr
	}
	if string(id) == n.cfg.ID {
		// We are the leader but the entry was not committed in our term
		// (leadership lost mid-apply): the outcome is unknown, so the
		// client retries with the same request ID.
		addr = ""
	}
	return &notLeaderError{leaderAddr: addr, cause: err}
}

// Close stops the leader duties and Raft and closes the log.
func (n *Node) Close() error {
	n.closeMu.Lock()
	if n.closed {
		n.closeMu.Unlock()
		return nil
	}
	n.closed = true
	n.closeMu.Unlock()
	close(n.stop)
	<-n.done
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	if cerr := n.closeStores(); err == nil {
		err = cerr
	}
	return err
}

func (n *Node) closeStores() error {
	var err error
	if n.trans != nil {
		err = n.trans.Close()
	}
	if n.wal != nil {
		if cerr := n.wal.Close(); err == nil {
			err = cerr
		}
	}
	if n.meta != nil {
		if cerr := n.meta.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
