package runtime

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcessSucceeds(t *testing.T) {
	t.Setenv("MEGHA_TEST_SECRET", "hunter2")
	task := testTask(t, "/bin/sh", "-c", `echo hello; echo err >&2
echo "job=$MEGHA_JOB_ID task=$MEGHA_TASK_ID rank=$MEGHA_RANK world=$MEGHA_WORLD_SIZE"
echo "coord=$MEGHA_COORDINATOR"
echo "sock=$MEGHA_WORKER_SOCKET"
echo "dir=$MEGHA_TASK_DIR pwd=$(pwd -P)"
echo "tmp=$TMPDIR"
echo "extra=$EXTRA secret=${MEGHA_TEST_SECRET-unset} path=${PATH:+set}"`)
	task.Env = map[string]string{"EXTRA": "from the job spec"}
	h := startTask(t, NewProcessRuntime(ProcessConfig{}), task)
	if h.PID() <= 0 {
		t.Errorf("PID() = %d", h.PID())
	}

	res := waitResult(t, h)
	if !res.Success() || res.ExitCode != 0 || res.Signal != "" || res.Stopped {
		t.Errorf("result = %+v (%v), want success", res, res)
	}
	if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Errorf("started %v, finished %v", res.StartedAt, res.FinishedAt)
	}
	dir, _ := filepath.EvalSymlinks(task.Dir)
	want := []string{
		"hello",
		"job=j1 task=t1 rank=1 world=4",
		"coord=10.0.0.1:7070,10.0.0.2:7070",
		"sock=" + filepath.Join(task.Dir, "worker.sock"),
		"dir=" + task.Dir + " pwd=" + dir,
		"tmp=" + filepath.Join(task.Dir, "tmp"),
		"extra=from the job spec secret=unset path=set",
	}
	if got := readLines(t, task.Dir, Stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := readLines(t, task.Dir, Stderr); len(got) != 1 || got[0] != "err" {
		t.Errorf("stderr = %q, want [err]", got)
	}
	if err := h.Stop(time.Second); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

func TestProcessExitCode(t *testing.T) {
	task := testTask(t, "/bin/sh", "-c", "exit 3")
	res := waitResult(t, startTask(t, NewProcessRuntime(ProcessConfig{}), task))
	if res.ExitCode != 3 || res.Signal != "" || res.Err != nil || res.Success() {
		t.Errorf("result = %+v, want exit code 3", res)
	}
	if got, want := res.String(), "exit code 3"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestProcessStop(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		grace   time.Duration
		signal  string
		minTime time.Duration // Stop must not force the task before grace
	}{
		{"ends on TERM", "echo ready; exec sleep 1000", 10 * time.Second, "SIGTERM", 0},
		{"shell ends on TERM", "echo ready; sleep 1000; echo unreachable", 10 * time.Second, "SIGTERM", 0},
		{"ignores TERM", "trap '' TERM; echo ready; sleep 1000", 200 * time.Millisecond, "SIGKILL", 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := testTask(t, "/bin/sh", "-c", tt.script)
			h := startTask(t, NewProcessRuntime(ProcessConfig{}), task)
			awaitLine(t, task.Dir, Stdout, "ready")

			stopAt := time.Now()
			if err := h.Stop(tt.grace); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			res := waitResult(t, h)
			if res.Signal != tt.signal || res.ExitCode != -1 || !res.Stopped || res.Success() {
				t.Errorf("result = %+v, want stopped by %s", res, tt.signal)
			}
			if took := res.FinishedAt.Sub(stopAt); took < tt.minTime {
				t.Errorf("task ended %v after Stop, before its grace of %v", took, tt.grace)
			}
			if !groupGone(h.PID()) {
				t.Errorf("process group %d still has processes after Wait", h.PID())
			}
		})
	}
}

