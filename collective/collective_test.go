package collective

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func startNodes(t *testing.T, n int) ([]*Node, []string) {
	t.Helper()
	nodes := make([]*Node, n)
	addrs := make([]string, n)
	for i := range nodes {
		nd, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nodes[i], addrs[i] = nd, nd.Addr()
		t.Cleanup(func() { nd.Close() })
	}
	return nodes, addrs
}

type result struct {
	st  Stats
	err error
	at  time.Duration
}

// runAll runs AllReduce on every rank in ranks concurrently; bufs are
// reduced in place.
func runAll(nodes []*Node, base Config, bufs [][]float32, weights []float64, ranks []int) []result {
	res := make([]result, len(nodes))
	var wg sync.WaitGroup
	start := time.Now()
	for _, r := range ranks {
		wg.Go(func() {
			cfg := base
			cfg.Rank = r
			st, err := nodes[r].AllReduce(context.Background(), cfg, bufs[r], weights[r])
			res[r] = result{st, err, time.Since(start)}
		})
	}
	wg.Wait()
	return res
}

func allRanks(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

func inputs(seed uint64, n, l int) ([][]float32, []float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	bufs := make([][]float32, n)
	ws := make([]float64, n)
	for i := range bufs {
		bufs[i] = make([]float32, l)
		for j := range bufs[i] {
			// Mixed magnitudes so quantization is exercised.
			bufs[i][j] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(3)-1)))
		}
		ws[i] = float64(1 + i%3)
	}
	return bufs, ws
}

func reference(bufs [][]float32, ws []float64) (ref []float64, maxAbs float64) {
	ref = make([]float64, len(bufs[0]))
	var W float64
	for i, b := range bufs {
		W += ws[i]
		for j, v := range b {
			ref[j] += ws[i] * float64(v)
			maxAbs = max(maxAbs, math.Abs(float64(v)))
		}
	}
	for j := range ref {
		ref[j] /= W
	}
	return ref, maxAbs
}

// errorBound is the bound asserted on |result − exact weighted mean| per
// element, with M = max |input| over all members and elements:
//
//	none: 1e-5·M (float32 rounding of N pre-scaled terms; observed ~1e-7·M)
//	fp16: N·2⁻¹¹·M·1.01 + N·2⁻²⁴ — the value is rounded to half N times
//	      (N−1 reduce-scatter hops, one all-gather), each with relative error
//	      ≤ 2⁻¹¹ of a partial sum ≤ Σw·M, or ≤ 2⁻²⁵ absolute when subnormal
//	int8: N·M/254·1.05 — N quantizations, each ≤ scale/2 = blockmax/254 with
//	      blockmax ≤ Σw·M (5% slack for already-quantized partial sums)
func errorBound(c Compression, n int, M float64) float64 {
	switch c {
	case FP16:
		return float64(n)*math.Ldexp(M, -11)*1.01 + float64(n)*math.Ldexp(1, -24)
	case Int8:
		return float64(n) * M / 254 * 1.05
	}
	return 1e-5 * M
}

func TestHalfConversion(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {1e6, 0x7bff},
		{float32(math.Inf(-1)), 0xfbff}, {0.5, 0x3800}, {float32(math.Ldexp(1, -24)), 1},
		{float32(math.Ldexp(1, -14)), 0x0400}, {1 + 1.0/2048, 0x3c00} /* tie to even */, {1 + 3.0/2048, 0x3c02},
		{float32(math.Ldexp(1, -26)), 0},
	}
	for _, c := range cases {
		if got := Float32ToHalf(c.f); got != c.h {
			t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	// Every finite half converts to float32 and back unchanged.
	for h := range 1 << 16 {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := Float32ToHalf(HalfToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("round trip of %#04x gave %#04x", h, got)
		}
	}
	if !math.IsNaN(float64(HalfToFloat32(Float32ToHalf(float32(math.NaN()))))) {
		t.Error("NaN did not stay NaN")
	}
	// Relative rounding error of normal values is at most 2^-11.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(28)-13))
		g := HalfToFloat32(Float32ToHalf(f))
		if math.Abs(float64(g-f)) > math.Ldexp(math.Abs(float64(f)), -11) {
			t.Fatalf("%g -> %g exceeds 2^-11 relative", f, g)
		}
	}
}

func TestInt8Codec(t *testing.T) {
	x := make([]float32, 600)
	for i := range x {
		x[i] = float32(math.Sin(float64(i))) * float32(1+i/256*10)
	}
	scales, data := NewCompressor(Int8, false).Encode(x, 0)
	if len(scales) != 3 || len(data) != 600 {
		t.Fatalf("got %d scales and %d bytes", len(scales), len(data))
	}
	y := make([]float32, 600)
	if err := Decode(Int8, scales, data, y); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if d := math.Abs(float64(x[i] - y[i])); d > float64(scales[i/256])/2*1.0001 {
			t.Fatalf("index %d: error %g > scale/2 = %g", i, d, scales[i/256]/2)
		}
	}
	if err := Decode(Int8, scales[:2], data, y); err == nil {
		t.Fatal("short scales accepted")
	}
}

