//go:build unix

package benchmarks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/megha-ml/megha/collective"
)

// ChildEnv names the environment variable that turns a meghabench (or
// benchmark test) binary into a helper process of a multi-process
// benchmark; MaybeRunChild checks it.
const ChildEnv = "MEGHABENCH_CHILD"

// MaybeRunChild runs this process as a benchmark helper and exits if
// ChildEnv asks for one; otherwise it returns at once. Call it first thing
// in main (and in a test binary's helper test), before parsing flags.
func MaybeRunChild() {
	switch os.Getenv(ChildEnv) {
	case "":
		return
	case arChildMode:
		if err := arMember(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "allreduce member:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown helper\n", ChildEnv, os.Getenv(ChildEnv))
		os.Exit(2)
	}
}

const arChildMode = "allreduce-member"

// arMember is one member process of the all-reduce benchmark. It speaks a
// line protocol with the parent on stdin/stdout:
//
//	member → parent   addrs GRPC RAW            (listening)
//	parent → member   ring RANK WORLD ELEMS RAWCHUNK GRPCADDRS RAWADDRS
//	member → parent   ok                        (raw ring connected)
//	parent → member   run KIND ITERS ROUND      (KIND: raw, none, fp16, int8)
//	member → parent   ready                     (buffer filled)
//	parent → member   go
//	member → parent   done NANOS | error MSG
//
// It exits when stdin closes.
func arMember(stdin io.Reader, stdout io.Writer) error {
	node, err := collective.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer node.Close()
	rawLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer rawLis.Close()
	out := bufio.NewWriter(stdout)
	say := func(format string, args ...any) error {
		fmt.Fprintf(out, format+"\n", args...)
		return out.Flush()
	}
	if err := say("addrs %s %s", node.Addr(), rawLis.Addr()); err != nil {
		return err
	}

	in := bufio.NewScanner(stdin)
	var (
		m   *arRing
		buf []float32
	)
	defer func() {
		if m != nil {
			m.close()
		}
	}()
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "ring" && len(f) == 7:
			if m != nil {
				return errors.New("ring set twice")
			}
			ints, err := atois(f[1:5])
			if err != nil {
				return err
			}
			m = &arRing{rank: ints[0], world: ints[1], chunk: ints[3], node: node,
				grpcAddrs: strings.Split(f[5], ","), rawAddrs: strings.Split(f[6], ",")}
			buf = make([]float32, ints[2])
			if err := m.connect(rawLis); err != nil {
				return err
			}
			if err := say("ok"); err != nil {
				return err
			}
		case f[0] == "run" && len(f) == 4 && m != nil:
			ints, err := atois(f[2:4])
			if err != nil {
				return err
			}
			kind, iters, round := f[1], ints[0], uint64(ints[1])
			arFill(buf, m.rank)
			if err := say("ready"); err != nil {
				return err
			}
			if !in.Scan() || in.Text() != "go" {
				return fmt.Errorf("want go, got %q (%v)", in.Text(), in.Err())
			}
			stopProfile, err := startProfile(kind, m.rank, round)
			if err != nil {
				return err
			}
			start := time.Now()
			err = m.run(kind, iters, round, buf)
			d := time.Since(start)
			stopProfile()
			if err == nil {
				err = arCheck(kind, iters, m.world, buf)
			}
			if err != nil {
				if err := say("error %s", strings.ReplaceAll(err.Error(), "\n", " ")); err != nil {
					return err
				}
				continue
			}
			if err := say("done %d", d.Nanoseconds()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected command %q", in.Text())
		}
	}
	return in.Err()
}

// arProfileEnv names the directory members write a CPU profile of each run
// to (Config.CPUProfileDir).
const arProfileEnv = "MEGHABENCH_CPUPROFILE"

func startProfile(kind string, rank int, round uint64) (stop func(), err error) {
	dir := os.Getenv(arProfileEnv)
	if dir == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("allreduce-%s-round%d-rank%d.pprof", kind, round, rank)))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func atois(ss []string) ([]int, error) {
	out := make([]int, len(ss))
	for i, s := range ss {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// arFill gives member rank the buffer rank + p(i), p(i) in [0, 1).
func arFill(buf []float32, rank int) {
	for i := range buf {
		buf[i] = float32(rank) + float32(i%1021)/1021
	}
}

// arCheck verifies a sample of the result. The all-reduce computes the mean
// (weights all 1): (N−1)/2 + p(i) after any number of iterations. The raw
// ring sums, so k iterations give N^(k−1)·(N·p(i) + N(N−1)/2).
func arCheck(kind string, iters, world int, buf []float32) error {
	tol := 1e-5
	switch kind {
	case "fp16":
		tol = 2e-3
	case "int8":
		tol = 3e-2
	}
	N := float64(world)
	for i := 0; i < len(buf); i += 4099 {
		p := float64(float32(i%1021) / 1021)
		want := (N-1)/2 + p
		if kind == "raw" {
			want = math.Pow(N, float64(iters-1)) * (N*p + N*(N-1)/2)
		}
		if got := float64(buf[i]); math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
			return fmt.Errorf("%s: element %d is %g, want %g", kind, i, got, want)
		}
	}
	return nil
}

// arRing is one member's two rings: the collective Node and the raw TCP
// connections to its neighbours.
type arRing struct {
	rank, world, chunk  int
	node                *collective.Node
	grpcAddrs, rawAddrs []string
	left, right         net.Conn
}

// connect dials the right neighbour's raw listener and accepts the left
// neighbour's connection.
func (m *arRing) connect(lis net.Listener) error {
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := lis.Accept()
		ch <- accepted{c, err}
	}()
	right, err := net.DialTimeout("tcp", m.rawAddrs[(m.rank+1)%m.world], 10*time.Second)
	if err != nil {
		return err
	}
	m.right = right
	a := <-ch
	if a.err != nil {
		return a.err
	}
	m.left = a.c
	return nil
}

