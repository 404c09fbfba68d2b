package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain makes the test binary a child subreaper, as the worker agent
// is, so that the orphans of a killed task come back here to be reaped
// even where init does not reap them.
func TestMain(m *testing.M) {
	if err := EnableSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	logPoll = 5 * time.Millisecond
	os.Exit(m.Run())
}

// deadline is how long any condition in these tests may take.
const deadline = 10 * time.Second

func testTask(t *testing.T, command ...string) *Task {
	t.Helper()
	return &Task{
		ID: "t1", JobID: "j1", Rank: 1, World: 4,
		CoordinatorAddr: "10.0.0.1:7070,10.0.0.2:7070",
		Command:         command,
		Dir:             t.TempDir(),
	}
}

// startTask prepares and starts task on rt, and makes sure it is gone by
// the end of the test.
func startTask(t *testing.T, rt Runtime, task *Task) Handle {
	t.Helper()
	ctx := context.Background()
	if err := rt.Prepare(ctx, task); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h, err := rt.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		_ = h.Stop(0)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		if _, err := h.Wait(ctx); err != nil {
			t.Errorf("task still running at the end of the test: %v", err)
		}
	})
	return h
}

func waitResult(t *testing.T, h Handle) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	res, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return res
}

// readLines returns the whole stream, as a non-following reader sees it.
func readLines(t *testing.T, taskDir, stream string) []string {
	t.Helper()
	r, err := OpenLogs(taskDir, stream, false)
	if err != nil {
		t.Fatalf("OpenLogs: %v", err)
	}
	defer r.Close()
	var lines []string
	for {
		line, err := r.ReadLine(context.Background())
		if errors.Is(err, io.EOF) {
			return lines
		}
		if err != nil {
			t.Fatalf("ReadLine: %v", err)
		}
		lines = append(lines, line)
	}
}

// awaitLine follows the stream until a line containing want appears.
func awaitLine(t *testing.T, taskDir, stream, want string) string {
	t.Helper()
	r, err := OpenLogs(taskDir, stream, true)
	if err != nil {
		t.Fatalf("OpenLogs: %v", err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for {
		line, err := r.ReadLine(ctx)
		if err != nil {
			t.Fatalf("waiting for %q in %s: %v", want, stream, err)
		}
		if strings.Contains(line, want) {
			return line
		}
	}
}

// groupGone reports whether process group pgid has no process left,
// zombies included.
func groupGone(pgid int) bool {
	return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
