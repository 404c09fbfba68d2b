package collective

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// pass is one member's working state for one AllReduce: the schedule, the
// buffers and the hand-off from the receiver to the sender.
//
// The buffer is extended by one weight element at index L, so that E = L+1
// elements split into N segments and each segment into chunks. Step t of
// the 2(N−1) steps sends segment sendSeg(t) to the right neighbour and
// receives recvSeg(t) from the left; sendSeg(t) = recvSeg(t−1), so chunk c
// of step t leaves as soon as chunk c of step t−1 has arrived and been
// reduced (a token per chunk says so). work holds w·buf plus what has been
// added, and in the end the weighted sum; it is written segment by segment
// (step 0 scales segment r, the reduce-scatter writes w·buf + received into
// the others) and never read before it is written, so it can be reused
// scratch. buf itself is only read until the round has succeeded.
type pass struct {
	rs     *round
	comp   *Compressor
	buf    []float32
	work   []float32
	w      float32 // this member's weight
	wsum   float64 // weight sum so far; written by the receiver before the token that lets the sender read it
	chunks [][]span
	L, N   int

	tokens chan token
	step0  chan struct{} // closed once the sender has encoded all of step 0

	sent, received atomic.Int64
}

// span is one chunk: elements [off, off+cnt) of the buffer extended by the
// weight element at index len(buf).
type span struct{ off, cnt int }

// data is the part of the span inside buf.
func (p *pass) data(sp span) (lo, hi int) { return min(sp.off, p.L), min(sp.off+sp.cnt, p.L) }

// token tells the sender that the chunk it will send next is ready; in the
// all-gather phase it carries the received chunk to forward verbatim.
type token struct{ fwd *chunk }

func (p *pass) mod(x int) int { return ((x % p.N) + p.N) % p.N }

func (p *pass) sendSeg(t int) int {
	if t < p.N-1 {
		return p.mod(p.rs.cfg.Rank - t)
	}
	return p.mod(p.rs.cfg.Rank + 1 - (t - (p.N - 1)))
}

func (p *pass) recvSeg(t int) int {
	if t < p.N-1 {
		return p.mod(p.rs.cfg.Rank - t - 1)
	}
	return p.mod(p.rs.cfg.Rank - (t - (p.N - 1)))
}

func newPass(rs *round, comp *Compressor, buf, work []float32, weight float64) *pass {
	N, E := rs.cfg.World, len(buf)+1
	p := &pass{rs: rs, comp: comp, buf: buf, work: work, w: float32(weight), wsum: weight,
		chunks: make([][]span, N), L: len(buf), N: N, step0: make(chan struct{})}
	ce := rs.cfg.chunkElems()
	for k := range N {
		lo, hi := k*E/N, (k+1)*E/N
		for off := lo; ; off += ce {
			p.chunks[k] = append(p.chunks[k], span{off, min(ce, hi-off)})
			if off+ce >= hi {
				break
			}
		}
	}
	total := 0
	for t := range 2 * (N - 1) {
		total += len(p.chunks[p.recvSeg(t)])
	}
	p.tokens = make(chan token, total)
	return p
}

// receive takes the left neighbour's chunks in order, checks them and
// reduces them into work (reduce-scatter) or stores them there and hands
// them to the sender to forward (all-gather).
func (p *pass) receive() error {
	rs, N := p.rs, p.N
	timeout := rs.cfg.timeout()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	scratch := make([]float32, absorbBlock+1)
	gotAny := false
	for t := range 2 * (N - 1) {
		if t == N-1 {
			// All-gather overwrites the segment the sender read at step 0;
			// the ring already orders this, make it explicit.
			select {
			case <-p.step0:
			case <-rs.done:
				return rs.err
			}
		}
		for ci, sp := range p.chunks[p.recvSeg(t)] {
			var c *chunk
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
			if err := rs.validate(c, t, ci, sp, p.L); err != nil {
				c.release()
				return err
			}
			lo, hi := p.data(sp)
			var base []float32
			if t < N-1 {
				base = p.buf[lo:hi]
			}
			if got := absorb(c, rs.cfg.Compression, p.work[lo:hi], base, p.w, scratch); got != c.checksum {
				c.release()
				return rs.peerErr(rs.left, "sent a bad chunk (step %d, chunk %d): checksum mismatch (crc32c %08x, header says %08x)",
					t, ci, got, c.checksum)
			}
			p.received.Add(c.payloadBytes(p.L))
			hasW := sp.off+sp.cnt == p.L+1
			var tok token
			if t < N-1 {
				if hasW {
					p.wsum += c.weight
				}
				c.release()
			} else {
				if hasW {
					p.wsum = c.weight
				}
				tok.fwd = c
			}
			p.tokens <- tok
		}
	}
	close(rs.recvDone)
	return nil
}

// absorbBlock is how many bytes of a chunk's data absorb checksums and
// decodes at a time, so that each block is still in cache for the next
// pass over it.
const absorbBlock = 16 << 10

// absorb decodes c's data into dst, adding it to w·base when base is not
// nil (reduce-scatter) or storing it (all-gather), and returns the CRC-32C
// of the data. The caller checked the data's size. A checksum mismatch is
// only known at the end; dst is scratch, so what was written is dropped
// with the failed round.
func absorb(c *chunk, mode Compression, dst, base []float32, w float32, scratch []float32) uint32 {
	dec := streamDecoder{mode: mode, scales: c.scales}
	var crc uint32
	pos := 0
	for _, b := range c.data {
		d := b.ReadOnlyData()
		for len(d) > 0 {
			q := d[:min(len(d), absorbBlock)]
			d = d[len(q):]
			crc = crc32.Update(crc, castagnoli, q)
			if base == nil {
				pos += dec.next(q, dst[pos:])
				continue
			}
			n := dec.next(q, scratch)
			axpyTo(dst[pos:pos+n], base[pos:pos+n], w, scratch[:n])
			pos += n
		}
	}
	return crc
}