func (m *arRing) close() {
	for _, c := range []net.Conn{m.left, m.right} {
		if c != nil {
			c.Close()
		}
	}
}

func (m *arRing) run(kind string, iters int, round uint64, buf []float32) error {
	comp := map[string]collective.Compression{"none": collective.None, "fp16": collective.FP16, "int8": collective.Int8}
	for i := range iters {
		if kind == "raw" {
			if err := rawAllReduce(m.left, m.right, m.rank, m.world, m.chunk, buf); err != nil {
				return err
			}
			continue
		}
		c, ok := comp[kind]
		if !ok {
			return fmt.Errorf("unknown kind %q", kind)
		}
		cfg := collective.Config{Rank: m.rank, World: m.world, Addrs: m.grpcAddrs, Round: round + uint64(i),
			Timeout: 30 * time.Second, Compression: c}
		if _, err := m.node.AllReduce(context.Background(), cfg, buf, 1); err != nil {
			return err
		}
	}
	return nil
}

// rawAllReduce is the baseline: the same ring schedule as the collective,
// over plain TCP. Reduce-scatter then all-gather, N−1 steps each; step t
// sends segment sendSeg(t) to the right neighbour while receiving
// recvSeg(t) from the left, cut into chunks of chunkBytes so that chunk c
// of step t goes out as soon as chunk c of step t−1 has arrived (and, in
// the reduce-scatter, been added in). The reduction is a plain float32 sum
// (no weighting, no compression, no checksums, no framing): what any
// all-reduce must do at the least. Buffers are sent and received in place
// as bytes of the float32 slice (host byte order: every member is this
// host).
func rawAllReduce(left, right net.Conn, r, N, chunkBytes int, buf []float32) error {
	L := len(buf)
	ce := max(1, chunkBytes/4)
	mod := func(x int) int { return ((x % N) + N) % N }
	seg := func(k int) (int, int) { return k * L / N, (k + 1) * L / N }
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
	steps := 2 * (N - 1)
	nchunks := func(k int) int {
		lo, hi := seg(k)
		return (hi - lo + ce - 1) / ce
	}
	total := 0
	for t := range steps {
		total += nchunks(recvSeg(t))
	}
	bytesOf := func(f []float32) []byte {
		if len(f) == 0 {
			return nil
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
	}

	tokens := make(chan struct{}, total)
	step0 := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			defer func() {
				select {
				case <-step0:
				default:
					close(step0)
				}
			}()
			for t := range steps {
				if t == 1 {
					close(step0)
				}
				lo, hi := seg(sendSeg(t))
				for off := lo; off < hi; off += ce {
					if t > 0 {
						if _, ok := <-tokens; !ok {
							return errors.New("receiver failed")
						}
					}
					if _, err := right.Write(bytesOf(buf[off:min(off+ce, hi)])); err != nil {
						return err
					}
				}
			}
			return nil
		}()
	}()

	tmp := make([]float32, ce)
	recvErr := func() error {
		defer close(tokens)
		for t := range steps {
			if t == N-1 {
				<-step0 // the all-gather overwrites the segment step 0 sent
			}
			lo, hi := seg(recvSeg(t))
			for off := lo; off < hi; off += ce {
				dst := buf[off:min(off+ce, hi)]
				if t < N-1 {
					src := tmp[:len(dst)]
					if _, err := io.ReadFull(left, bytesOf(src)); err != nil {
						return err
					}
					for i, v := range src {
						dst[i] += v
					}
				} else if _, err := io.ReadFull(left, bytesOf(dst)); err != nil {
					return err
				}
				tokens <- struct{}{}
			}
		}
		return nil
	}()
	if recvErr != nil {
		left.Close()
		right.Close()
		<-sendErr
		return recvErr
	}
	return <-sendErr
}
