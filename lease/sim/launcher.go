package sim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/megha-ml/megha/lease"
)

// Launcher starts and stops the worker behind a lease.
type Launcher interface {
	// Start starts the lease's worker and returns its endpoints. It runs
	// under the market lock: spawn, do not wait.
	Start(l lease.Lease) ([]string, error)
	// Stop stops the lease's worker and waits for it to end.
	Stop(leaseID string) error
}

// DefaultStopGrace is how long ExecLauncher waits after SIGTERM before
// SIGKILL.
const DefaultStopGrace = 5 * time.Second

// ExecLauncher runs a real worker process per lease on this machine:
//
//	Bin worker --coordinator C --token T --lease ID --emulate-gpu MODELxN --data-dir DataDir/ID [ExtraArgs...]
//
// in its own process group, with its output in DataDir/ID/worker.log.
// Stop sends SIGTERM to the group, SIGKILL after Grace, and reaps it.
type ExecLauncher struct {
	Bin, Coordinator, Token string
	DataDir                 string
	ExtraArgs               []string
	Grace                   time.Duration // default DefaultStopGrace

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once reaped
	err  error
}

// Args returns the worker command line for l (without Bin).
func (e *ExecLauncher) Args(l lease.Lease) []string {
	args := []string{"worker", "--lease", l.ID,
		"--emulate-gpu", fmt.Sprintf("%sx%d", l.GPUModel, max(l.GPUs, 1)),
		"--data-dir", filepath.Join(e.DataDir, l.ID)}
	if e.Coordinator != "" {
		args = append(args, "--coordinator", e.Coordinator)
	}
	if e.Token != "" {
		args = append(args, "--token", e.Token)
	}
	return append(args, e.ExtraArgs...)
}

// Start spawns the lease's worker and returns "pid:PID" and "log:PATH".
func (e *ExecLauncher) Start(l lease.Lease) ([]string, error) {
	if e.Bin == "" || e.DataDir == "" {
		return nil, errors.New("sim: exec launcher needs Bin and DataDir")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.procs == nil {
		e.procs = make(map[string]*proc)
	}
	if _, ok := e.procs[l.ID]; ok {
		return nil, fmt.Errorf("sim: lease %s already has a worker", l.ID)
	}
	dir := filepath.Join(e.DataDir, l.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: worker data dir: %w", err)
	}
	logPath := filepath.Join(dir, "worker.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sim: worker log: %w", err)
	}
	cmd := exec.Command(e.Bin, e.Args(l)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("sim: start worker for lease %s: %w", l.ID, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	e.procs[l.ID] = p
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return []string{"pid:" + strconv.Itoa(cmd.Process.Pid), "log:" + logPath}, nil
}

// Stop ends the lease's worker: SIGTERM to its process group, SIGKILL
// after the grace period, then reaps it. Stopping an unknown or finished
// lease is not an error.
func (e *ExecLauncher) Stop(leaseID string) error {
	e.mu.Lock()
	p, ok := e.procs[leaseID]
	delete(e.procs, leaseID)
	e.mu.Unlock()
	if !ok {
		return nil
	}
	grace := e.Grace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sim: kill worker of lease %s: %w", leaseID, err)
	}
	<-p.done
	return nil
}

// Running lists the leases whose workers this launcher started and has
// not stopped (some may have exited by themselves).
func (e *ExecLauncher) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.procs))
	for id := range e.procs {
		ids = append(ids, id)
	}
	return ids
}
