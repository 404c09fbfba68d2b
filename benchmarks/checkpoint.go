//go:build unix

package benchmarks

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/internal/s3test"
	"github.com/megha-ml/megha/train"
)

// Checkpoints (package checkpoint), against a real MinIO server on
// loopback and the built-in trainer:
//
//	checkpoint-upload    MB/s of a 256 MiB checkpoint through Writer.Save +
//	                     Flush to an S3Store ÷ MB/s of minio-go PutObject of
//	                     the same bytes as one object
//	checkpoint-download  MB/s of checkpoint.Load (every chunk and tensor
//	                     verified) ÷ MB/s of minio-go GetObject + io.ReadFull
//	checkpoint-stall     what training waits for per checkpoint (the
//	                     in-memory copy and Save) ÷ a round's time, with the
//	                     upload to a file:// store in the background

// CheckpointBenchmarks returns checkpoint-{upload,download,stall}.
func CheckpointBenchmarks() map[string]func(context.Context, Config) (*Result, error) {
	return map[string]func(context.Context, Config) (*Result, error){
		"checkpoint-upload":   RunCheckpointUpload,
		"checkpoint-download": RunCheckpointDownload,
		"checkpoint-stall":    RunCheckpointStall,
	}
}

const (
	ckTransferGoal = 0.8
	ckStallGoal    = 0.01 // of a round's time
	ckTensorBytes  = 4 << 20
	ckRound        = 1 // the round every transfer checkpoint is saved as
)

// ckTransfer is the shape of the transfer benchmarks' runs.
type ckTransfer struct {
	tensors int // of ckTensorBytes each
	runs    int
	warmup  bool
}

func ckTransferShape(cfg Config) ckTransfer {
	if cfg.Quick {
		return ckTransfer{tensors: 4, runs: 1} // 16 MiB
	}
	return ckTransfer{tensors: 64, runs: 7, warmup: true} // 256 MiB
}

// ckS3 is a MinIO server with the clients the transfer benchmarks use:
// megha's S3Store (objects under megha/) and a raw minio-go client.
type ckS3 struct {
	srv   *s3test.Server
	raw   *minio.Client
	store *checkpoint.S3Store
	dir   string
	stop  func() error
}

