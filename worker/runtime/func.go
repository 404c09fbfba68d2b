package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"
)

// TaskFunc is the body of a task run by a FuncRuntime. It must return soon
// after ctx is done. Its output goes to the task's stdout and stderr logs;
// both writers are safe for concurrent use.
//
// Returning nil is exit code 0. An error with an ExitCode() int method
// (such as *exec.ExitError) sets the exit code; any other error is exit
// code 1. A panic is exit code 2 with the panic and its stack in Err.
type TaskFunc func(ctx context.Context, t *Task, stdout, stderr io.Writer) error

// FuncRuntime runs a Go function as a task, inside the worker: the
// built-in trainer, and tests. It has the lifecycle of ProcessRuntime:
// Stop cancels the function's context (the SIGTERM) and, if the function
// has not returned after grace, abandons it (the SIGKILL) and the task
// ends; a Go function cannot be killed, so one that ignores its context
// keeps running until it returns, writing nothing more to the logs.
type FuncRuntime struct {
	name string
	fn   TaskFunc
	logs LogConfig
}

var _ Runtime = (*FuncRuntime)(nil)

// NewFuncRuntime returns a runtime called name that runs fn for each task.
func NewFuncRuntime(name string, fn TaskFunc, logs LogConfig) *FuncRuntime {
	return &FuncRuntime{name: name, fn: fn, logs: logs.withDefaults()}
}

// Name returns the name given to NewFuncRuntime.
func (r *FuncRuntime) Name() string { return r.name }

// Prepare creates the task directory, logs and scratch space and removes a
// stale worker socket.
func (*FuncRuntime) Prepare(ctx context.Context, t *Task) error {
	return prepareDir(ctx, t)
}

// Start runs the function in a new goroutine. Its context carries the
// values of ctx but not its cancellation.
func (r *FuncRuntime) Start(ctx context.Context, t *Task) (Handle, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if r.fn == nil {
		return nil, fmt.Errorf("runtime: start task %s: runtime %s has no function", t.ID, r.name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("runtime: start task %s: %w", t.ID, err)
	}
	stdout, err := openRotatingWriter(logDir(t.Dir), Stdout, r.logs)
	if err != nil {
		return nil, fmt.Errorf("runtime: start task %s: %w", t.ID, err)
	}
	stderr, err := openRotatingWriter(logDir(t.Dir), Stderr, r.logs)
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("runtime: start task %s: %w", t.ID, err)
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &funcHandle{
		taskID:   t.ID,
		cancel:   cancel,
		started:  time.Now(),
		returned: make(chan struct{}),
		done:     make(chan struct{}),
		logs:     [2]*rotatingWriter{stdout, stderr},
	}
	go h.run(fctx, r.fn, t)
	return h, nil
}

// funcHandle is a task running as a goroutine.
type funcHandle struct {
	taskID  string
	cancel  context.CancelFunc
	started time.Time
	logs    [2]*rotatingWriter

	returned chan struct{} // the function has returned; err is set
	err      error

	mu       sync.Mutex
	stopping bool // Stop was called
	ended    bool // res is final, done is closed
	done     chan struct{}
	res      Result
}

// PID returns 0: the task runs inside the worker.
func (*funcHandle) PID() int { return 0 }

func (h *funcHandle) run(ctx context.Context, fn TaskFunc, t *Task) {
	defer close(h.returned)
	defer func() {
		if p := recover(); p != nil {
			h.err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	h.err = fn(ctx, t, h.logs[0], h.logs[1])
}

// Wait blocks until the function has returned or been abandoned.
func (h *funcHandle) Wait(ctx context.Context) (Result, error) {
	select {
	case <-h.returned:
		h.finish(false)
	case <-h.done:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("runtime: wait for task %s: %w", h.taskID, ctx.Err())
	}
	<-h.done
	return h.res, nil
}

// Stop cancels the function's context and abandons the function if it has
// not returned after grace.
func (h *funcHandle) Stop(grace time.Duration) error {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return nil
	}
	h.stopping = true
	h.mu.Unlock()
	h.cancel()
	timer := time.NewTimer(max(grace, 0))
	defer timer.Stop()
	select {
	case <-h.returned:
		h.finish(false)
	case <-timer.C:
		h.finish(true)
	}
	return nil
}

// finish sets the Result once: from the function's return, or as killed
// when Stop's grace ran out first.
func (h *funcHandle) finish(abandoned bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return
	}
	select {
	case <-h.returned:
		abandoned = false
	default:
	}
	res := Result{StartedAt: h.started, FinishedAt: time.Now(), Stopped: h.stopping}
	switch {
	case abandoned:
		res.ExitCode, res.Signal = -1, "SIGKILL"
		res.Err = fmt.Errorf("runtime: task %s: function still running after its grace period; abandoned", h.taskID)
	case h.stopping && errors.Is(h.err, context.Canceled):
		res.ExitCode, res.Signal = -1, "SIGTERM"
	case h.err == nil:
	default:
		res.ExitCode, res.Err = 1, h.err
		var ec interface{ ExitCode() int }
		var pe *panicError
		if errors.As(h.err, &ec) && ec.ExitCode() != 0 {
			res.ExitCode = ec.ExitCode()
		} else if errors.As(h.err, &pe) {
			res.ExitCode = 2
		}
	}
	for _, l := range h.logs {
		if err := l.Close(); err != nil && res.Err == nil {
			res.Err = err
		}
	}
	h.res, h.ended = res, true
	h.cancel()
	close(h.done)
}

// panicError is a panic in a task function, kept with its stack.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("runtime: task function panicked: %v\n%s", e.value, e.stack)
}
