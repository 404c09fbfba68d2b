package collective

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultTimeout is Config.Timeout when it is zero.
const DefaultTimeout = 30 * time.Second

// DefaultChunkBytes is Config.ChunkBytes when it is zero.
const DefaultChunkBytes = 256 << 10

// MaxChunkBytes caps Config.ChunkBytes, keeping every message well under
// gRPC's default 4 MiB receive limit.
const MaxChunkBytes = 2 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config describes one member's view of one ring.
type Config struct {
	Rank, World int
	// Addrs is every member's advertised address, indexed by rank.
	Addrs []string
	// Round identifies the all-reduce; every member must use the same one
	// and chunks of any other round are rejected.
	Round uint64
	// Timeout bounds every wait on a peer: no chunk from the left neighbour,
	// or the right neighbour not accepting data, for this long aborts the
	// round. Zero means DefaultTimeout.
	Timeout time.Duration
	// ChunkBytes is the uncompressed size of one chunk (rounded down to a
	// multiple of BlockSize values, at least one block, at most
	// MaxChunkBytes). Zero means DefaultChunkBytes.
	ChunkBytes int
	// Compression is the wire encoding of buffer values (the weight sum is
	// always sent as float64).
	Compression Compression
	// ErrorFeedback carries each member's quantization error over to its
	// next AllReduce of the same buffer (Node.AllReduce) or ring (Ring).
	ErrorFeedback bool
}

func (c Config) validate() error {
	switch {
	case c.World < 1:
		return fmt.Errorf("collective: world size %d < 1", c.World)
	case c.Rank < 0 || c.Rank >= c.World:
		return fmt.Errorf("collective: rank %d outside world of %d", c.Rank, c.World)
	case c.World > 1 && len(c.Addrs) != c.World:
		return fmt.Errorf("collective: %d addresses for a world of %d", len(c.Addrs), c.World)
	case !c.Compression.valid():
		return fmt.Errorf("collective: unknown compression %v", c.Compression)
	case c.Timeout < 0 || c.ChunkBytes < 0:
		return errors.New("collective: negative Timeout or ChunkBytes")
	}
	return nil
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c Config) chunkElems() int {
	b := c.ChunkBytes
	if b == 0 {
		b = DefaultChunkBytes
	}
	b = min(b, MaxChunkBytes)
	return max(BlockSize, b/4/BlockSize*BlockSize)
}

// Stats is the traffic of one AllReduce: payload bytes (chunk data, int8
// scales and the 8-byte weight sum; not protobuf or gRPC framing).
type Stats struct {
	BytesSent, BytesReceived int64
	Duration                 time.Duration
}

// Ring is one member's fixed view of a ring. It owns the error-feedback
// residual of the buffer it reduces and advances its round after every
// AllReduce.
type Ring struct {
	node *Node
	cfg  Config
	comp *Compressor
}

// NewRing checks cfg and returns a Ring on node.
func NewRing(node *Node, cfg Config) (*Ring, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Ring{node: node, cfg: cfg, comp: NewCompressor(cfg.Compression, cfg.ErrorFeedback)}, nil
}

// Round is the round the next AllReduce will use.
func (r *Ring) Round() uint64 { return r.cfg.Round }

// Compressor is the ring's compressor, holding the error-feedback residual.
func (r *Ring) Compressor() *Compressor { return r.comp }

// AllReduce runs AllReduce for the ring's current round, then advances the
// round by one whatever the outcome.
func (r *Ring) AllReduce(ctx context.Context, buf []float32, weight float64) (Stats, error) {
	defer func() { r.cfg.Round++ }()
	return r.node.allReduce(ctx, r.cfg, r.comp, buf, weight)
}

// AllReduce replaces buf with the weighted mean Σ wᵢ·bufᵢ / Σ wᵢ over all
// members of cfg's ring (zeros when every weight is 0: a member that joins
// a round without local work, such as one just restored from a
// checkpoint, contributes weight 0). Every member must call it with the same Round,
// World, Addrs, Compression and len(buf). On error buf is unchanged. With
// cfg.ErrorFeedback the residual is kept per buffer (same backing array and
// length) on this node.
func (n *Node) AllReduce(ctx context.Context, cfg Config, buf []float32, weight float64) (Stats, error) {
	if err := cfg.validate(); err != nil {
		return Stats{}, err
	}
	comp := NewCompressor(cfg.Compression, false)
	if cfg.ErrorFeedback && cfg.Compression != None && len(buf) > 0 {
		k := feedbackKey{&buf[0], len(buf), cfg.Compression}
		n.mu.Lock()
		if comp = n.feedback[k]; comp == nil {
			comp = NewCompressor(cfg.Compression, true)
			n.feedback[k] = comp
		}
		n.mu.Unlock()
	}
	return n.allReduce(ctx, cfg, comp, buf, weight)
}