// startCkS3 starts MinIO with its data in a new temporary directory.
func startCkS3(ctx context.Context) (*ckS3, error) {
	dir, err := os.MkdirTemp("", "meghabench-minio-")
	if err != nil {
		return nil, err
	}
	e := &ckS3{dir: dir}
	if err := e.connect(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// connect starts the server and makes the clients.
func (e *ckS3) connect(ctx context.Context) (err error) {
	if e.srv, e.stop, err = s3test.Launch(ctx, e.dir); err != nil {
		return err
	}
	if e.raw, err = minio.New(e.srv.Endpoint, &minio.Options{Creds: e.srv.Creds()}); err != nil {
		return err
	}
	e.store, err = checkpoint.NewS3Store(ctx, checkpoint.S3Config{Endpoint: e.srv.Endpoint, Bucket: e.srv.Bucket,
		Prefix: "megha", Creds: e.srv.Creds()})
	return err
}

// describe names the server for the notes.
func (e *ckS3) describe() string {
	v := s3test.MinIOVersion
	if e.srv.Kind == "versitygw" {
		v = s3test.VersityGWVersion
	}
	return fmt.Sprintf("%s %s on 127.0.0.1 (plain HTTP), data in a temporary directory on %s", e.srv.Kind, v, os.TempDir())
}

// close stops the server and removes its data.
func (e *ckS3) close() {
	if e.stop != nil {
		e.stop()
	}
	os.RemoveAll(e.dir)
}

// clear deletes every object in the bucket, so that the disk does not fill
// over the runs.
func (e *ckS3) clear(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range e.raw.ListObjects(ctx, e.srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("listing the bucket: %w", o.Err)
		}
		if err := e.raw.RemoveObject(ctx, e.srv.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			return fmt.Errorf("deleting %s: %w", o.Key, err)
		}
	}
	return nil
}

// ckFill fills buf with fresh random bytes.
func ckFill(buf []byte) {
	var seed [32]byte
	crand.Read(seed[:])
	rand.NewChaCha8(seed).Read(buf)
}

// ckSnapshot is a checkpoint of buf cut into float32 tensors of
// ckTensorBytes, sharing buf's memory (the writer does not change it).
func ckSnapshot(buf []byte) *checkpoint.Snapshot {
	s := &checkpoint.Snapshot{Round: ckRound, Step: 1}
	for i := 0; i < len(buf)/ckTensorBytes; i++ {
		s.Tensors = append(s.Tensors, checkpoint.Tensor{Name: fmt.Sprintf("layer%02d.weight", i), DType: checkpoint.DTypeFloat32,
			Shape: []int{ckTensorBytes / 4}, Data: buf[i*ckTensorBytes : (i+1)*ckTensorBytes : (i+1)*ckTensorBytes]})
	}
	return s
}

// ckJob is a job ID not used before in this process, so that no chunk of
// an earlier run is reused.
func ckJob(what string, run int) string {
	return fmt.Sprintf("bench-%s-%d-%d", what, run, time.Now().UnixNano())
}

// ckCost is what one timed transfer took: wall time, this process's CPU
// time and the server's (negative: unknown).
type ckCost struct{ wall, client, server time.Duration }

func (c ckCost) String() string {
	srv := "?"
	if c.server >= 0 {
		srv = fmt.Sprintf("%.3f", c.server.Seconds())
	}
	return fmt.Sprintf("%.3f / %.3f / %s s", c.wall.Seconds(), c.client.Seconds(), srv)
}

// cpu is the client's and the server's CPU time together (negative:
// unknown).
func (c ckCost) cpu() time.Duration {
	if c.server < 0 {
		return -1
	}
	return c.client + c.server
}

// measure times f, with this process's and the server's CPU time.
func (e *ckS3) measure(f func() error) (ckCost, error) {
	runtime.GC()
	c0, s0 := selfCPUTime(), e.serverCPU()
	start := time.Now()
	err := f()
	c := ckCost{wall: time.Since(start), client: selfCPUTime() - c0, server: -1}
	if s1 := e.serverCPU(); s0 >= 0 && s1 >= 0 {
		c.server = s1 - s0
	}
	return c, err
}

// serverCPU is the CPU time the server process has used, from
// /proc/PID/stat (-1 where that cannot be read).
func (e *ckS3) serverCPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.srv.Pid))
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	// Fields after the command, from field 3 (state): utime is field 14,
	// stime 15, in USER_HZ (100 per second on Linux) (proc(5)).
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(u+st) * time.Second / 100
}

// ckSeries is the measured runs of a transfer benchmark: megha, the raw
// baseline and the store-only diagnostic.
type ckSeries struct{ megha, raw, diag []ckCost }

// medianCost is the median of each of the costs' parts.
func medianCost(cs []ckCost) ckCost {
	var w, c, s []float64
	known := true
	for _, x := range cs {
		w, c, s = append(w, float64(x.wall)), append(c, float64(x.client)), append(s, float64(x.server))
		known = known && x.server >= 0
	}
	m := ckCost{wall: time.Duration(Median(w)), client: time.Duration(Median(c)), server: -1}
	if known {
		m.server = time.Duration(Median(s))
	}
	return m
}

// rates returns MB/s of each cost for n bytes.
func rates(cs []ckCost, n int) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		out[i] = round(float64(n)/1e6/c.wall.Seconds(), 1)
	}
	return out
}

// runs measures sh.runs runs (after a warm-up if sh asks for one) of one,
// which times megha, raw and the diagnostic on fresh bytes in buf, and
// deletes every object after each.
func (e *ckS3) runs(ctx context.Context, cfg Config, name string, sh ckTransfer, buf []byte,
	one func(run int) (megha, raw, diag ckCost, err error)) (*ckSeries, error) {
	s := &ckSeries{}
	total := sh.runs
	if sh.warmup {
		total++
	}
	for run := 0; run < total; run++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ckFill(buf)
		m, r, d, err := one(run)
		if err != nil {
			return nil, fmt.Errorf("%s: run %d: %w", name, run, err)
		}
		if err := e.clear(ctx); err != nil {
			return nil, fmt.Errorf("%s: run %d: %w", name, run, err)
		}
		mr, rr, dr := float64(len(buf))/1e6/m.wall.Seconds(), float64(len(buf))/1e6/r.wall.Seconds(), float64(len(buf))/1e6/d.wall.Seconds()
		if sh.warmup && run == 0 {
			cfg.logf("%s: warm-up: megha %.0f MB/s, raw %.0f MB/s, diagnostic %.0f MB/s", name, mr, rr, dr)
			continue
		}
		cfg.logf("%s: run %d: megha %.0f MB/s (wall / client CPU / server CPU %v), raw %.0f MB/s (%v), ratio %.3f; diagnostic %.0f MB/s (%v)",
			name, len(s.megha)+1, mr, m, rr, r, mr/rr, dr, d)
		s.megha, s.raw, s.diag = append(s.megha, m), append(s.raw, r), append(s.diag, d)
	}
	return s, nil
}

