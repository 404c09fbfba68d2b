// Package collective is megha's ring all-reduce between training workers.
//
// Every worker process runs one Node: a gRPC Peer server on a listener plus
// client connections to its ring neighbour. Node.AllReduce (or Ring.AllReduce)
// computes the weighted mean Σ wᵢxᵢ / Σ wᵢ of every member's buffer in place:
// reduce-scatter then all-gather around the ring (N−1 steps each), each
// step's segment cut into chunks so that sending one chunk overlaps receiving
// and reducing the next. Each member sends about 2(N−1)/N × payload bytes.
//
// Any member failing, stalling or disconnecting aborts the round for every
// member within Config.Timeout; the caller retries with the survivors.
//
// The data path copies as little as gRPC allows: chunks go through a codec
// of their own (plain protobuf bytes, so any protobuf peer reads them) that
// hands a chunk's data to the transport as a buffer rather than marshalling
// it, and on receipt keeps references to the transport's frame buffers
// instead of copying them out; the all-gather forwards those same buffers.
// Each AllReduce reads buf, works in a scratch buffer the Node keeps, and
// writes buf only once the round has succeeded.
package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"
)

// Node is one process's endpoint in the collective: it serves chunks sent by
// its left neighbour to whichever round is active and runs one AllReduce at a
// time. It keeps a scratch buffer as large as the largest buffer it has
// reduced.
type Node struct {
	meghav1.UnimplementedPeerServer

	lis  net.Listener
	srv  *grpc.Server
	done chan struct{}

	run sync.Mutex // one AllReduce at a time

	mu        sync.Mutex
	active    *round
	activated chan struct{} // closed and replaced whenever active changes
	lastRound uint64        // highest round ever activated
	anyRound  bool
	closed    bool
	conns     map[string]*grpc.ClientConn
	feedback  map[feedbackKey]*Compressor

	sent, received atomic.Int64

	// scratch is the working buffer of the running AllReduce (guarded by
	// run), kept between calls: training reduces a buffer of the same size
	// every round, and a fresh one would cost its page faults every time.
	scratch []float32

	// testHookSend, if set, sees every outgoing chunk after its checksum is
	// computed (tests corrupt chunks or kill nodes through it).
	testHookSend func(rank int, c *chunk)
}

type feedbackKey struct {
	ptr  *float32
	n    int
	mode Compression
}

// NewNode serves the Peer service on lis until Close. Extra server options
// (credentials, interceptors) may be given.
func NewNode(lis net.Listener, opts ...grpc.ServerOption) *Node {
	n := &Node{
		lis:       lis,
		srv:       grpc.NewServer(append(serverOptions(), opts...)...),
		done:      make(chan struct{}),
		activated: make(chan struct{}),
		conns:     map[string]*grpc.ClientConn{},
		feedback:  map[feedbackKey]*Compressor{},
	}
	meghav1.RegisterPeerServer(n.srv, n)
	go func() {
		defer close(n.done)
		_ = n.srv.Serve(lis)
	}()
	return n
}

// Listen opens a TCP listener on addr ("127.0.0.1:0" for a free port) and
// returns a Node serving on it.
func Listen(addr string) (*Node, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("collective: listen: %w", err)
	}
	return NewNode(lis), nil
}

// Addr is the listener's address, to advertise to the other members.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// Totals is the cumulative payload traffic of every AllReduce on this node
// (Duration is zero).
func (n *Node) Totals() Stats {
	return Stats{BytesSent: n.sent.Load(), BytesReceived: n.received.Load()}
}

// Close aborts the active round, if any, stops the server and closes the
// client connections. It is safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	rs := n.active
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	if rs != nil {
		rs.fail(fmt.Errorf("collective: round %d: rank %d: node closed", rs.cfg.Round, rs.cfg.Rank))
	}
	n.srv.Stop()
	<-n.done
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

func (n *Node) conn(addr string) (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("node closed")
	}
	if c, ok := n.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, err
	}
	n.conns[addr] = c
	return c, nil
}

// activate makes rs the round served to incoming streams.
func (n *Node) activate(rs *round) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("collective: round %d: rank %d: node closed", rs.cfg.Round, rs.cfg.Rank)
	}
	n.active = rs
	if !n.anyRound || rs.cfg.Round > n.lastRound {
		n.lastRound, n.anyRound = rs.cfg.Round, true
	}
	close(n.activated)
	n.activated = make(chan struct{})
	return nil
}

