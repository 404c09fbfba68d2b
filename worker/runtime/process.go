package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures a ProcessRuntime. The zero value is usable.
type ProcessConfig struct {
	// Logs bounds each task's stdout and stderr logs.
	Logs LogConfig
	// InheritEnv lists the worker's variables a task inherits; nil means
	// DefaultInheritEnv.
	InheritEnv []string
	// DrainTimeout bounds how long output is still collected after a task
	// has ended, for a descendant that escaped its process group and holds
	// its stdout; 0 means 2s.
	DrainTimeout time.Duration
}

// ProcessRuntime runs Task.Command as a child process leading its own
// process group, with output in the task's rotating logs.
//
// Children of the task are killed with it. They are reaped, and so gone
// by the time Wait returns, when the worker is PID 1 or a child subreaper
// (EnableSubreaper); otherwise they are killed and left to init.
type ProcessRuntime struct {
	cfg ProcessConfig
}

var _ Runtime = (*ProcessRuntime)(nil)

// NewProcessRuntime returns the process runtime.
func NewProcessRuntime(cfg ProcessConfig) *ProcessRuntime {
	if cfg.InheritEnv == nil {
		cfg.InheritEnv = DefaultInheritEnv
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	cfg.Logs = cfg.Logs.withDefaults()
	return &ProcessRuntime{cfg: cfg}
}

// Name returns "process".
func (*ProcessRuntime) Name() string { return "process" }

// Prepare creates the task directory, logs and scratch space and removes a
// stale worker socket.
func (*ProcessRuntime) Prepare(ctx context.Context, t *Task) error {
	return prepareDir(ctx, t)
}

// Start starts t.Command in t.Dir with the task's environment.
func (r *ProcessRuntime) Start(ctx context.Context, t *Task) (Handle, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	fail := func(err error) (Handle, error) {
		return nil, fmt.Errorf("runtime: start task %s: %w", t.ID, err)
	}
	if len(t.Command) == 0 || t.Command[0] == "" {
		return fail(errors.New("empty command"))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	env := taskEnv(t, r.cfg.InheritEnv)
	path, err := lookPath(t.Command[0], t.Dir, envValue(env, "PATH"))
	if err != nil {
		return fail(fmt.Errorf("exec %q: %w", t.Command[0], err))
	}

	h := &processHandle{taskID: t.ID, drain: r.cfg.DrainTimeout, done: make(chan struct{})}
	var pipeW [2]*os.File
	for i, s := range []string{Stdout, Stderr} {
		w, err := openRotatingWriter(logDir(t.Dir), s, r.cfg.Logs)
		if err != nil {
			h.closeAll(pipeW[:])
			return fail(err)
		}
		h.logs[i] = w
		if h.pipes[i], pipeW[i], err = os.Pipe(); err != nil {
			h.closeAll(pipeW[:])
			return fail(err)
		}
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        t.Command,
		Env:         env,
		Dir:         t.Dir,
		Stdout:      pipeW[0],
		Stderr:      pipeW[1],
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	// The child holds its own copies of the write ends; ours must go, or
	// the logs would never see end of file.
	pipeW[0].Close()
	pipeW[1].Close()
	if err != nil {
		h.closeAll(nil)
		return fail(err)
	}
	h.cmd, h.pid, h.started = cmd, cmd.Process.Pid, time.Now()
	h.copied.Add(2)
	for i := range h.pipes {
		go h.copy(h.logs[i], h.pipes[i])
	}
	go h.wait()
	return h, nil
}

// processHandle is a started process task.
type processHandle struct {
	taskID  string
	cmd     *exec.Cmd
	pid     int // leader and process group ID
	started time.Time
	drain   time.Duration

	pipes  [2]*os.File // read ends of stdout, stderr
	logs   [2]*rotatingWriter
	copied sync.WaitGroup

	// mu orders signals against reaping: while the leader is unreaped
	// (a zombie at worst), its PID, and so the group ID, cannot be reused,
	// so a signal sent under mu with reaped false reaches only the task.
	mu            sync.Mutex
	reaped        bool
	stopRequested bool

	done chan struct{}
	res  Result
}

// PID returns the task's main process ID, which is also its process group.
func (h *processHandle) PID() int { return h.pid }

// Wait blocks until the task has ended and its output is in the logs.
func (h *processHandle) Wait(ctx context.Context) (Result, error) {
	select {
	case <-h.done:
		return h.res, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("runtime: wait for task %s: %w", h.taskID, ctx.Err())
	}
}

// Stop sends SIGTERM to the task's process group and SIGKILL after grace
// if the task has not ended by then.
func (h *processHandle) Stop(grace time.Duration) error {
	if sent, err := h.signalGroup(syscall.SIGTERM); !sent || err != nil {
		return err
	}
	if grace > 0 {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-h.done:
			return nil
		case <-timer.C:
		}
	}
	_, err := h.signalGroup(syscall.SIGKILL)
	return err
}

// signalGroup signals the task's process group for Stop unless the task
// has been reaped; sent reports whether it was still there to signal.
func (h *processHandle) signalGroup(sig syscall.Signal) (sent bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reaped {
		return false, nil
	}
	h.stopRequested = true
	if err := syscall.Kill(-h.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("runtime: stop task %s: %s to process group %d: %w", h.taskID, signalName(sig), h.pid, err)
	}
	return true, nil
}

// wait follows the task from its end to its Result: kill what the leader
// left in its group, reap the leader (and the rest, when the worker can),
// collect the last output, close the logs.
func (h *processHandle) wait() {
	var err error
	if awaitExit(h.pid) {
		h.mu.Lock()
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
		err = h.cmd.Wait()
		h.reaped = true
		h.mu.Unlock()
	} else {
		// Without a way to wait for the exit without reaping, the group
		// is killed just after, while its other members keep the group
		// ID from being reused.
		err = h.cmd.Wait()
		h.mu.Lock()
		h.reaped = true
		h.mu.Unlock()
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
	}
	finished := time.Now()
	reapGroup(h.pid)
	h.drainOutput()

	res := Result{StartedAt: h.started, FinishedAt: finished, ExitCode: -1}
	h.mu.Lock()
	res.Stopped = h.stopRequested
	h.mu.Unlock()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		res.Err = fmt.Errorf("runtime: wait for task %s: %w", h.taskID, err)
	}
	if ps := h.cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = signalName(ws.Signal())
		}
	}
	for _, l := range h.logs {
		if err := l.Close(); err != nil && res.Err == nil {
			res.Err = err
		}
	}
	h.res = res
	close(h.done)
}

