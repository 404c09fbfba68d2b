//go:build unix

// Package testcluster runs a coordinator cluster of real `megha
// coordinator` processes on loopback, for tests and benchmarks that need
// what an in-process cluster cannot give: SIGKILL (no deferred cleanup, no
// graceful close of the log), SIGSTOP (a node that holds its sockets open
// but answers nothing), and restarts from the data dir left behind.
//
//	c, err := testcluster.Start(testcluster.Options{Nodes: 3})
//	defer c.Close()
//	leader, err := c.Leader(ctx)
//	c.Kill(leader)
//	c.Restart(leader) // same ID, data dir and ports
//
// Every node gets its own directory under one temp dir: data/ (the Raft
// log and snapshots), node.log (its stdout and stderr, appended across
// restarts) and ready.json. Ports are chosen by the OS on first start and
// reused on restarts. Close removes the temp dir unless $KEEP is set.
package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Tokens every cluster accepts.
const (
	AdminToken  = "testcluster-admin-token-0123456789"
	TenantToken = "testcluster-tenant-token-0123456789"
	Tenant      = "acme" // the tenant of TenantToken
	WorkerToken = "testcluster-worker-token-0123456789"
)

// pollEvery is how often conditions are re-checked.
const pollEvery = 10 * time.Millisecond

// Options configures Start. The zero value starts 3 nodes.
type Options struct {
	// Nodes is the cluster size; default 3.
	Nodes int
	// Bin is the megha binary; empty builds one with Build("").
	Bin string
	// Dir is where the cluster's temp dir is made; default os.TempDir().
	Dir string
	// Args are extra flags for every node, e.g. --raft-heartbeat-timeout.
	Args []string
	// RateLimit is --rate-limit; 0 (the default here) disables it.
	RateLimit float64
	// LogLevel is --log-level; default info.
	LogLevel string
	// Timeout bounds starting the cluster, and each Restart; default 60s.
	Timeout time.Duration
	// Logf, if set, receives progress lines (t.Logf, say).
	Logf func(format string, args ...any)
}

// Cluster is a set of coordinator processes.
type Cluster struct {
	Dir        string
	Bin        string
	TokensFile string
	Nodes      []*Node

	opts      Options
	closeOnce sync.Once
}

// Node is one coordinator process slot: a stable ID, data dir and ports,
// and the process currently running there, if any.
type Node struct {
	ID       string
	Dir      string // the node's own dir
	DataDir  string
	LogPath  string
	GRPCAddr string // fixed after the first start
	RaftAddr string

	mu      sync.Mutex
	proc    *proc
	stopped bool
	conn    *grpc.ClientConn
}

type proc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
	err    error // valid once exited is closed
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Running reports whether the node's process is alive (possibly stopped).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && n.proc.running()
}

// Stopped reports whether the node is SIGSTOPped.
func (n *Node) Stopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// PID is the node's current process ID, 0 if none.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.pid
}

func (n *Node) String() string { return n.ID }