func (n *Node) deactivate(rs *round) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active == rs {
		n.active = nil
		close(n.activated)
		n.activated = make(chan struct{})
	}
}

// roundFor waits until round r is active and returns it. Rounds only move
// forward: a stream for a round this node has already started (but is not
// running now) or that is older than the active one is rejected at once. A
// stream for a later round waits for this node to get there.
func (n *Node) roundFor(ctx context.Context, first *chunk) (*round, error) {
	r := first.round
	for {
		n.mu.Lock()
		rs, ch, closed := n.active, n.activated, n.closed
		stale := n.anyRound && r <= n.lastRound
		last := n.lastRound
		n.mu.Unlock()
		switch {
		case closed:
			return nil, status.Error(codes.Unavailable, "node closed")
		case rs != nil && rs.cfg.Round == r:
			return rs, nil
		case stale:
			// Only the sender learns of it: a stale stream may be a leftover
			// from an aborted earlier round, which must not fail the round
			// running now. A neighbour that really is behind aborts on this
			// rejection, and the active round then times out waiting for it.
			return nil, status.Errorf(codes.FailedPrecondition, "wrong round: got round %d, this member is at round %d", r, last)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// Exchange receives one round's chunks from the left neighbour and hands
// them to the active round, which validates and reduces them.
func (n *Node) Exchange(stream meghav1.Peer_ExchangeServer) error {
	ctx := stream.Context()
	first := &chunk{}
	if err := stream.RecvMsg(first); err != nil {
		return err
	}
	rs, err := n.roundFor(ctx, first)
	if err != nil {
		return err
	}
	if !rs.inboundTaken.CompareAndSwap(false, true) {
		return status.Errorf(codes.AlreadyExists, "round %d already has an inbound stream", rs.cfg.Round)
	}

	type recvd struct {
		c   *chunk
		err error
	}
	stop := make(chan struct{})
	defer close(stop)
	in := make(chan recvd, 1)
	go func() {
		for {
			c := &chunk{}
			err := stream.RecvMsg(c)
			select {
			case in <- recvd{c, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var count uint64
	ack := func() error {
		return stream.SendAndClose(&meghav1.ExchangeAck{Round: rs.cfg.Round, Chunks: count})
	}
	done := rs.done // nil once the round completed: then only wait for EOF
	c := first
	for {
		if c != nil {
			count++
			select {
			case rs.in <- c:
			case <-rs.done:
				if rs.err == nil {
					return status.Errorf(codes.InvalidArgument, "round %d: more chunks than expected", rs.cfg.Round)
				}
				return rs.statusErr()
			}
		}
		select {
		case r := <-in:
			if r.err == nil {
				c = r.c
				continue
			}
			if errors.Is(r.err, io.EOF) {
				// The sender finished; acknowledge once we have taken
				// everything.
				select {
				case <-rs.recvDone:
					return ack()
				case <-rs.done:
					if rs.err == nil {
						return ack()
					}
					return rs.statusErr()
				}
			}
			select {
			case <-rs.recvDone:
				return r.err // we had everything; the sender went away before the ack
			default:
			}
			if status.Code(r.err) == codes.Canceled {
				rs.fail(rs.peerErr(rs.left, "aborted the round (stream canceled)"))
			} else {
				rs.fail(rs.peerErr(rs.left, "disconnected: %v", r.err))
			}
			return rs.statusErr()
		case <-done:
			if rs.err == nil {
				done = nil
				c = nil
				continue
			}
			return rs.statusErr()
		}
	}
}

// ioBufferBytes is the transport's read and write buffer size: gRPC's
// default of 32 KiB means a syscall per two 16 KiB frames; 1 MiB buffers
// measured about 8% more bus bandwidth on a loaded 2-core machine (noisy;
// see benchmarks/results/collective-allreduce.json). Larger static
// flow-control windows made no measurable difference.
const ioBufferBytes = 1 << 20

// serverOptions and dialOptions put chunks on the wire without copying
// their data (codec), let the transport reuse frame buffers without zeroing
// them (pool), and read and write in large batches.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(peerCodec), experimental.BufferPool(pool),
		grpc.ReadBufferSize(ioBufferBytes), grpc.WriteBufferSize(ioBufferBytes),
	}
}

func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		experimental.WithBufferPool(pool),
		grpc.WithReadBufferSize(ioBufferBytes), grpc.WithWriteBufferSize(ioBufferBytes),
	}
}
