package collective

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
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
// members of cfg's ring. Every member must call it with the same Round,
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

func checkFinite(rank int, buf []float32, weight float64) error {
	for i, v := range buf {
		f := float64(v)
		if math.IsNaN(f) {
			return fmt.Errorf("collective: rank %d: pseudo-gradient holds NaN at index %d", rank, i)
		}
		if math.IsInf(f, 0) {
			return fmt.Errorf("collective: rank %d: pseudo-gradient holds %v at index %d", rank, f, i)
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

	in           chan *meghav1.Chunk // chunks from the left neighbour
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

// span is one chunk: elements [off, off+cnt) of the buffer extended by the
// weight element at index len(buf).
type span struct{ off, cnt int }

// token tells the sender that the chunk it will send next is ready; in the
// all-gather phase it carries the received chunk to forward verbatim.
type token struct{ fwd *meghav1.Chunk }

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

	N, r, L := cfg.World, cfg.Rank, len(buf)
	E := L + 1
	rctx, cancel := context.WithCancel(ctx)
	rs := &round{
		cfg: cfg, left: (r + N - 1) % N, right: (r + 1) % N,
		ctx: rctx, cancel: cancel,
		in:       make(chan *meghav1.Chunk, 4),
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

	// Segments and their chunks.
	ce := cfg.chunkElems()
	chunks := make([][]span, N)
	for k := range N {
		lo, hi := k*E/N, (k+1)*E/N
		for off := lo; ; off += ce {
			chunks[k] = append(chunks[k], span{off, min(ce, hi-off)})
			if off+ce >= hi {
				break
			}
		}
	}
	mod := func(x int) int { return ((x % N) + N) % N }
	steps := 2 * (N - 1)
	sendSeg := func(t int) int {
		if t < N-1 {
			return mod(r - t)
		}
		return mod(r + 1 - (t - (N - 1)))
	}
	recvSeg := func(t int) int {
		if t < N-1 {
			return mod(r - t - 1)
		}
		return mod(r - (t - (N - 1)))
	}
	total := 0
	for t := range steps {
		total += len(chunks[recvSeg(t)])
	}

	work := make([]float32, L)
	for i, v := range buf {
		work[i] = v * float32(weight)
	}
	wsum := weight
	saved := comp.snapshot()

	var sent, received atomic.Int64
	tokens := make(chan token, total)
	timeout := cfg.timeout()

	// Sender: streams every step's chunks to the right neighbour.
	sendErr := make(chan error, 1)
	step0 := make(chan struct{}) // the sender has encoded all of step 0
	go func() {
		sendErr <- n.sendAll(rs, comp, work, &wsum, chunks, sendSeg, tokens, step0, &sent, L)
	}()

	// Receiver/reducer: takes the left neighbour's chunks in order.
	recvErr := func() error {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		var tmp []float32
		gotAny := false
		for t := range steps {
			seg := recvSeg(t)
			if t == N-1 {
				// All-gather overwrites the segment the sender read at step
				// 0; the ring already orders this, make it explicit.
				select {
				case <-step0:
				case <-rs.done:
					return rs.err
				}
			}
			for ci, sp := range chunks[seg] {
				var c *meghav1.Chunk
				select {
				case c = <-rs.in:
				case <-timer.C:
					what := "sent nothing"
					if gotAny {
						what = "sent nothing more"
					}
					return rs.peerErr(rs.left, "%s for %v", what, timeout)
				case <-rs.done:
					return rs.err
				}
				gotAny = true
				timer.Reset(timeout)
				if err := rs.validate(c, t, ci, sp, L); err != nil {
					return err
				}
				dn := min(sp.off+sp.cnt, L) - min(sp.off, L)
				if cap(tmp) < dn {
					tmp = make([]float32, dn)
				}
				tmp = tmp[:dn]
				if err := Decode(cfg.Compression, c.GetScales(), c.GetData(), tmp); err != nil {
					return rs.peerErr(rs.left, "sent a bad chunk %d of step %d: %v", ci, t, err)
				}
				received.Add(payloadBytes(c, L))
				dst := work[min(sp.off, L) : min(sp.off, L)+dn]
				hasW := sp.off+sp.cnt == E
				var tok token
				if t < N-1 {
					for i, v := range tmp {
						dst[i] += v
					}
					if hasW {
						wsum += c.GetWeight()
					}
				} else {
					copy(dst, tmp)
					if hasW {
						wsum = c.GetWeight()
					}
					tok.fwd = c
				}
				tokens <- tok
			}
		}
		close(rs.recvDone)
		return nil
	}()
	if recvErr != nil {
		rs.fail(recvErr)
	}
	se := <-sendErr
	if se != nil {
		rs.fail(se)
	}
	n.sent.Add(sent.Load())
	n.received.Add(received.Load())
	st = Stats{BytesSent: sent.Load(), BytesReceived: received.Load()}
	if err := rs.failed(); err != nil {
		comp.restore(saved)
		return st, err
	}
	if err := ctx.Err(); err != nil {
		comp.restore(saved)
		return st, fmt.Errorf("collective: round %d: rank %d: %w", cfg.Round, r, err)
	}
	if !(wsum > 0) {
		comp.restore(saved)
		return st, fmt.Errorf("collective: round %d: weights sum to %v", cfg.Round, wsum)
	}
	for i, v := range work {
		buf[i] = float32(float64(v) / wsum)
	}
	return st, nil
}

// payloadBytes is what a chunk counts for in Stats: data, scales and, when
// it carries the weight element, 8 bytes.
func payloadBytes(c *meghav1.Chunk, L int) int64 {
	b := int64(len(c.GetData()) + 4*len(c.GetScales()))
	if c.GetOffset()+uint64(c.GetCount()) == uint64(L)+1 {
		b += 8
	}
	return b
}

// validate checks that c is exactly the chunk expected next.
func (rs *round) validate(c *meghav1.Chunk, step, ci int, sp span, L int) error {
	bad := func(format string, args ...any) error {
		return rs.peerErr(rs.left, "sent a bad chunk (step %d, chunk %d): %s", step, ci, fmt.Sprintf(format, args...))
	}
	switch {
	case c.GetRound() != rs.cfg.Round:
		return bad("wrong round %d", c.GetRound())
	case int(c.GetFromRank()) != rs.left || int(c.GetWorld()) != rs.cfg.World:
		return bad("from rank %d of world %d, want rank %d of world %d", c.GetFromRank(), c.GetWorld(), rs.left, rs.cfg.World)
	case int(c.GetStep()) != step || int(c.GetChunkIndex()) != ci:
		return bad("out of order: got step %d chunk %d", c.GetStep(), c.GetChunkIndex())
	case c.GetOffset() != uint64(sp.off) || int(c.GetCount()) != sp.cnt:
		return bad("wrong size: offset %d count %d, want offset %d count %d", c.GetOffset(), c.GetCount(), sp.off, sp.cnt)
	case c.GetEncoding() != rs.cfg.Compression.encoding():
		return bad("encoding %v, want %v", c.GetEncoding(), rs.cfg.Compression.encoding())
	}
	dn := min(sp.off+sp.cnt, L) - min(sp.off, L)
	if nd, ns := rs.cfg.Compression.encodedSize(dn); len(c.GetData()) != nd || len(c.GetScales()) != ns {
		return bad("wrong size: %d data bytes and %d scales, want %d and %d", len(c.GetData()), len(c.GetScales()), nd, ns)
	}
	if got := crc32.Checksum(c.GetData(), castagnoli); got != c.GetChecksum() {
		return bad("checksum mismatch (crc32c %08x, header says %08x)", got, c.GetChecksum())
	}
	if w := c.GetWeight(); math.IsNaN(w) || math.IsInf(w, 0) {
		return bad("weight %v", w)
	}
	return nil
}

// sendAll streams the round's chunks to the right neighbour: step 0 at once,
// every later chunk as soon as the receiver has produced it.
func (n *Node) sendAll(rs *round, comp *Compressor, work []float32, wsum *float64, chunks [][]span,
	sendSeg func(int) int, tokens <-chan token, step0 chan struct{}, sent *atomic.Int64, L int) error {
	cfg, N := rs.cfg, rs.cfg.World
	timeout := cfg.timeout()
	right := rs.right
	addr := cfg.Addrs[right]

	// watchdog fails the round if one blocking call on the stream lasts
	// longer than the timeout.
	var wd *time.Timer
	arm := func(what string) {
		wd = time.AfterFunc(timeout, func() { rs.fail(rs.peerErr(right, "%s for %v", what, timeout)) })
	}
	disarm := func() { wd.Stop() }

	cc, err := n.conn(addr)
	if err != nil {
		return rs.peerErr(right, "unreachable: %v", err)
	}
	arm("did not accept a stream")
	stream, err := meghav1.NewPeerClient(cc).Exchange(rs.ctx, grpc.WaitForReady(true))
	disarm()
	if err != nil {
		return n.streamErr(rs, stream, err)
	}
	// The right neighbour answers only once, at the end of the round: with
	// its ack, or early with the error that made it reject or abort the
	// round. Watch for that answer the whole time, so a rejection fails
	// this member at once rather than at its next Send.
	answer := make(chan error, 1)
	go func() {
		answer <- stream.RecvMsg(new(meghav1.ExchangeAck))
	}()
	go func() {
		select {
		case err := <-answer:
			answer <- err // for the final wait below
			if err != nil {
				rs.fail(n.streamErr(rs, nil, err))
			}
		case <-rs.done:
		}
	}()
	var dec []float32
	defer func() {
		select {
		case <-step0:
		default:
			close(step0)
		}
	}()
	for t := range 2 * (N - 1) {
		if t == 1 {
			close(step0)
		}
		seg := sendSeg(t)
		for ci, sp := range chunks[seg] {
			var c *meghav1.Chunk
			if t > 0 {
				var tok token
				select {
				case tok = <-tokens:
				case <-rs.done:
					return rs.err
				}
				if tok.fwd != nil {
					c = tok.fwd
					c.Step = uint32(t)
				}
			}
			if c == nil {
				lo, hi := min(sp.off, L), min(sp.off+sp.cnt, L)
				scales, data := comp.Encode(work[lo:hi], lo)
				c = &meghav1.Chunk{
					Round: cfg.Round, Step: uint32(t), ChunkIndex: uint32(ci),
					Offset: uint64(sp.off), Count: uint32(sp.cnt),
					Encoding: cfg.Compression.encoding(),
					Scales:   scales, Data: data,
					Checksum: crc32.Checksum(data, castagnoli),
					FromRank: uint32(cfg.Rank), World: uint32(N),
				}
				if sp.off+sp.cnt == L+1 {
					c.Weight = *wsum
				}
				if t == N-1 && cfg.Compression != None {
					// This member owns the segment: keep exactly what the
					// others will receive so every member ends identical.
					if cap(dec) < hi-lo {
						dec = make([]float32, hi-lo)
					}
					dec = dec[:hi-lo]
					if err := Decode(cfg.Compression, scales, data, dec); err != nil {
						return err
					}
					copy(work[lo:hi], dec)
				}
			} else {
				c.FromRank = uint32(cfg.Rank)
			}
			if h := n.testHookSend; h != nil {
				h(cfg.Rank, c)
			}
			arm("stopped accepting data")
			err := stream.Send(c)
			disarm()
			if err != nil {
				return n.streamErr(rs, stream, err)
			}
			sent.Add(payloadBytes(c, L))
		}
	}
	if err := stream.CloseSend(); err != nil {
		return n.streamErr(rs, nil, err)
	}
	select {
	case err := <-answer:
		if err != nil {
			return n.streamErr(rs, nil, err)
		}
		return nil
	case <-time.After(timeout):
		return rs.peerErr(right, "did not acknowledge the round for %v", timeout)
	case <-rs.done:
		return rs.err
	}
}

// streamErr turns a failed stream call into the round's error, naming the
// right neighbour.
func (n *Node) streamErr(rs *round, stream meghav1.Peer_ExchangeClient, err error) error {
	if e := rs.failed(); e != nil {
		return e // the round already failed for a reason of its own
	}
	if errors.Is(err, io.EOF) && stream != nil {
		// The server ended the stream; its answer says why.
		select {
		case <-rs.done:
			return rs.err
		case <-time.After(rs.cfg.timeout()):
		}
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Aborted:
			msg := strings.TrimPrefix(s.Message(), fmt.Sprintf("collective: round %d: ", rs.cfg.Round))
			return rs.peerErr(rs.right, "aborted the round: %s", msg)
		case codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists:
			return rs.peerErr(rs.right, "rejected the stream: %s", s.Message())
		}
		return rs.peerErr(rs.right, "failed the stream: %s: %s", s.Code(), s.Message())
	}
	return rs.peerErr(rs.right, "failed the stream: %v", err)
}