// Start builds (if needed) and starts opts.Nodes coordinator processes: n1
// bootstraps, the others join it, and Start returns once every node is
// serving, all agree on one leader and the leader accepts writes.
func Start(opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bin := opts.Bin
	if bin == "" {
		var err error
		if bin, err = Build(""); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(opts.Dir, "megha-cluster-")
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	c := &Cluster{Dir: dir, Bin: bin, TokensFile: filepath.Join(dir, "tokens"), opts: opts}
	tokens := fmt.Sprintf("%s admin\n%s tenant %s\n%s worker\n", AdminToken, TenantToken, Tenant, WorkerToken)
	if err := os.WriteFile(c.TokensFile, []byte(tokens), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	for i := 1; i <= opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		nd := filepath.Join(dir, id)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		c.Nodes = append(c.Nodes, &Node{ID: id, Dir: nd, DataDir: filepath.Join(nd, "data"),
			LogPath: filepath.Join(nd, "node.log")})
	}

	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		err = c.withLogs(err)
		c.Close()
		return nil, err
	}
	opts.Logf("testcluster: %d nodes up in %s: %s", opts.Nodes, dir, strings.Join(c.Addrs(), " "))
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	first := c.Nodes[0]
	if err := c.launch(ctx, first, "127.0.0.1:0", "127.0.0.1:0", nil); err != nil {
		return err
	}
	join := []string{"--join", first.GRPCAddr, "--join-token", AdminToken}
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes[1:] {
		go func() { errs <- c.launch(ctx, n, "127.0.0.1:0", "127.0.0.1:0", join) }()
	}
	var all []error
	for range c.Nodes[1:] {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	return c.WaitStable(ctx)
}

// launch starts the node's process and waits for its ready file.
func (c *Cluster) launch(ctx context.Context, n *Node, raftAddr, grpcAddr string, extra []string) error {
	ready := filepath.Join(n.Dir, "ready.json")
	_ = os.Remove(ready)
	args := []string{"coordinator", "--id", n.ID, "--data-dir", n.DataDir,
		"--raft-addr", raftAddr, "--grpc-addr", grpcAddr, "--tokens", c.TokensFile,
		"--ready-file", ready, "--rate-limit", strconv.FormatFloat(c.opts.RateLimit, 'f', -1, 64),
		"--log-level", c.opts.LogLevel,
		// One checkpoint store for the whole cluster, inside its dir.
		"--checkpoint-store", "file://" + filepath.ToSlash(c.CheckpointDir())}
	args = append(args, c.opts.Args...)
	args = append(args, extra...)

	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testcluster: %s log: %w", n.ID, err)
	}
	fmt.Fprintf(logf, "=== testcluster %s: %s %s\n", time.Now().Format(time.RFC3339Nano), c.Bin, strings.Join(args, " "))
	cmd := exec.Command(c.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("testcluster: start %s: %w", n.ID, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	n.mu.Lock()
	n.proc, n.stopped = p, false
	n.mu.Unlock()

	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			var r struct {
				ID       string `json:"id"`
				GRPCAddr string `json:"grpc_addr"`
				RaftAddr string `json:"raft_addr"`
				PID      int    `json:"pid"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("testcluster: %s ready file %q: %w", n.ID, b, err)
			}
			if r.PID != p.pid {
				return fmt.Errorf("testcluster: %s ready file names pid %d, started %d", n.ID, r.PID, p.pid)
			}
			n.mu.Lock()
			n.GRPCAddr, n.RaftAddr = r.GRPCAddr, r.RaftAddr
			n.mu.Unlock()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("testcluster: %s exited before it was ready: %v", n.ID, p.err)
		case <-ctx.Done():
			return fmt.Errorf("testcluster: %s not ready: %w", n.ID, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// Addrs returns every node's gRPC address, in node order.
func (c *Cluster) Addrs() []string {
	out := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, n.GRPCAddr)
	}
	return out
}

// AddrsExcept returns the gRPC addresses of every node but the ones given.
func (c *Cluster) AddrsExcept(skip ...*Node) []string {
	var out []string
outer:
	for _, n := range c.Nodes {
		for _, s := range skip {
			if n == s {
				continue outer
			}
		}
		out = append(out, n.GRPCAddr)
	}
	return out
}

// Node returns the node with the given ID, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Kill SIGKILLs the node's process and waits for it to exit. Killing a
// node that is not running does nothing.
func (c *Cluster) Kill(n *Node) error {
	n.mu.Lock()
	p := n.proc
	n.stopped = false
	n.mu.Unlock()
	if p == nil || !p.running() {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("testcluster: kill %s: %w", n.ID, err)
	}
	select {
	case <-p.exited:
		c.opts.Logf("testcluster: killed %s (pid %d)", n.ID, p.pid)
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testcluster: %s (pid %d) did not exit within 10s of SIGKILL", n.ID, p.pid)
	}
}

// Stop SIGSTOPs the node and waits until the kernel reports it stopped.
func (c *Cluster) Stop(n *Node) error { return c.signalState(n, syscall.SIGSTOP, true) }

// Cont SIGCONTs a stopped node and waits until it runs again.
func (c *Cluster) Cont(n *Node) error { return c.signalState(n, syscall.SIGCONT, false) }

func (c *Cluster) signalState(n *Node, sig syscall.Signal, stop bool) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || !p.running() {
		return fmt.Errorf("testcluster: %s is not running", n.ID)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("testcluster: %v %s: %w", sig, n.ID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := procState(p.pid)
		if !ok || (st == 'T') == stop {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: %s state %c 10s after %v", n.ID, st, sig)
		}
		time.Sleep(pollEvery)
	}
	n.mu.Lock()
	n.stopped = stop
	n.mu.Unlock()
	c.opts.Logf("testcluster: %v %s (pid %d)", sig, n.ID, p.pid)
	return nil
}

// Restart starts the node again from its data dir, on the same Raft and
// gRPC ports, without --join (it has state; it rejoins by itself). A
// running node is killed first. It returns once the node serves its API;
// use WaitCaughtUp to wait for it to rejoin. A port briefly held by
// someone else is retried.
func (c *Cluster) Restart(n *Node) error {
	if err := c.Kill(n); err != nil {
		return err
	}
	n.mu.Lock()
	if n.conn != nil {
		n.conn.Close() // its reconnect backoff may have grown while the node was down
		n.conn = nil
	}
	raftAddr, grpcAddr := n.RaftAddr, n.GRPCAddr
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		before := fileSize(n.LogPath)
		err := c.launch(ctx, n, raftAddr, grpcAddr, nil)
		if err == nil {
			c.opts.Logf("testcluster: restarted %s (pid %d)", n.ID, n.PID())
			return nil
		}
		_ = c.Kill(n)
		if attempt < 20 && ctx.Err() == nil && strings.Contains(readFrom(n.LogPath, before), "address already in use") {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return c.withLogs(err)
	}
}

// Close SIGKILLs every node and removes the cluster's dir, unless $KEEP is
// set (then it says where the dir is).
func (c *Cluster) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		for _, n := range c.Nodes {
			errs = append(errs, c.Kill(n))
			n.mu.Lock()
			if n.conn != nil {
				n.conn.Close()
				n.conn = nil
			}
			n.mu.Unlock()
		}
		if os.Getenv("KEEP") != "" {
			c.opts.Logf("testcluster: KEEP set; cluster dir kept: %s", c.Dir)
			return
		}
		errs = append(errs, os.RemoveAll(c.Dir))
	})
	return errors.Join(errs...)
}

// StartT starts a cluster for a test, closing it when the test ends; on a
// failed test it logs the tail of every node's log first.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster dir %s\n%s", c.Dir, c.LogTails(40))
		}
		c.Close()
	})
	return c
}

// conn returns a connection to the node (no retries, no redirects).
func (c *Cluster) conn(n *Node) (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn != nil {
		return n.conn, nil
	}
	cc, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, err
	}
	n.conn = cc
	return cc, nil
}

func adminCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+AdminToken)
}

// probeTimeout bounds each RPC the harness makes to one node.
const probeTimeout = time.Second

// ask runs one RPC against node n, bounded by probeTimeout.
func (c *Cluster) ask(ctx context.Context, n *Node, fn func(context.Context, *grpc.ClientConn) error) error {
	cc, err := c.conn(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(adminCtx(ctx), probeTimeout)
	defer cancel()
	return fn(ctx, cc)
}

// RaftStats returns the node's Raft statistics (state, commit_index,
// applied_index, num_peers, ...).
func (c *Cluster) RaftStats(ctx context.Context, n *Node) (map[string]string, error) {
	var st map[string]string
	err := c.ask(ctx, n, func(ctx context.Context, cc *grpc.ClientConn) error {
		r, err := meghav1.NewClusterServiceClient(cc).RaftStats(ctx, &meghav1.RaftStatsRequest{})
		st = r.GetStats()
		return err
	})
	return st, err
}

// Members returns the membership as the node sees it.
func (c *Cluster) Members(ctx context.Context, n *Node) ([]*meghav1.Member, error) {
	var ms []*meghav1.Member
	err := c.ask(ctx, n, func(ctx context.Context, cc *grpc.ClientConn) error {
		r, err := meghav1.NewClusterServiceClient(cc).Members(ctx, &meghav1.MembersRequest{})
		ms = r.GetMembers()
		return err
	})
	return ms, err
}

// leaderSeenBy returns the ID of the leader node n knows of, "" if none.
func (c *Cluster) leaderSeenBy(ctx context.Context, n *Node) (string, error) {
	var id string
	err := c.ask(ctx, n, func(ctx context.Context, cc *grpc.ClientConn) error {
		r, err := meghav1.NewClusterServiceClient(cc).Leader(ctx, &meghav1.LeaderRequest{})
		id = r.GetLeader().GetId()
		return err
	})
	return id, err
}

// live returns the nodes whose process runs and is not stopped.
func (c *Cluster) live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		n.mu.Lock()
		ok := n.proc != nil && n.proc.running() && !n.stopped
		n.mu.Unlock()
		if ok {
			out = append(out, n)
		}
	}
	return out
}

// findLeader asks every live node once. The leader is a node that names
// itself, named by a majority of the cluster, with no live node naming
// another.
func (c *Cluster) findLeader(ctx context.Context) (*Node, string) {
	views := map[string]string{}
	for _, n := range c.live() {
		id, err := c.leaderSeenBy(ctx, n)
		if err != nil {
			views[n.ID] = "?"
			continue
		}
		views[n.ID] = id
	}
	desc := fmt.Sprint(views)
	var cand string
	votes := 0
	for _, id := range views {
		if id == "?" || id == "" {
			continue
		}
		if cand != "" && id != cand {
			return nil, desc // disagreement
		}
		cand = id
		votes++
	}
	if cand == "" || views[cand] != cand || votes < len(c.Nodes)/2+1 {
		return nil, desc
	}
	return c.Node(cand), desc
}

// Leader waits until the live nodes agree on a leader and returns it.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	var last string
	for {
		n, desc := c.findLeader(ctx)
		if n != nil {
			return n, nil
		}
		last = desc
		select {
		case <-ctx.Done():
			return nil, c.withLogs(fmt.Errorf("testcluster: no agreed leader (last views %s): %w", last, ctx.Err()))
		case <-time.After(pollEvery):
		}
	}
}

// WaitStable waits until the live nodes agree on a leader, every live node
// sees all the cluster's nodes as voters with a gRPC address, and the
// leader serves a linearizable read (it has caught up after its election).
func (c *Cluster) WaitStable(ctx context.Context) error {
	var why string
	for {
		why = c.stable(ctx)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.withLogs(fmt.Errorf("testcluster: cluster not stable (%s): %w", why, ctx.Err()))
		case <-time.After(pollEvery):
		}
	}
}

func (c *Cluster) stable(ctx context.Context) string {
	leader, desc := c.findLeader(ctx)
	if leader == nil {
		return "leader views " + desc
	}
	for _, n := range c.live() {
		ms, err := c.Members(ctx, n)
		if err != nil {
			return fmt.Sprintf("%s members: %v", n.ID, err)
		}
		if why := c.fullMembership(ms, leader.ID); why != "" {
			return fmt.Sprintf("%s sees %s", n.ID, why)
		}
	}
	err := c.ask(ctx, leader, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := meghav1.NewJobServiceClient(cc).List(ctx, &meghav1.ListJobsRequest{PageSize: 1})
		return err
	})
	if err != nil {
		return fmt.Sprintf("leader %s read: %v", leader.ID, err)
	}
	return ""
}

func (c *Cluster) fullMembership(ms []*meghav1.Member, leaderID string) string {
	if len(ms) != len(c.Nodes) {
		return fmt.Sprintf("%d members, want %d", len(ms), len(c.Nodes))
	}
	for _, m := range ms {
		n := c.Node(m.Id)
		switch {
		case n == nil:
			return fmt.Sprintf("unknown member %s", m.Id)
		case m.Suffrage != meghav1.Suffrage_SUFFRAGE_VOTER:
			return fmt.Sprintf("%s is %v", m.Id, m.Suffrage)
		case m.GrpcAddr != n.GRPCAddr:
			return fmt.Sprintf("%s at gRPC address %q, want %q", m.Id, m.GrpcAddr, n.GRPCAddr)
		case m.Leader != (m.Id == leaderID):
			return fmt.Sprintf("%s leader=%v, want leader %s", m.Id, m.Leader, leaderID)
		}
	}
	return ""
}

// WaitCaughtUp waits until node n is a voter that follows the agreed
// leader and has applied everything the leader had committed when the wait
// began.
func (c *Cluster) WaitCaughtUp(ctx context.Context, n *Node) error {
	var target uint64
	for {
		leader, err := c.Leader(ctx)
		if err != nil {
			return err
		}
		st, err := c.RaftStats(ctx, leader)
		if err == nil && st["state"] == "Leader" {
			target, _ = strconv.ParseUint(st["commit_index"], 10, 64)
			break
		}
		select {
		case <-ctx.Done():
			return c.withLogs(fmt.Errorf("testcluster: leader's commit index: %v: %w", err, ctx.Err()))
		case <-time.After(pollEvery):
		}
	}
	var why string
	for {
		why = c.caughtUp(ctx, n, target)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.withLogs(fmt.Errorf("testcluster: %s not caught up to index %d (%s): %w", n.ID, target, why, ctx.Err()))
		case <-time.After(pollEvery):
		}
	}
}

func (c *Cluster) caughtUp(ctx context.Context, n *Node, target uint64) string {
	st, err := c.RaftStats(ctx, n)
	if err != nil {
		return fmt.Sprintf("raft stats: %v", err)
	}
	applied, _ := strconv.ParseUint(st["applied_index"], 10, 64)
	if applied < target {
		return fmt.Sprintf("applied index %s", st["applied_index"])
	}
	leader, desc := c.findLeader(ctx)
	if leader == nil {
		return "leader views " + desc
	}
	ms, err := c.Members(ctx, n)
	if err != nil {
		return fmt.Sprintf("members: %v", err)
	}
	return c.fullMembership(ms, leader.ID)
}

// LogTail returns the last lines of the node's log.
func (c *Cluster) LogTail(n *Node, lines int) string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// LogTails returns the tail of every node's log, each under a header.
func (c *Cluster) LogTails(lines int) string {
	var sb strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&sb, "----- %s (%s) last %d lines -----\n%s\n", n.ID, n.LogPath, lines, c.LogTail(n, lines))
	}
	return sb.String()
}

func (c *Cluster) withLogs(err error) error {
	return fmt.Errorf("%w\n%s", err, c.LogTails(25))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return string(bytes.TrimSpace(b[off:]))
}

// CheckpointDir is the directory of the cluster's checkpoint store
// (--checkpoint-store file://DIR on every node).
func (c *Cluster) CheckpointDir() string { return filepath.Join(c.Dir, "checkpoints") }