func TestProcessStopKillsGrandchild(t *testing.T) {
	task := testTask(t, "/bin/sh", "-c", `sleep 1000 & echo "grandchild=$!"; wait`)
	h := startTask(t, NewProcessRuntime(ProcessConfig{}), task)
	line := awaitLine(t, task.Dir, Stdout, "grandchild=")
	gc, err := strconv.Atoi(strings.TrimPrefix(line, "grandchild="))
	if err != nil {
		t.Fatal(err)
	}

	if err := h.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	res := waitResult(t, h)
	if !res.Stopped || res.Signal != "SIGTERM" {
		t.Errorf("result = %+v, want stopped by SIGTERM", res)
	}
	if !processGone(gc) || !groupGone(h.PID()) {
		t.Errorf("grandchild %d or group %d survived Stop", gc, h.PID())
	}
}

// A task whose main process exits while a background child still holds
// its stdout ends then, and takes the child with it.
func TestProcessExitKillsLeftovers(t *testing.T) {
	task := testTask(t, "/bin/sh", "-c", `sleep 1000 & echo "grandchild=$!"; exit 0`)
	h := startTask(t, NewProcessRuntime(ProcessConfig{}), task)
	res := waitResult(t, h)
	if !res.Success() || res.Stopped {
		t.Errorf("result = %+v, want success", res)
	}
	lines := readLines(t, task.Dir, Stdout)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "grandchild=") {
		t.Fatalf("stdout = %q", lines)
	}
	gc, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "grandchild="))
	if !processGone(gc) || !groupGone(h.PID()) {
		t.Errorf("grandchild %d or group %d outlived the task", gc, h.PID())
	}
}

// A descendant that leaves the task's process group (setsid) cannot be
// killed with it; it must not keep Wait from returning by holding stdout.
func TestProcessEscapeeDoesNotBlockWait(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	task := testTask(t, "/bin/sh", "-c", `setsid sh -c 'echo $$ >escapee.pid; echo escaped; exec sleep 1000' &
while [ ! -s escapee.pid ]; do sleep 0.01; done`)
	h := startTask(t, NewProcessRuntime(ProcessConfig{DrainTimeout: 50 * time.Millisecond}), task)
	res := waitResult(t, h)
	b, err := os.ReadFile(filepath.Join(task.Dir, "escapee.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
		_, _ = p.Wait() // an orphan, re-parented to this subreaper
	}
	if !res.Success() {
		t.Errorf("result = %+v, want success", res)
	}
}

func TestProcessWaitHonoursContext(t *testing.T) {
	task := testTask(t, "sleep", "1000")
	h := startTask(t, NewProcessRuntime(ProcessConfig{}), task)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
	if processGone(h.PID()) {
		t.Fatal("a cancelled Wait ended the task")
	}

	// Every waiter gets the same result.
	results := make(chan Result, 3)
	for range 3 {
		go func() {
			res, _ := h.Wait(context.Background())
			results <- res
		}()
	}
	if err := h.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res := <-results; res.Signal != "SIGTERM" || !res.Stopped {
			t.Errorf("result = %+v, want stopped by SIGTERM", res)
		}
	}
}

func TestProcessStartErrors(t *testing.T) {
	rt := NewProcessRuntime(ProcessConfig{})
	if rt.Name() != "process" {
		t.Errorf("Name() = %q", rt.Name())
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		command []string
		env     map[string]string
		want    string
	}{
		{"missing executable", []string{"megha-no-such-command", "x"}, nil,
			`runtime: start task t1: exec "megha-no-such-command": executable file not found in $PATH`},
		{"missing path", []string{"./no-such-script"}, nil,
			`runtime: start task t1: exec "./no-such-script": stat `},
		{"empty command", nil, nil, "runtime: start task t1: empty command"},
		{"empty argv0", []string{""}, nil, "runtime: start task t1: empty command"},
		{"reserved env", []string{"true"}, map[string]string{"MEGHA_RANK": "0"},
			"runtime: task t1: environment variable MEGHA_RANK is set by the worker"},
		{"not prepared", []string{"true"}, nil, "runtime: start task t1: open stdout log: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := testTask(t, tt.command...)
			task.Env = tt.env
			_, err := rt.Start(ctx, task)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want %q", err, tt.want)
			}
		})
	}

	task := testTask(t, "megha-no-such-command")
	if _, err := rt.Start(ctx, task); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Start = %v, want it to wrap exec.ErrNotFound", err)
	}
}

