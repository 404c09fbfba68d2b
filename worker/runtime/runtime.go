// Package runtime runs a worker's task assignments: an external process
// (ProcessRuntime) or a Go function inside the worker (FuncRuntime), with
// the same lifecycle, environment and per-task logs.
//
//	        Prepare            Start              main process exits
//	(new) ─────────▶ prepared ───────▶ running ───────────────────────────▶ exited
//	  │                 │                 │                                   (ExitCode)
//	  │                 │                 │ Stop(grace): TERM to the group ──▶ stopped
//	  │                 │                 │   … grace … KILL to the group ───▶ killed
//	  │                 │                 │                                   (Signal, Stopped)
//	  │                 │                 └─ function error, panic, lost log ▶ failed (Err)
//	  └─────────────────┴──▶ error from Prepare or Start: invalid task, empty
//	                         command, executable not found, directory not writable
//
// Wait blocks while the task is running and returns once it has reached an
// end state, or when its ctx is done.
//
// Prepare is idempotent: it creates the task directory
//
//	DIR/logs/stdout.log, stderr.log   live logs (rotated: stdout.log.1, .2, …; higher is newer)
//	DIR/tmp/                          scratch, exported as TMPDIR
//	DIR/worker.sock                   the worker's socket for the task (stale one removed)
//
// and Start runs the task. A task ends when its main process exits (or its
// function returns); whatever else it left running in its process group is
// killed then, so a task is never survived by its children. Wait may be
// called any number of times, from any goroutine, and gives every caller
// the same Result.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Task is one assignment to run: identity and environment.
type Task struct {
	ID, JobID       string
	Rank, World     int
	CoordinatorAddr string            // comma-separated gRPC addresses
	Command         []string          // argv for the process runtime
	Env             map[string]string // extra environment from the job spec
	Dir             string            // absolute task directory; created by Prepare
}

// Runtime prepares and starts tasks. Implementations are safe for
// concurrent use by many tasks.
type Runtime interface {
	// Name identifies the runtime in logs and job specs ("process").
	Name() string
	// Prepare creates the task directory, its log files and scratch
	// space, and removes a stale worker socket. It may be called again
	// for the same task (a restart); existing logs are kept.
	Prepare(ctx context.Context, t *Task) error
	// Start runs a prepared task. ctx bounds starting only: the task
	// outlives it and ends by itself or through Handle.Stop.
	Start(ctx context.Context, t *Task) (Handle, error)
}

// Handle is a started task.
type Handle interface {
	// Wait blocks until the task has ended and its output is flushed, or
	// until ctx is done (then it returns ctx's error and the task keeps
	// running).
	Wait(ctx context.Context) (Result, error)
	// Stop asks the task to end (SIGTERM to its process group, or
	// cancelling its function's context) and, if it is still running
	// after grace, forces it (SIGKILL). Stop returns once the task has
	// ended or been forced; Wait reports how it ended. Stopping an ended
	// task is a no-op.
	Stop(grace time.Duration) error
	// PID is the task's main process, which leads its process group; 0
	// for a task that runs inside the worker.
	PID() int
}

// Result is how a task ended.
type Result struct {
	// ExitCode is the process's exit status, -1 when a signal ended it.
	ExitCode int
	// Signal names the signal that ended the task ("SIGKILL"), or "".
	Signal string
	// Stopped reports that the task ended after Stop was called.
	Stopped bool
	// Err is a failure not told by ExitCode or Signal: the error a task
	// function returned, a panic, output that could not be logged.
	Err error
	// StartedAt and FinishedAt bound the task's run.
	StartedAt, FinishedAt time.Time
}

// Success reports whether the task exited 0 by itself, with nothing lost.
func (r Result) Success() bool {
	return r.ExitCode == 0 && r.Signal == "" && r.Err == nil
}

// String describes r in a few words: "exit code 3", "stopped by SIGTERM".
func (r Result) String() string {
	var s string
	switch {
	case r.Signal != "" && r.Stopped:
		s = "stopped by " + r.Signal
	case r.Signal != "":
		s = "killed by " + r.Signal
	case r.Stopped:
		s = fmt.Sprintf("stopped, exit code %d", r.ExitCode)
	default:
		s = fmt.Sprintf("exit code %d", r.ExitCode)
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// Streams of a task's output, as named by OpenLogs.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// socketName is the worker socket's file name in the task directory.
const socketName = "worker.sock"

// maxSocketPath is the longest path a unix socket address can hold on
// Linux (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Socket returns the path of the unix socket the worker serves to task t,
// exported to the task as MEGHA_WORKER_SOCKET: DIR/worker.sock, or, when
// that is longer than a unix socket address holds (deep data directories,
// long job names), a name derived from DIR in the system's temporary
// directory.
func Socket(t *Task) string {
	p := filepath.Join(t.Dir, socketName)
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(t.Dir))
	return filepath.Join(os.TempDir(), "megha-"+hex.EncodeToString(sum[:8])+".sock")
}

func logDir(taskDir string) string { return filepath.Join(taskDir, "logs") }
func tmpDir(taskDir string) string { return filepath.Join(taskDir, "tmp") }

// validate checks what every runtime relies on.
func (t *Task) validate() error {
	switch {
	case t == nil:
		return errors.New("runtime: nil task")
	case t.ID == "":
		return errors.New("runtime: task has no ID")
	case t.Dir == "":
		return fmt.Errorf("runtime: task %s has no directory", t.ID)
	case !filepath.IsAbs(t.Dir):
		return fmt.Errorf("runtime: task %s: directory %q is not absolute", t.ID, t.Dir)
	case t.World < 1:
		return fmt.Errorf("runtime: task %s: world size %d, want at least 1", t.ID, t.World)
	case t.Rank < 0 || t.Rank >= t.World:
		return fmt.Errorf("runtime: task %s: rank %d outside world of %d", t.ID, t.Rank, t.World)
	}
	for k := range t.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("runtime: task %s: invalid environment variable name %q", t.ID, k)
		}
		if _, ok := reservedEnv[k]; ok {
			return fmt.Errorf("runtime: task %s: environment variable %s is set by the worker", t.ID, k)
		}
	}
	return nil
}

// prepareDir is Prepare for every runtime: task directory, logs, scratch,
// and no stale socket.
func prepareDir(ctx context.Context, t *Task) error {
	if err := t.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("runtime: prepare task %s: %w", t.ID, err)
	}
	sock := Socket(t)
	if len(sock) > maxSocketPath {
		return fmt.Errorf("runtime: prepare task %s: socket path %s is %d bytes, longer than the %d a unix socket allows; use a shorter task directory",
			t.ID, sock, len(sock), maxSocketPath)
	}
	for _, d := range []string{t.Dir, logDir(t.Dir), tmpDir(t.Dir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("runtime: prepare task %s: %w", t.ID, err)
		}
	}
	for _, s := range []string{Stdout, Stderr} {
		f, err := os.OpenFile(livePath(logDir(t.Dir), s), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("runtime: prepare task %s: %w", t.ID, err)
		}
		f.Close()
	}
	if err := removeStaleSocket(sock); err != nil {
		return fmt.Errorf("runtime: prepare task %s: %w", t.ID, err)
	}
	return nil
}

// removeStaleSocket removes a socket left by an earlier run. Anything else
// at that path is the caller's mistake and is left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