// cpuNote says how the CPU time compares, for the notes.
func (s *ckSeries) cpuNote() string {
	m, r := medianCost(s.megha), medianCost(s.raw)
	if m.cpu() < 0 {
		return "the server's CPU time could not be read"
	}
	return fmt.Sprintf("CPU time of client and server together: raw %.3f s ÷ megha %.3f s = %.2f (the %d cores are shared by "+
		"client, server and whatever else runs, so the transfer is CPU-bound and the throughput ratio tends to this one)",
		r.cpu().Seconds(), m.cpu().Seconds(), r.cpu().Seconds()/m.cpu().Seconds(), runtime.NumCPU())
}

// meghaUpload saves buf as a checkpoint of job through a new Writer and
// waits for the commit.
func (e *ckS3) meghaUpload(ctx context.Context, job string, buf []byte) (ckCost, error) {
	var res checkpoint.Result
	var mu sync.Mutex
	w := checkpoint.NewWriter(e.store, job, checkpoint.WriterOptions{OnDone: func(r checkpoint.Result) {
		mu.Lock()
		res = r
		mu.Unlock()
	}})
	defer w.Close()
	snap := ckSnapshot(buf)
	c, err := e.measure(func() error {
		w.Save(snap)
		return w.Flush(ctx)
	})
	if err != nil {
		return c, err
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Bytes != int64(len(buf)) || res.Uploaded != int64(len(buf)) || res.Reused != 0 {
		return c, fmt.Errorf("checkpoint of %d bytes: uploaded %d of %d, %d chunks reused; want all uploaded", len(buf), res.Uploaded, res.Bytes, res.Reused)
	}
	return c, nil
}

// rawUpload puts buf as one object with minio-go's default options.
func (e *ckS3) rawUpload(ctx context.Context, key string, buf []byte) (ckCost, error) {
	return e.measure(func() error {
		info, err := e.raw.PutObject(ctx, e.srv.Bucket, key, bytes.NewReader(buf), int64(len(buf)), minio.PutObjectOptions{})
		if err != nil {
			return fmt.Errorf("raw PutObject: %w", err)
		}
		if info.Size != int64(len(buf)) {
			return fmt.Errorf("raw PutObject: stored %d bytes of %d", info.Size, len(buf))
		}
		return nil
	})
}

// storeUpload is the upload diagnostic: the tensors of buf put through the
// same S3Store 4 at a time, as the writer does, without the writer.
func (e *ckS3) storeUpload(ctx context.Context, prefix string, buf []byte) (ckCost, error) {
	return e.measure(func() error {
		return ckParallel(len(buf)/ckTensorBytes, ckParallelism, func(i int) error {
			part := buf[i*ckTensorBytes : (i+1)*ckTensorBytes]
			return e.store.Put(ctx, fmt.Sprintf("%s/%02d", prefix, i), bytes.NewReader(part), int64(len(part)))
		})
	})
}

// ckParallelism is WriterOptions.Parallel's default and Load's readers.
const ckParallelism = 4

// ckParallel calls f(0..n-1), par at a time, and returns the errors.
func ckParallel(n, par int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, par)
	for w := range par {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hashSeconds is how long one SHA-256 over buf takes on one core.
func hashSeconds(buf []byte) float64 {
	start := time.Now()
	sha256.Sum256(buf)
	return time.Since(start).Seconds()
}

// rawPutShape describes how minio-go's PutObject sends n bytes with its
// default options (parts of 16 MiB above 16 MiB, 4 at a time).
func rawPutShape(n int) string {
	const part = 16 << 20
	if n <= part {
		return "a single PUT"
	}
	return fmt.Sprintf("a multipart upload of %d parts of 16 MiB, 4 at a time", (n+part-1)/part)
}

// RunCheckpointUpload measures the upload of a checkpoint to S3.
func RunCheckpointUpload(ctx context.Context, cfg Config) (*Result, error) {
	loadAvg := loadAverage()
	sh := ckTransferShape(cfg)
	e, err := startCkS3(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint-upload: %w", err)
	}
	defer e.close()
	buf := make([]byte, sh.tensors*ckTensorBytes)
	s, err := e.runs(ctx, cfg, "checkpoint-upload", sh, buf, func(run int) (m, r, d ckCost, err error) {
		if m, err = e.meghaUpload(ctx, ckJob("upload", run), buf); err != nil {
			return
		}
		if r, err = e.rawUpload(ctx, fmt.Sprintf("raw/%d", run), buf); err != nil {
			return
		}
		if d, err = e.storeUpload(ctx, fmt.Sprintf("diag/%d", run), buf); err != nil {
			err = fmt.Errorf("store-only diagnostic: %w", err)
		}
		return
	})
	if err != nil {
		return nil, err
	}
	hashSec := hashSeconds(buf)
	megha, raw := rates(s.megha, len(buf)), rates(s.raw, len(buf))
	ratios := pairRatios(megha, raw)
	fig, base := Median(megha), Median(raw)
	notes := fmt.Sprintf("%s; %d random float32 tensors of %d MiB = %d MiB, fresh random bytes and a fresh job ID each run "+
		"(nothing reused); megha = checkpoint.Writer with default options (8 MiB chunks, so one 4 MiB chunk per tensor, %d chunks; "+
		"Parallel 4) Save + Flush, from Save to the manifest's commit, to an S3Store with default options (16 MiB part size, "+
		"4 threads: each chunk is one PUT, its payload unsigned with a CRC32C trailer, as S3Store.Put sends it: the writer has "+
		"hashed the chunk already); raw = one minio-go PutObject of the same %d MiB from a bytes.Reader with minio-go's "+
		"default options (16 MiB parts, 4 threads, as the S3Store's): %s, which over plain HTTP SHA-256-hashes every part to "+
		"sign it (streaming SigV4) for MinIO to check; MB = 10⁶ bytes; %d interleaved runs "+
		"(megha, raw, diagnostic)%s, objects deleted after each; diagnostic = the same %d tensors put through the same S3Store "+
		"4 at a time without the writer (so without its SHA-256): %.0f MB/s; median wall / client CPU / server CPU: megha %v, "+
		"raw %v, diagnostic %v; %s; megha's extra client CPU over the diagnostic is the writer's one SHA-256 pass over the "+
		"data (the SHA-256 of the whole %d MiB on one core takes %.3f s, %.0f MB/s), where raw pays minio-go's signing hash instead; "+
		"the server's CPU differs by MinIO's cost of %d objects of 4 MiB (and the manifest) instead of %s, less the signature checks; "+
		"pair ratios %s; 1-minute load average at the start %s",
		e.describe(), sh.tensors, ckTensorBytes>>20, len(buf)>>20, sh.tensors, len(buf)>>20, rawPutShape(len(buf)),
		sh.runs, warmupNote(sh.warmup), sh.tensors, Median(rates(s.diag, len(buf))),
		medianCost(s.megha), medianCost(s.raw), medianCost(s.diag), s.cpuNote(),
		len(buf)>>20, hashSec, float64(len(buf))/1e6/hashSec, sh.tensors, rawPutShape(len(buf)), fmtList(ratios), loadAvg)
	return &Result{
		Name: "checkpoint-upload", Figure: round(fig, 1), Unit: "MB/s",
		Baseline: ptr(round(base, 1)), BaselineName: "minio-go PutObject of the same bytes, one object, MB/s",
		Ratio: round(fig/base, 3), Goal: ckTransferGoal, Better: Higher, Runs: sh.runs,
		Machine: ThisMachine(), Date: Today(), Notes: notes, Samples: megha, BaselineSamples: raw,
	}, nil
}

// RunCheckpointDownload measures the restore of a checkpoint from S3.
func RunCheckpointDownload(ctx context.Context, cfg Config) (*Result, error) {
	loadAvg := loadAverage()
	sh := ckTransferShape(cfg)
	e, err := startCkS3(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint-download: %w", err)
	}
	defer e.close()
	buf := make([]byte, sh.tensors*ckTensorBytes)
	s, err := e.runs(ctx, cfg, "checkpoint-download", sh, buf, func(run int) (ckCost, ckCost, ckCost, error) {
		return e.downloadRun(ctx, run, buf)
	})
	if err != nil {
		return nil, err
	}
	hashSec := hashSeconds(buf)
	megha, raw := rates(s.megha, len(buf)), rates(s.raw, len(buf))
	ratios := pairRatios(megha, raw)
	fig, base := Median(megha), Median(raw)
	notes := fmt.Sprintf("%s; %d random float32 tensors of %d MiB = %d MiB written (untimed) each run as a checkpoint of a "+
		"fresh job (default Writer options: 8 MiB chunks, so %d chunks of 4 MiB) and as one raw object; megha = checkpoint.Load "+
		"(the manifest, then every chunk fetched 4 at a time and checked against its size and SHA-256 as it streams in; "+
		"a tensor's hash is a digest of its chunk list) into new buffers; raw = one minio-go GetObject + io.ReadFull into a new "+
		"%d MiB buffer; both results compared with the bytes written (untimed); MB = 10⁶ bytes; %d interleaved runs "+
		"(megha, raw, diagnostic)%s, objects deleted after each; diagnostic = the same %d chunks fetched through the same "+
		"S3Store 4 at a time into new buffers without hashing: %.0f MB/s; median wall / client CPU / server CPU: megha %v, "+
		"raw %v, diagnostic %v; %s; megha's extra client CPU over the diagnostic is the one SHA-256 pass that verifies "+
		"the data (the SHA-256 of the whole %d MiB on one core takes %.3f s, %.0f MB/s): on loopback that pass costs "+
		"about as much CPU as the whole raw transfer; pair ratios %s; 1-minute load average at the start %s",
		e.describe(), sh.tensors, ckTensorBytes>>20, len(buf)>>20, sh.tensors, len(buf)>>20, sh.runs, warmupNote(sh.warmup),
		sh.tensors, Median(rates(s.diag, len(buf))), medianCost(s.megha), medianCost(s.raw), medianCost(s.diag), s.cpuNote(),
		len(buf)>>20, hashSec, float64(len(buf))/1e6/hashSec, fmtList(ratios), loadAvg)
	return &Result{
		Name: "checkpoint-download", Figure: round(fig, 1), Unit: "MB/s",
		Baseline: ptr(round(base, 1)), BaselineName: "minio-go GetObject + io.ReadFull of the same bytes, one object, MB/s",
		Ratio: round(fig/base, 3), Goal: ckTransferGoal, Better: Higher, Runs: sh.runs,
		Machine: ThisMachine(), Date: Today(), Notes: notes, Samples: megha, BaselineSamples: raw,
	}, nil
}

// downloadRun writes buf as a checkpoint and as a raw object (untimed),
// then times Load, the raw read and the diagnostic read of the chunks.
func (e *ckS3) downloadRun(ctx context.Context, run int, buf []byte) (megha, raw, diag ckCost, err error) {
	job := ckJob("download", run)
	if _, err = e.meghaUpload(ctx, job, buf); err != nil {
		return
	}
	key := fmt.Sprintf("raw/%d", run)
	if _, err = e.rawUpload(ctx, key, buf); err != nil {
		return
	}

	var c *checkpoint.Checkpoint
	megha, err = e.measure(func() (err error) {
		c, err = checkpoint.Load(ctx, e.store, job, ckRound)
		return err
	})
	if err != nil {
		return
	}
	if len(c.Tensors) != len(buf)/ckTensorBytes {
		err = fmt.Errorf("Load: %d tensors, saved %d", len(c.Tensors), len(buf)/ckTensorBytes)
		return
	}
	var chunks []string
	for i, t := range c.Tensors {
		if !bytes.Equal(t.Data, buf[i*ckTensorBytes:(i+1)*ckTensorBytes]) {
			err = fmt.Errorf("Load: tensor %s differs from what was saved", t.Name)
			return
		}
		for _, ch := range c.Manifest.Tensors[i].Chunks {
			chunks = append(chunks, ch.SHA256)
		}
	}
	c = nil

	var dst []byte
	raw, err = e.measure(func() (err error) {
		dst, err = e.rawRead(ctx, key, len(buf))
		return err
	})
	if err != nil {
		return
	}
	if !bytes.Equal(dst, buf) {
		err = errors.New("raw GetObject: the bytes differ from what was put")
		return
	}
	dst = nil

	diag, err = e.measure(func() error {
		return ckParallel(len(chunks), ckParallelism, func(i int) error {
			rc, err := e.store.Get(ctx, checkpoint.ChunkKey(job, chunks[i]))
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadFull(rc, make([]byte, ckTensorBytes))
			return err
		})
	})
	if err != nil {
		err = fmt.Errorf("store-only diagnostic: %w", err)
	}
	return
}

// rawRead reads an object of n bytes into a new buffer.
func (e *ckS3) rawRead(ctx context.Context, key string, n int) ([]byte, error) {
	obj, err := e.raw.GetObject(ctx, e.srv.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("raw GetObject: %w", err)
	}
	defer obj.Close()
	dst := make([]byte, n)
	if _, err := io.ReadFull(obj, dst); err != nil {
		return nil, fmt.Errorf("raw GetObject: %w", err)
	}
	return dst, nil
}

func warmupNote(w bool) string {
	if w {
		return " after one warm-up run"
	}
	return ""
}

// Stall benchmark parameters.
const (
	ckStallModel = "transformer-small"
	ckStallJob   = "bench-stall"
)

// soloReducer is a one-member all-reduce: the mean is the buffer itself.
type soloReducer struct{}

func (soloReducer) AllReduce(context.Context, []float32, float64) (int64, int64, error) {
	return 0, 0, nil
}

// ckInterval is a span of time: a step, or an upload.
type ckInterval struct{ start, end time.Time }

func (a ckInterval) overlaps(b ckInterval) bool {
	return a.start.Before(b.end) && b.start.Before(a.end)
}

// RunCheckpointStall measures what a checkpoint costs training: the
// built-in trainer runs DiLoCo rounds of H inner steps on one replica, and
// after each round copies θ and the outer momentum (checkpoint.Float32Tensor
// per parameter view) and hands them to a Writer, whose upload to a
// file:// store overlaps the next round's steps.
func RunCheckpointStall(ctx context.Context, cfg Config) (*Result, error) {
	loadAvg := loadAverage()
	H, rounds, batch := 20, 5, 16
	if cfg.Quick {
		H, rounds, batch = 3, 2, 4
	}
	cores := runtime.NumCPU()
	pool := train.NewPool(cores)
	defer pool.Close()
	m, err := train.NewModel(ckStallModel, batch, 1, pool)
	if err != nil {
		return nil, err
	}
	src, err := train.NewSynthetic(train.SyntheticConfig{Seed: 1, Order: 2, Branch: 4, Alphabet: 256})
	if err != nil {
		return nil, err
	}
	tr := train.NewTrainer(m, train.DefaultAdamW(), train.DefaultSchedule(ckStallModel, (rounds+1)*H+1))
	rep := train.NewReplica(tr, train.DiLoCo, train.DefaultOuter())
	b := train.NewBatch(batch, m.ContextLen())

	dir, err := os.MkdirTemp("", "meghabench-ckpt-stall-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	store, err := checkpoint.Open(ctx, "file://"+dir)
	if err != nil {
		return nil, err
	}
	var (
		umu     sync.Mutex
		uploads = map[uint64]*ckInterval{} // by round
		results []checkpoint.Result
	)
	w := checkpoint.NewWriter(store, ckStallJob, checkpoint.WriterOptions{OnDone: func(r checkpoint.Result) {
		now := time.Now()
		umu.Lock()
		defer umu.Unlock()
		if u := uploads[r.Round]; u != nil {
			u.end = now
		}
		results = append(results, r)
	}})
	defer w.Close()

	cursor, curRound := 0, 0
	var steps []ckStep
	// runRound does h inner steps (timing each: a step runs from one call
	// of next to the next), the all-reduce of one and the outer step.
	runRound := func(h int) error {
		var stamps []time.Time
		next := func(i int, b *train.Batch) {
			stamps = append(stamps, time.Now())
			src.Fill(b, 0, cursor+i)
		}
		res, err := rep.Inner(ctx, h, b, next)
		end := time.Now()
		if err != nil {
			return err
		}
		cursor += h
		for i, s := range stamps {
			e := end
			if i+1 < len(stamps) {
				e = stamps[i+1]
			}
			steps = append(steps, ckStep{ckInterval{s, e}, curRound})
		}
		if _, err := rep.Reduce(ctx, soloReducer{}, res); err != nil {
			return err
		}
		rep.Commit()
		return nil
	}
	views := m.Views()
	snapshot := func(r uint64) *checkpoint.Snapshot {
		st := rep.State()
		split := func(prefix string, v []float32) []checkpoint.Tensor {
			ts := make([]checkpoint.Tensor, len(views))
			for i, pv := range views {
				ts[i] = checkpoint.Float32Tensor(prefix+pv.Name, pv.Shape, v[pv.Offset:pv.Offset+pv.Size()])
			}
			return ts
		}
		info, _ := train.Describe(ckStallModel)
		return &checkpoint.Snapshot{
			Round: r, Step: uint64(st.Step), Tokens: uint64(st.Step * m.Tokens(b)),
			Model: checkpoint.ModelConfig{Name: ckStallModel, Params: info.Params, BatchSize: batch,
				ContextLen: m.ContextLen(), Seed: 1, Algorithm: rep.Algo.String()},
			Tensors:   split("model/", st.Params),
			Optimizer: &checkpoint.OptimizerState{Name: "nesterov", LR: rep.Outer.LR, Momentum: rep.Outer.Momentum, Tensors: split("outer/", st.Momentum)},
			Cursors:   map[string]uint64{"0": uint64(cursor)},
			Meta:      map[string]string{"schedule_step": strconv.Itoa(st.Step)},
		}
	}

	// Warm-up: one step, not measured.
	if err := runRound(1); err != nil {
		return nil, err
	}
	steps = steps[:0]
	cfg.logf("checkpoint-stall: %s, batch %d, H=%d, %d rounds with a checkpoint after each, then one more round", ckStallModel, batch, H, rounds)
	var stalls []time.Duration
	for curRound = 1; curRound <= rounds+1; curRound++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := runRound(H); err != nil {
			return nil, err
		}
		roundTime := time.Since(start)
		if curRound > rounds {
			break // the last round only overlaps the last upload
		}
		t0 := time.Now()
		snap := snapshot(uint64(curRound))
		umu.Lock()
		uploads[uint64(curRound)] = &ckInterval{start: t0} // the upload starts once Save returns; training is stalled till then
		umu.Unlock()
		w.Save(snap)
		stall := time.Since(t0)
		stalls = append(stalls, stall)
		cfg.logf("checkpoint-stall: round %d: %v (%v/step), checkpoint stall %v", curRound, roundTime.Round(time.Millisecond),
			(roundTime / time.Duration(H)).Round(time.Millisecond), stall.Round(time.Microsecond))
	}
	if err := w.Flush(ctx); err != nil {
		return nil, err
	}
	umu.Lock()
	var ups []ckInterval
	var upDur []float64
	var ckBytes int64
	for _, r := range results {
		if r.Err != nil {
			umu.Unlock()
			return nil, r.Err
		}
		ckBytes = r.Bytes
		upDur = append(upDur, r.Duration.Seconds())
	}
	for _, u := range uploads {
		ups = append(ups, *u)
	}
	umu.Unlock()
	if len(results) != rounds {
		return nil, fmt.Errorf("checkpoint-stall: %d checkpoints committed of %d", len(results), rounds)
	}

	// The upload's own cost, measured alone: the current state saved to a
	// new job (so that no chunk is reused) with nothing else running.
	var aloneWall, aloneCPU []float64
	for i := range 3 {
		aw := checkpoint.NewWriter(store, fmt.Sprintf("%s-alone-%d", ckStallJob, i), checkpoint.WriterOptions{})
		snap := snapshot(uint64(rounds + 1))
		runtime.GC()
		c0, t0 := selfCPUTime(), time.Now()
		aw.Save(snap)
		err := aw.Flush(ctx)
		aloneWall, aloneCPU = append(aloneWall, time.Since(t0).Seconds()), append(aloneCPU, (selfCPUTime()-c0).Seconds())
		aw.Close()
		if err != nil {
			return nil, err
		}
	}

	// Steps during an upload vs steps with none in flight: over the run,
	// and within each round (the machine is shared, and its speed drifts
	// from round to round).
	var during, quiet, local []float64
	var control float64 // round 1's first step ÷ its other steps: no upload, but the first after a commit
	for r := 1; r <= rounds+1; r++ {
		var busy, calm []float64
		for _, s := range steps {
			if s.round != r {
				continue
			}
			d := s.end.Sub(s.start).Seconds()
			if slices.ContainsFunc(ups, s.overlaps) {
				busy = append(busy, d)
			} else {
				calm = append(calm, d)
			}
		}
		during, quiet = append(during, busy...), append(quiet, calm...)
		if len(busy) > 0 && len(calm) > 0 {
			local = append(local, mean(busy)/Median(calm))
		}
		if r == 1 {
			var first float64
			var rest []float64
			for _, s := range steps {
				if s.round == 1 {
					if first == 0 {
						first = s.end.Sub(s.start).Seconds()
					} else {
						rest = append(rest, s.end.Sub(s.start).Seconds())
					}
				}
			}
			if len(rest) > 0 {
				control = first / Median(rest)
			}
		}
	}
	if len(quiet) == 0 || len(during) == 0 {
		return nil, fmt.Errorf("checkpoint-stall: %d steps during uploads and %d without; need both", len(during), len(quiet))
	}
	stepQuiet, stepDuring := mean(quiet), mean(during)
	roundSec := float64(H) * stepQuiet
	var fracs, stallMs []float64
	for _, s := range stalls {
		fracs = append(fracs, s.Seconds()/roundSec)
		stallMs = append(stallMs, float64(s.Microseconds())/1e3)
	}
	fig := Median(fracs)
	info, _ := train.Describe(ckStallModel)
	slices.Sort(upDur)
	notes := fmt.Sprintf("%s (%d params), batch %d×%d, DiLoCo on one replica (one-member all-reduce, outer Nesterov step, commit), "+
		"H=%d inner steps per round on a train.Pool of %d, %d rounds each followed by a checkpoint, then one more round; "+
		"the checkpoint is what the worker saves: θ and the outer momentum copied per parameter view (checkpoint.Float32Tensor, "+
		"%d tensors, %.1f MB) and given to Writer.Save, whose upload (default options) to a file:// store in a temporary "+
		"directory runs in the background during the next round; figure = median over checkpoints of the loop's wait (copy + Save) "+
		"÷ the round time H × mean step time, the mean over the steps with no upload in flight (%.3f s/step, %.2f s/round); "+
		"waits %s ms (median %.3f ms); uploads took %.0f–%.0f ms each, overlapping %d of the run's %d steps; "+
		"slowdown of a step while an upload runs in the background (its SHA-256 and file writes compete for the %d cores): "+
		"mean %.3f s over the %d steps overlapping an upload ÷ %.3f s over the %d with none = %.3f, which mostly measures how the "+
		"shared machine's speed drifts between rounds; within each round, the overlapping step ÷ the median of the round's other "+
		"steps: %s (median %.3f; round 1's first step, with no upload, ÷ its other steps: %.3f): single steps on the shared "+
		"machine vary too much to show an effect this small, so the CPU bound that follows is the firmer figure; "+
		"the same upload measured alone afterwards (nothing else running, a new job so that nothing is reused): wall %.0f ms, "+
		"CPU %.0f ms (medians of 3), so an upload can take at most about %.2f%% of a round's CPU time (%d cores × round), "+
		"and a checkpoint costs training about (wait + upload CPU ÷ cores) ÷ round = %.3f%% of a round; "+
		"1-minute load average at the start %s",
		ckStallModel, info.Params, batch, m.ContextLen(), H, cores, rounds, 2*len(views), float64(ckBytes)/1e6,
		stepQuiet, roundSec, fmtList3(stallMs), Median(stallMs), 1e3*upDur[0], 1e3*upDur[len(upDur)-1], len(during), len(steps),
		cores, stepDuring, len(during), stepQuiet, len(quiet), stepDuring/stepQuiet, fmtList3(local), Median(local), control,
		1e3*Median(aloneWall), 1e3*Median(aloneCPU), 100*Median(aloneCPU)/(float64(cores)*roundSec), cores,
		100*(Median(stallMs)/1e3+Median(aloneCPU)/float64(cores))/roundSec, loadAvg)
	return &Result{
		Name: "checkpoint-stall", Figure: round(fig, 6), Unit: "of a round",
		BaselineName: fmt.Sprintf("round time (H=%d × mean step time), same run (ratio = figure)", H),
		Ratio:        round(fig, 6), Goal: ckStallGoal, Better: Lower, Runs: len(fracs),
		Machine: ThisMachine(), Date: Today(), Notes: notes, Samples: roundAll(fracs, 6), P90: ptr(round(Percentile(fracs, 90), 6)),
	}, nil
}

// ckStep is one inner step and the round it belongs to.
type ckStep struct {
	ckInterval
	round int
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func fmtList3(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += strconv.FormatFloat(x, 'f', 3, 64)
	}
	return s
}

func roundAll(xs []float64, digits int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = round(x, digits)
	}
	return out
}

// pairRatios divides each run's figure by the baseline of the same run.
func pairRatios(fig, base []float64) []float64 {
	out := make([]float64, len(fig))
	for i := range fig {
		out[i] = fig[i] / base[i]
	}
	return out
}