// payloadBytes is what a chunk counts for in Stats: data, scales and, when
// it carries the weight element, 8 bytes.
func (c *chunk) payloadBytes(L int) int64 {
	b := int64(c.data.Len() + 4*len(c.scales))
	if c.offset+uint64(c.count) == uint64(L)+1 {
		b += 8
	}
	return b
}

// validate checks that c's header is exactly the chunk expected next (the
// checksum is checked as the data is absorbed).
func (rs *round) validate(c *chunk, step, ci int, sp span, L int) error {
	bad := func(format string, args ...any) error {
		return rs.peerErr(rs.left, "sent a bad chunk (step %d, chunk %d): %s", step, ci, fmt.Sprintf(format, args...))
	}
	switch {
	case c.round != rs.cfg.Round:
		return bad("wrong round %d", c.round)
	case int(c.from) != rs.left || int(c.world) != rs.cfg.World:
		return bad("from rank %d of world %d, want rank %d of world %d", c.from, c.world, rs.left, rs.cfg.World)
	case int(c.step) != step || int(c.index) != ci:
		return bad("out of order: got step %d chunk %d", c.step, c.index)
	case c.offset != uint64(sp.off) || int(c.count) != sp.cnt:
		return bad("wrong size: offset %d count %d, want offset %d count %d", c.offset, c.count, sp.off, sp.cnt)
	case c.encoding != rs.cfg.Compression.encoding():
		return bad("encoding %v, want %v", c.encoding, rs.cfg.Compression.encoding())
	}
	dn := min(sp.off+sp.cnt, L) - min(sp.off, L)
	if nd, ns := rs.cfg.Compression.encodedSize(dn); c.data.Len() != nd || len(c.scales) != ns {
		return bad("wrong size: %d data bytes and %d scales, want %d and %d", c.data.Len(), len(c.scales), nd, ns)
	}
	if w := c.weight; math.IsNaN(w) || math.IsInf(w, 0) {
		return bad("weight %v", w)
	}
	return nil
}

// encode builds the chunk for sp from work at step t.
func (p *pass) encode(t, ci int, sp span) (*chunk, error) {
	cfg := p.rs.cfg
	lo, hi := p.data(sp)
	if t == 0 {
		scaleTo(p.work[lo:hi], p.buf[lo:hi], p.w)
	}
	c := &chunk{
		round: cfg.Round, step: uint32(t), index: uint32(ci),
		offset: uint64(sp.off), count: uint32(sp.cnt),
		encoding: cfg.Compression.encoding(),
		from:     uint32(cfg.Rank), world: uint32(p.N),
	}
	if sp.off+sp.cnt == p.L+1 {
		c.weight = p.wsum
	}
	var data []byte
	if cfg.Compression == None {
		b := pool.Get(4 * (hi - lo))
		data = *b
		putF32(data, p.work[lo:hi])
		c.data = mem.BufferSlice{mem.NewBuffer(b, pool)}
	} else {
		c.scales, data = p.comp.Encode(p.work[lo:hi], lo)
		c.data = mem.BufferSlice{mem.SliceBuffer(data)}
		if t == p.N-1 {
			// This member owns the segment: keep exactly what the others
			// will receive so every member ends identical.
			if err := Decode(cfg.Compression, c.scales, data, p.work[lo:hi]); err != nil {
				return nil, err
			}
		}
	}
	c.checksum = crc32.Checksum(data, castagnoli)
	return c, nil
}

// send streams the round's chunks to the right neighbour: step 0 at once,
// every later chunk as soon as the receiver has produced it.
func (p *pass) send(n *Node) error {
	rs := p.rs
	cfg := rs.cfg
	timeout := cfg.timeout()
	right := rs.right

	// watchdog fails the round if one blocking call on the stream lasts
	// longer than the timeout.
	var wd *time.Timer
	arm := func(what string) {
		wd = time.AfterFunc(timeout, func() { rs.fail(rs.peerErr(right, "%s for %v", what, timeout)) })
	}
	disarm := func() { wd.Stop() }

	cc, err := n.conn(cfg.Addrs[right])
	if err != nil {
		return rs.peerErr(right, "unreachable: %v", err)
	}
	arm("did not accept a stream")
	stream, err := meghav1.NewPeerClient(cc).Exchange(rs.ctx, grpc.WaitForReady(true), grpc.ForceCodecV2(peerCodec))
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
	defer func() {
		select {
		case <-p.step0:
		default:
			close(p.step0)
		}
	}()
	for t := range 2 * (p.N - 1) {
		if t == 1 {
			close(p.step0)
		}
		for ci, sp := range p.chunks[p.sendSeg(t)] {
			var c *chunk
			if t > 0 {
				var tok token
				select {
				case tok = <-p.tokens:
				case <-rs.done:
					return rs.err
				}
				if c = tok.fwd; c != nil {
					c.step, c.from = uint32(t), uint32(cfg.Rank)
				}
			}
			if c == nil {
				if c, err = p.encode(t, ci, sp); err != nil {
					return err
				}
			}
			if h := n.testHookSend; h != nil {
				h(cfg.Rank, c)
			}
			arm("stopped accepting data")
			err := stream.SendMsg(c)
			disarm()
			bytes := c.payloadBytes(p.L)
			c.release()
			if err != nil {
				return n.streamErr(rs, stream, err)
			}
			p.sent.Add(bytes)
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