// Sequence runs successive all-reduces of one membership as consecutive
// rounds, starting at Config.Round: each call uses the current round and
// advances it, whether or not the call succeeded. It reports payload
// traffic as (sent, received) and so satisfies train.AllReducer.
type Sequence struct {
	Node   *Node
	Config Config
}

// AllReduce reduces buf with the Sequence's membership and next round.
func (s *Sequence) AllReduce(ctx context.Context, buf []float32, weight float64) (sent, received int64, err error) {
	st, err := s.Node.AllReduce(ctx, s.Config, buf, weight)
	s.Config.Round++
	return st.BytesSent, st.BytesReceived, err
}

func checkFinite(rank int, buf []float32, weight float64) error {
	if anyNonFinite(buf) {
		for i, v := range buf {
			if f := float64(v); math.IsNaN(f) {
				return fmt.Errorf("collective: rank %d: pseudo-gradient holds NaN at index %d", rank, i)
			} else if math.IsInf(f, 0) {
				return fmt.Errorf("collective: rank %d: pseudo-gradient holds %v at index %d", rank, f, i)
			}
		}
	}
	if math.IsNaN(weight) || math.IsInf(weight, 0) || weight < 0 {
		return fmt.Errorf("collective: rank %d: weight %v is not a finite non-negative number", rank, weight)
	}
	return nil
}

// round is the state of one AllReduce on one member.
type round struct {
	cfg         Config
	left, right int
	ctx         context.Context
	cancel      context.CancelFunc

	in           chan *chunk // chunks from the left neighbour
	inboundTaken atomic.Bool
	recvDone     chan struct{} // every expected chunk received

	once sync.Once
	done chan struct{} // closed on failure or when the round is over
	err  error
}

func (rs *round) fail(err error) {
	rs.once.Do(func() {
		rs.err = err
		close(rs.done)
		rs.cancel()
	})
}

func (rs *round) finish() { rs.fail(nil) }

func (rs *round) failed() error {
	select {
	case <-rs.done:
		return rs.err
	default:
		return nil
	}
}

func (rs *round) statusErr() error {
	<-rs.done
	if rs.err == nil {
		return status.Errorf(codes.Aborted, "round %d is over", rs.cfg.Round)
	}
	return status.Error(codes.Aborted, rs.err.Error())
}

func (rs *round) peerErr(peer int, format string, args ...any) error {
	return fmt.Errorf("collective: round %d: rank %d (%s) %s", rs.cfg.Round, peer, rs.cfg.Addrs[peer], fmt.Sprintf(format, args...))
}

func (n *Node) allReduce(ctx context.Context, cfg Config, comp *Compressor, buf []float32, weight float64) (st Stats, err error) {
	start := time.Now()
	defer func() { st.Duration = time.Since(start) }()
	if err := checkFinite(cfg.Rank, buf, weight); err != nil {
		return Stats{}, err
	}
	if cfg.World == 1 {
		return Stats{}, nil // the weighted mean of one buffer is itself
	}
	n.run.Lock()
	defer n.run.Unlock()

	N, r := cfg.World, cfg.Rank
	rctx, cancel := context.WithCancel(ctx)
	rs := &round{
		cfg: cfg, left: (r + N - 1) % N, right: (r + 1) % N,
		ctx: rctx, cancel: cancel,
		in:       make(chan *chunk, 4),
		recvDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	defer rs.finish()
	if err := n.activate(rs); err != nil {
		return Stats{}, err
	}
	defer n.deactivate(rs)
	stop := context.AfterFunc(ctx, func() {
		rs.fail(fmt.Errorf("collective: round %d: rank %d: %w", cfg.Round, r, ctx.Err()))
	})
	defer stop()

	if cap(n.scratch) < len(buf) {
		n.scratch = make([]float32, len(buf))
	}
	p := newPass(rs, comp, buf, n.scratch[:len(buf)], weight)
	saved := comp.snapshot()
	sendErr := make(chan error, 1)
	go func() { sendErr <- p.send(n) }()
	if err := p.receive(); err != nil {
		rs.fail(err)
	}
	if err := <-sendErr; err != nil {
		rs.fail(err)
	}
	sent, received := p.sent.Load(), p.received.Load()
	n.sent.Add(sent)
	n.received.Add(received)
	st = Stats{BytesSent: sent, BytesReceived: received}
	if err := rs.failed(); err != nil {
		comp.restore(saved)
		return st, err
	}
	if err := ctx.Err(); err != nil {
		comp.restore(saved)
		return st, fmt.Errorf("collective: round %d: rank %d: %w", cfg.Round, r, err)
	}
	if p.wsum == 0 {
		// No member contributed (every weight 0): the mean is no change.
		clear(buf)
		return st, nil
	}
	if !(p.wsum > 0) {
		comp.restore(saved)
		return st, fmt.Errorf("collective: round %d: weights sum to %v", cfg.Round, p.wsum)
	}
	divideTo(buf, p.work, p.wsum)
	return st, nil
}