// copy moves one stream from the pipe into its log until the last writer
// has closed the pipe or drainOutput gives up.
func (h *processHandle) copy(w *rotatingWriter, r *os.File) {
	defer h.copied.Done()
	_, _ = io.Copy(w, r)
}

// drainOutput waits for the logs to take the task's last output. A process
// that left the task's group (setsid) may still hold the pipes; after
// DrainTimeout its output is no longer the task's.
func (h *processHandle) drainOutput() {
	copied := make(chan struct{})
	go func() {
		h.copied.Wait()
		close(copied)
	}()
	timer := time.NewTimer(h.drain)
	defer timer.Stop()
	select {
	case <-copied:
	case <-timer.C:
		for _, p := range h.pipes {
			_ = p.SetReadDeadline(time.Now())
		}
		<-copied
	}
	for _, p := range h.pipes {
		p.Close()
	}
}

// closeAll releases what a failed Start had opened.
func (h *processHandle) closeAll(extra []*os.File) {
	for _, f := range extra {
		if f != nil {
			f.Close()
		}
	}
	for _, p := range h.pipes {
		if p != nil {
			p.Close()
		}
	}
	for _, l := range h.logs {
		if l != nil {
			l.Close()
		}
	}
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "SIGABRT", syscall.SIGALRM: "SIGALRM", syscall.SIGBUS: "SIGBUS",
	syscall.SIGFPE: "SIGFPE", syscall.SIGHUP: "SIGHUP", syscall.SIGILL: "SIGILL",
	syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGQUIT: "SIGQUIT", syscall.SIGSEGV: "SIGSEGV", syscall.SIGTERM: "SIGTERM",
	syscall.SIGTRAP: "SIGTRAP", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ", syscall.SIGSYS: "SIGSYS",
}

// signalName returns "SIGTERM" for SIGTERM, "signal 34" for a signal
// without a common name.
func signalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}