func TestAllReduceMatchesReference(t *testing.T) {
	round := uint64(0)
	for n := 1; n <= 8; n++ {
		nodes, addrs := startNodes(t, n)
		for _, l := range []int{1, 7, 1000, 4097} {
			for _, comp := range []Compression{None, FP16, Int8} {
				round++
				bufs, ws := inputs(round, n, l)
				ref, M := reference(bufs, ws)
				orig := bufs[0][0]
				cfg := Config{World: n, Addrs: addrs, Round: round, Timeout: 5 * time.Second,
					ChunkBytes: 1024, Compression: comp}
				res := runAll(nodes, cfg, bufs, ws, allRanks(n))
				bound := errorBound(comp, n, M)
				for r := range n {
					if res[r].err != nil {
						t.Fatalf("N=%d len=%d %v rank %d: %v", n, l, comp, r, res[r].err)
					}
					if n == 1 {
						if bufs[0][0] != orig {
							t.Fatalf("N=1 changed the buffer")
						}
						continue
					}
					for j, v := range bufs[r] {
						if d := math.Abs(float64(v) - ref[j]); d > bound {
							t.Fatalf("N=%d len=%d %v rank %d index %d: got %g want %g (error %g > bound %g)",
								n, l, comp, r, j, v, ref[j], d, bound)
						}
						if v != bufs[0][j] {
							t.Fatalf("N=%d len=%d %v: ranks 0 and %d differ at %d", n, l, comp, r, j)
						}
					}
				}
			}
		}
	}
}

func TestBytesSent(t *testing.T) {
	const n, l = 4, 10000
	nodes, addrs := startNodes(t, n)
	var cum int64
	for i, comp := range []Compression{None, FP16, Int8} {
		bufs, ws := inputs(uint64(i), n, l)
		cfg := Config{World: n, Addrs: addrs, Round: uint64(i + 1), Timeout: 5 * time.Second,
			ChunkBytes: 4096, Compression: comp}
		res := runAll(nodes, cfg, bufs, ws, allRanks(n))
		perElem := map[Compression]float64{None: 4, FP16: 2, Int8: 1 + 4.0/BlockSize}[comp]
		want := 2 * float64(n-1) / n * l * perElem
		for r := range n {
			if res[r].err != nil {
				t.Fatal(res[r].err)
			}
			for _, got := range []int64{res[r].st.BytesSent, res[r].st.BytesReceived} {
				if math.Abs(float64(got)-want) > 0.01*want {
					t.Errorf("%v rank %d: %d bytes, want %.0f ± 1%%", comp, r, got, want)
				}
			}
			if res[r].st.Duration <= 0 {
				t.Errorf("no duration")
			}
		}
		cum += res[0].st.BytesSent
	}
	if got := nodes[0].Totals().BytesSent; got != cum {
		t.Errorf("node total %d, want %d", got, cum)
	}
}