func TestPrepare(t *testing.T) {
	rt := NewProcessRuntime(ProcessConfig{})
	ctx := context.Background()
	task := testTask(t, "true")

	// A socket left by an earlier run is removed.
	ln, err := net.Listen("unix", Socket(task))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := rt.Prepare(ctx, task); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := os.Lstat(Socket(task)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket not removed: %v", err)
	}
	for _, p := range []string{"logs/stdout.log", "logs/stderr.log", "tmp"} {
		if _, err := os.Stat(filepath.Join(task.Dir, p)); err != nil {
			t.Errorf("Prepare did not create %s: %v", p, err)
		}
	}
	if err := rt.Prepare(ctx, task); err != nil {
		t.Errorf("second Prepare: %v", err)
	}

	// Something else at the socket's path is not ours to remove.
	if err := os.WriteFile(Socket(task), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rt.Prepare(ctx, task); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Prepare over a regular file = %v, want a 'not a socket' error", err)
	}

	bad := []struct {
		name string
		edit func(*Task)
		want string
	}{
		{"no ID", func(t *Task) { t.ID = "" }, "runtime: task has no ID"},
		{"relative dir", func(t *Task) { t.Dir = "rel" }, "is not absolute"},
		{"rank outside world", func(t *Task) { t.Rank = 4 }, "rank 4 outside world of 4"},
	}
	for _, b := range bad {
		task := testTask(t, "true")
		b.edit(task)
		if err := rt.Prepare(ctx, task); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: Prepare = %v, want %q", b.name, err, b.want)
		}
	}

	// A task directory too deep for a socket address gets its socket in
	// the temporary directory instead, and still runs.
	deep := testTask(t, "true")
	deep.Dir = filepath.Join(t.TempDir(), strings.Repeat("d", 100), "task")
	sock := Socket(deep)
	if len(sock) > maxSocketPath || filepath.Dir(sock) != filepath.Clean(os.TempDir()) {
		t.Fatalf("socket for a deep directory: %s", sock)
	}
	if err := rt.Prepare(ctx, deep); err != nil {
		t.Fatalf("Prepare with a deep directory: %v", err)
	}
}

func TestProcessLogsRotate(t *testing.T) {
	task := testTask(t, "/bin/sh", "-c", `i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done`)
	cfg := ProcessConfig{Logs: LogConfig{MaxBytes: 256, MaxFiles: 3}}
	res := waitResult(t, startTask(t, NewProcessRuntime(cfg), task))
	if !res.Success() {
		t.Fatalf("result = %+v", res)
	}
	assertRotated(t, filepath.Join(task.Dir, "logs"), Stdout, cfg.Logs)
	lines := readLines(t, task.Dir, Stdout)
	if len(lines) == 0 || lines[len(lines)-1] != "line 199" {
		t.Fatalf("stdout ends with %q, want line 199", lines[max(0, len(lines)-1):])
	}
	assertConsecutive(t, lines[1:], "line ") // the first may be cut by rotation
}

func TestResultString(t *testing.T) {
	tests := []struct {
		res  Result
		want string
	}{
		{Result{}, "exit code 0"},
		{Result{ExitCode: 3}, "exit code 3"},
		{Result{ExitCode: -1, Signal: "SIGSEGV"}, "killed by SIGSEGV"},
		{Result{ExitCode: -1, Signal: "SIGTERM", Stopped: true}, "stopped by SIGTERM"},
		{Result{Stopped: true}, "stopped, exit code 0"},
		{Result{ExitCode: 1, Err: errors.New("boom")}, "exit code 1: boom"},
	}
	for _, tt := range tests {
		if got := tt.res.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.res, got, tt.want)
		}
	}
}
