//go:build unix

package checkpoint_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/megha-ml/megha/checkpoint"
)

// crashEnv makes TestCrashWriterProcess the writer process of
// TestCrashMidUpload; its value is the store's directory.
const crashEnv = "CHECKPOINT_CRASH_WRITER_DIR"

// crashChunks is how many chunk uploads of round 2 the writer process
// completes before every further one stalls halfway through its data.
const crashChunks = 3

// crashSnapshot is the state the writer process saves for a round: 16
// chunks of 4 KiB, all different from one round to the next.
func crashSnapshot(round uint64) *checkpoint.Snapshot {
	return &checkpoint.Snapshot{
		Job: testJob, Round: round, Step: round * 100,
		Tensors:   []checkpoint.Tensor{checkpoint.Float32Tensor("w", []int{128, 96}, values(int(round), 128*96))},
		Optimizer: &checkpoint.OptimizerState{Name: "nesterov", LR: 0.7, Momentum: 0.9, Tensors: []checkpoint.Tensor{checkpoint.Float32Tensor("w", []int{128, 32}, values(int(round)+100, 128*32))}},
		Cursors:   map[string]uint64{"0": round},
	}
}

// TestCrashWriterProcess is the writer process of TestCrashMidUpload, run
// by it in a child process; on its own it is skipped. It commits round 1,
// then uploads round 2 until crashChunks chunks are in and the next ones
// stall, and waits there to be killed. It reports on stdout, one line each:
//
//	committed 1
//	progress 2 CHUNKS/TOTAL
//	stalled              (a chunk upload has sent half its data and waits)
func TestCrashWriterProcess(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("the writer process of TestCrashMidUpload")
	}
	fileStore, err := checkpoint.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	store := &stallStore{Store: fileStore, say: say}
	w := checkpoint.NewWriter(store, testJob, checkpoint.WriterOptions{
		ChunkSize: 4096, Parallel: 2,
		Progress: func(p checkpoint.Progress) {
			if p.Round == 2 {
				say("progress 2 %d/%d", p.Chunks, p.ChunksTotal)
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.Save(crashSnapshot(1))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	say("committed 1")
	store.stallAfter.Store(crashChunks)
	w.Save(crashSnapshot(2))
	// Killed in here. If the test that started us died instead, give up.
	err = w.Flush(ctx)
	t.Fatalf("round 2 was not interrupted: %v", err)
}

// stallStore passes Puts through until stallAfter is set; then chunk
// Puts after the first stallAfter send half their data and stall.
type stallStore struct {
	checkpoint.Store
	say        func(string, ...any)
	stallAfter atomic.Int64
	puts       atomic.Int64
	once       sync.Once
}

func (s *stallStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if n := s.stallAfter.Load(); n > 0 && strings.Contains(key, "/chunks/") && s.puts.Add(1) > n {
		r = &stallReader{r: r, left: size / 2, stalled: func() { s.once.Do(func() { s.say("stalled") }) }, ctx: ctx}
	}
	return s.Store.Put(ctx, key, r, size)
}

// stallReader yields left bytes, then blocks until its context ends.
type stallReader struct {
	r       io.Reader
	left    int64
	stalled func()
	ctx     context.Context
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		s.stalled()
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

func TestCrashMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	// Wait until round 1 is committed, crashChunks chunks of round 2 are in,
	// and another chunk is half written.
	var committed, stalled bool
	chunks := 0
	deadline := time.After(testDeadline)
	for !committed || !stalled || chunks < crashChunks {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("writer process exited before round 2 stalled")
			}
			t.Logf("writer: %s", l)
			switch {
			case l == "committed 1":
				committed = true
			case l == "stalled":
				stalled = true
			case strings.HasPrefix(l, "progress 2 "):
				fmt.Sscanf(l, "progress 2 %d/", &chunks)
			}
		case <-deadline:
			t.Fatalf("writer process: committed %v, %d chunks of round 2, stalled %v after %v", committed, chunks, stalled, testDeadline)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("writer process: %v, want killed", err)
	}

	store, err := checkpoint.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The half-written chunk is on disk but not an object.
	listed, err := store.List(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files <= len(listed) {
		t.Errorf("%d files and %d objects: the kill did not interrupt a chunk upload", files, len(listed))
	}

	// Round 1 is the latest, intact; round 2 left no manifest.
	var log logRecorder
	c, err := checkpoint.LoadLatest(ctxT(t), store, testJob, 0, log.logf)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, c, crashSnapshot(1))
	if log.String() != "" {
		t.Errorf("LoadLatest skipped something: %s", log.String())
	}
	if got := fmt.Sprint(rounds(t, store)); got != "[1]" {
		t.Fatalf("checkpoints after the crash: %s, want [1]", got)
	}
	rep, err := checkpoint.Verify(ctxT(t), store, testJob, 1)
	if err != nil || len(rep.Problems) != 0 || rep.Chunks != 16 {
		t.Fatalf("Verify round 1: %+v, %v", rep, err)
	}

	// A restarted writer saves round 2, reusing the chunks that made it.
	w, results := testWriter(t, store, checkpoint.WriterOptions{ChunkSize: 4096})
	r := save(t, w, results, crashSnapshot(2))
	if r.Reused < crashChunks {
		t.Errorf("restarted writer reused %d chunks, want at least %d", r.Reused, crashChunks)
	}
	c, err = checkpoint.Load(ctxT(t), store, testJob, 2)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, c, crashSnapshot(2))
}