func TestErrorFeedbackConverges(t *testing.T) {
	const n, l, rounds = 3, 2000, 16
	avgErr := func(feedback bool) float64 {
		nodes, addrs := startNodes(t, n)
		x, ws := inputs(99, n, l)
		ref, _ := reference(x, ws)
		rings := make([]*Ring, n)
		for r := range n {
			var err error
			rings[r], err = NewRing(nodes[r], Config{Rank: r, World: n, Addrs: addrs, Round: 1,
				Timeout: 5 * time.Second, ChunkBytes: 2048, Compression: Int8, ErrorFeedback: feedback})
			if err != nil {
				t.Fatal(err)
			}
		}
		sum := make([]float64, l)
		buf := make([][]float32, n)
		for range rounds {
			var wg sync.WaitGroup
			errs := make([]error, n)
			for r := range n {
				buf[r] = append(buf[r][:0], x[r]...)
				wg.Go(func() { _, errs[r] = rings[r].AllReduce(context.Background(), buf[r], ws[r]) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for j, v := range buf[0] {
				sum[j] += float64(v)
			}
		}
		if rings[0].Round() != 1+rounds {
			t.Fatalf("round not advanced: %d", rings[0].Round())
		}
		if feedback == (rings[0].Compressor().Residual() == nil) {
			t.Fatalf("residual state wrong for feedback=%v", feedback)
		}
		var e float64
		for j := range sum {
			e += math.Abs(sum[j]/rounds - ref[j])
		}
		return e / l
	}
	without, with := avgErr(false), avgErr(true)
	t.Logf("mean |error| of the %d-round average: without feedback %.3g, with %.3g", rounds, without, with)
	if !(with < without/3) {
		t.Fatalf("error feedback did not converge: %.3g vs %.3g without", with, without)
	}
}

func TestNonFiniteRejectedBeforeSending(t *testing.T) {
	const n = 3
	nodes, addrs := startNodes(t, n)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		bufs, ws := inputs(5, n, 100)
		bufs[1][42] = bad
		cfg := Config{World: n, Addrs: addrs, Round: 1, Timeout: 300 * time.Millisecond}
		if bad != bad {
			cfg.Round = 2
		}
		before := append([]float32(nil), bufs[0]...)
		res := runAll(nodes, cfg, bufs, ws, allRanks(n))
		want := "collective: rank 1: pseudo-gradient holds NaN at index 42"
		if bad == bad {
			want = "collective: rank 1: pseudo-gradient holds +Inf at index 42"
		}
		if res[1].err == nil || res[1].err.Error() != want {
			t.Fatalf("rank 1: got %v, want %q", res[1].err, want)
		}
		if res[1].st.BytesSent != 0 {
			t.Fatalf("rank 1 sent %d bytes", res[1].st.BytesSent)
		}
		for _, r := range []int{0, 2} {
			if res[r].err == nil {
				t.Fatalf("rank %d succeeded without rank 1", r)
			}
		}
		for j := range before {
			if bufs[0][j] != before[j] {
				t.Fatalf("failed round changed rank 0's buffer")
			}
		}
	}
	if nodes[1].Totals().BytesSent != 0 {
		t.Fatal("rank 1 node sent bytes")
	}
}

func TestBadChunksDetected(t *testing.T) {
	cases := []struct {
		name, want string
		hook       func(c *chunk)
	}{
		{"corrupt", "checksum mismatch", func(c *chunk) {
			b := c.data.Materialize()
			b[3] ^= 0x40
			c.setData(b)
		}},
		{"wrong size", "wrong size", func(c *chunk) {
			b := c.data.Materialize()
			b = b[:len(b)-4]
			c.setData(b)
			c.checksum = crc32c(b)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 3
			nodes, addrs := startNodes(t, n)
			nodes[0].testHookSend = func(rank int, c *chunk) {
				if c.step == 1 && c.index == 0 {
					tc.hook(c)
				}
			}
			bufs, ws := inputs(uint64(i), n, 3000)
			timeout := time.Second
			cfg := Config{World: n, Addrs: addrs, Round: 3, Timeout: timeout, ChunkBytes: 1024}
			res := runAll(nodes, cfg, bufs, ws, allRanks(n))
			wantPrefix := fmt.Sprintf("collective: round 3: rank 0 (%s) sent a bad chunk (step 1, chunk 0)", addrs[0])
			if res[1].err == nil || !strings.HasPrefix(res[1].err.Error(), wantPrefix) || !strings.Contains(res[1].err.Error(), tc.want) {
				t.Fatalf("rank 1: got %v, want %q … %q", res[1].err, wantPrefix, tc.want)
			}
			for r := range n {
				if res[r].err == nil {
					t.Fatalf("rank %d succeeded", r)
				}
				if res[r].at > timeout+time.Second {
					t.Fatalf("rank %d took %v", r, res[r].at)
				}
				t.Logf("rank %d after %v: %v", r, res[r].at.Round(time.Millisecond), res[r].err)
			}
		})
	}
}

func TestWrongRoundRejected(t *testing.T) {
	const n = 3
	nodes, addrs := startNodes(t, n)
	bufs, ws := inputs(1, n, 500)
	timeout := time.Second
	res := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for r := range n {
		wg.Go(func() {
			cfg := Config{Rank: r, World: n, Addrs: addrs, Round: 7, Timeout: timeout}
			if r == 1 {
				cfg.Round = 8
			}
			st, err := nodes[r].AllReduce(context.Background(), cfg, bufs[r], ws[r])
			res[r] = result{st, err, time.Since(start)}
		})
	}
	wg.Wait()
	sawWrong := false
	for r := range n {
		if res[r].err == nil {
			t.Fatalf("rank %d succeeded", r)
		}
		if res[r].at > timeout+time.Second {
			t.Fatalf("rank %d took %v", r, res[r].at)
		}
		sawWrong = sawWrong || strings.Contains(res[r].err.Error(), "wrong round")
		t.Logf("rank %d after %v: %v", r, res[r].at.Round(time.Millisecond), res[r].err)
	}
	if !sawWrong {
		t.Fatal("no error mentions the wrong round")
	}
}

func TestMemberNeverCalls(t *testing.T) {
	const n = 4
	nodes, addrs := startNodes(t, n)
	bufs, ws := inputs(1, n, 5000)
	timeout := time.Second
	cfg := Config{World: n, Addrs: addrs, Round: 7, Timeout: timeout, ChunkBytes: 1024}
	res := runAll(nodes, cfg, bufs, ws, []int{0, 1, 3})
	for _, r := range []int{0, 1, 3} {
		if res[r].err == nil {
			t.Fatalf("rank %d succeeded", r)
		}
		if res[r].at > timeout+time.Second {
			t.Fatalf("rank %d took %v", r, res[r].at)
		}
		if !strings.HasPrefix(res[r].err.Error(), "collective: round 7: rank ") {
			t.Errorf("rank %d: error does not name round and peer: %v", r, res[r].err)
		}
		t.Logf("rank %d after %v: %v", r, res[r].at.Round(time.Millisecond), res[r].err)
	}
	// Which member times out first is a race (rank 3 waits on rank 2, rank 0
	// on rank 3); the first to time out names the silent peer and the
	// others report its abort.
	if !strings.Contains(res[3].err.Error(), "sent nothing") && !strings.Contains(res[0].err.Error(), "sent nothing") {
		t.Errorf("no error names a silent peer: %v / %v", res[3].err, res[0].err)
	}
	// The ring works again afterwards, with everyone.
	cfg.Round = 8
	bufs, ws = inputs(2, n, 5000)
	for r, e := range runAll(nodes, cfg, bufs, ws, allRanks(n)) {
		if e.err != nil {
			t.Fatalf("rank %d in the next round: %v", r, e.err)
		}
	}
}

func TestMemberClosedMidRing(t *testing.T) {
	const n = 4
	nodes, addrs := startNodes(t, n)
	var once sync.Once
	nodes[2].testHookSend = func(rank int, c *chunk) {
		if c.step == 2 {
			once.Do(func() { go nodes[2].Close() })
		}
	}
	bufs, ws := inputs(1, n, 20000)
	timeout := 2 * time.Second
	cfg := Config{World: n, Addrs: addrs, Round: 7, Timeout: timeout, ChunkBytes: 1024}
	res := runAll(nodes, cfg, bufs, ws, allRanks(n))
	for r := range n {
		if res[r].err == nil {
			t.Fatalf("rank %d succeeded", r)
		}
		if res[r].at > timeout+time.Second {
			t.Fatalf("rank %d took %v", r, res[r].at)
		}
		if !strings.HasPrefix(res[r].err.Error(), "collective: round 7: rank ") {
			t.Errorf("rank %d: error does not name round and peer: %v", r, res[r].err)
		}
		t.Logf("rank %d after %v: %v", r, res[r].at.Round(time.Millisecond), res[r].err)
	}
}

func TestContextCancel(t *testing.T) {
	nodes, addrs := startNodes(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := nodes[0].AllReduce(ctx, Config{World: 2, Addrs: addrs, Round: 1, Timeout: time.Minute}, make([]float32, 10), 1)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		nodes, addrs := startNodes(t, 3)
		defer func() {
			for _, nd := range nodes {
				nd.Close()
			}
		}()
		bufs, ws := inputs(1, 3, 3000)
		cfg := Config{World: 3, Addrs: addrs, Round: 1, Timeout: 300 * time.Millisecond, ChunkBytes: 1024}
		for _, e := range runAll(nodes, cfg, bufs, ws, allRanks(3)) {
			if e.err != nil {
				t.Fatal(e.err)
			}
		}
		cfg.Round = 2
		runAll(nodes, cfg, bufs, ws, []int{0, 2}) // rank 1 never calls
	}()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestZeroWeightsAndBadConfig(t *testing.T) {
	nodes, addrs := startNodes(t, 2)
	bufs, _ := inputs(1, 2, 10)
	res := runAll(nodes, Config{World: 2, Addrs: addrs, Round: 1, Timeout: time.Second}, bufs, []float64{0, 0}, allRanks(2))
	for r, e := range res {
		if e.err != nil {
			t.Fatalf("rank %d: %v", r, e.err)
		}
		for i, v := range bufs[r] {
			if v != 0 {
				t.Fatalf("rank %d: all weights 0 gave buf[%d] = %v, want 0 (no change)", r, i, v)
			}
		}
	}
	for _, cfg := range []Config{{World: 0}, {Rank: 2, World: 2, Addrs: addrs}, {World: 2, Addrs: addrs[:1]}, {World: 2, Addrs: addrs, Compression: 9}} {
		if _, err := nodes[0].AllReduce(context.Background(), cfg, bufs[0], 1); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := nodes[0].AllReduce(context.Background(), Config{World: 2, Addrs: addrs}, bufs[0], -1); err == nil {
		t.Error("negative weight accepted")
	}
}
