package worker

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/worker/runtime"
	"google.golang.org/grpc/status"
)

// stopGrace is how long a task gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// tasks runs a worker's assignments with a Runtime and reports on them.
type tasks struct {
	a       *Agent
	rt      runtime.Runtime
	builtin runtime.Runtime // the built-in trainer, in this process

	mu       sync.Mutex
	running  map[string]*runningTask
	assigned map[string]assignedTask // built-in tasks: their assignment
	wg       sync.WaitGroup
}

type assignedTask struct {
	as    *meghav1.Assignment
	epoch uint64
}

type runningTask struct {
	task   *runtime.Task
	handle runtime.Handle
	epoch  uint64
}

func newTasks(a *Agent, rt runtime.Runtime) *tasks {
	ts := &tasks{a: a, rt: rt, running: make(map[string]*runningTask), assigned: make(map[string]assignedTask)}
	ts.builtin = runtime.NewFuncRuntime("builtin-trainer", a.trainTask, runtime.LogConfig{})
	return ts
}

// assignment returns a built-in task's assignment and epoch.
func (ts *tasks) assignment(taskID string) (*meghav1.Assignment, uint64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	at := ts.assigned[taskID]
	return at.as, at.epoch
}

// taskDir is where a task's files live; the agent's log server reads it.
func (a *Agent) taskDir(taskID string) string {
	return filepath.Join(a.cfg.DataDir, "tasks", taskID)
}

// follow streams the epoch's assignments until ctx ends, reconnecting
// (to a new leader, say) with backoff.
func (ts *tasks) follow(ctx context.Context, epoch uint64) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := ts.a.cfg.Client.Assignments(ctx, &meghav1.AssignmentsRequest{WorkerId: ts.a.ID(), Epoch: epoch})
		if err == nil {
			backoff = 100 * time.Millisecond
			for {
				as, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				ts.handle(ctx, epoch, as)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, io.EOF) {
			ts.a.logger.Debug("assignment stream ended; reconnecting", "error", status.Convert(err).Message())
		}
		if !sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, ts.a.cfg.MaxBackoff)
	}
}

func (ts *tasks) handle(ctx context.Context, epoch uint64, as *meghav1.Assignment) {
	ts.mu.Lock()
	rt, known := ts.running[as.TaskId]
	ts.mu.Unlock()
	if as.Stop {
		if known {
			ts.a.logger.Info("stopping task", "task_id", as.TaskId)
			_ = rt.handle.Stop(stopGrace)
		}
		return
	}
	if known {
		return // sent again after a reconnect
	}
	t := &runtime.Task{
		ID: as.TaskId, JobID: as.JobId, Rank: int(as.Rank), World: int(as.World),
		CoordinatorAddr: strings.Join(ts.a.cfg.Coordinators, ","), Command: as.Command, Env: as.Env,
		Dir: ts.a.taskDir(as.TaskId),
	}
	runner := ts.rt
	if as.Spec.GetModel().GetBuiltin() != "" {
		runner = ts.builtin
		ts.mu.Lock()
		ts.assigned[t.ID] = assignedTask{as: as, epoch: epoch}
		ts.mu.Unlock()
		defer func() {
			if _, ok := ts.handleOf(t.ID); !ok {
				ts.forget(t.ID) // did not start
			}
		}()
	}
	if err := runner.Prepare(ctx, t); err != nil {
		ts.report(epoch, t, meghav1.TaskState_TASK_STATE_FAILED, -1, err.Error())
		return
	}
	ps, err := ts.serveProgress(epoch, t)
	if err != nil {
		ts.report(epoch, t, meghav1.TaskState_TASK_STATE_FAILED, -1, err.Error())
		return
	}
	h, err := runner.Start(ctx, t)
	if err != nil {
		ps.close()
		ts.report(epoch, t, meghav1.TaskState_TASK_STATE_FAILED, -1, err.Error())
		return
	}
	ts.mu.Lock()
	ts.running[t.ID] = &runningTask{task: t, handle: h, epoch: epoch}
	ts.mu.Unlock()
	ts.a.logger.Info("task started", "task_id", t.ID, "job_id", t.JobID, "rank", t.Rank, "pid", h.PID())
	ts.report(epoch, t, meghav1.TaskState_TASK_STATE_RUNNING, 0, "")
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		res, err := h.Wait(context.Background())
		ps.close()
		ts.forget(t.ID)
		state, msg := meghav1.TaskState_TASK_STATE_SUCCEEDED, ""
		if err != nil || !res.Success() {
			state, msg = meghav1.TaskState_TASK_STATE_FAILED, res.String()
			if err != nil {
				msg = err.Error()
			}
		}
		ts.a.logger.Info("task finished", "task_id", t.ID, "result", res.String())
		if !res.Stopped {
			ts.report(epoch, t, state, int32(res.ExitCode), msg)
		}
	}()
}

func (ts *tasks) handleOf(id string) (*runningTask, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	rt, ok := ts.running[id]
	return rt, ok
}

func (ts *tasks) forget(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.running, id)
	delete(ts.assigned, id)
}

// report tells the coordinator about a task, retrying until it is
// recorded or refused for good (the task or epoch is no longer current).
func (ts *tasks) report(epoch uint64, t *runtime.Task, st meghav1.TaskState, code int32, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &meghav1.ProgressReport{WorkerId: ts.a.ID(), Epoch: epoch, TaskId: t.ID, State: st, ExitCode: code, Error: msg}
	for {
		err := ts.a.cfg.Client.ReportProgress(ctx, r)
		if err == nil || permanent(err) || ctx.Err() != nil {
			if err != nil {
				ts.a.logger.Warn("task report not recorded", "task_id", t.ID, "state", st, "error", status.Convert(err).Message())
			}
			return
		}
		if !sleep(ctx, jitter(500*time.Millisecond)) {
			return
		}
	}
}

// stopAll stops every running task and waits for them: on shutdown
// (handing the work back) or when the epoch they belong to has ended.
func (ts *tasks) stopAll(why string) {
	ts.mu.Lock()
	running := make([]*runningTask, 0, len(ts.running))
	for _, rt := range ts.running {
		running = append(running, rt)
	}
	ts.mu.Unlock()
	for _, rt := range running {
		ts.a.logger.Info("stopping task", "task_id", rt.task.ID, "why", why)
		if err := rt.handle.Stop(stopGrace); err != nil {
			ts.a.logger.Warn("stopping task failed", "task_id", rt.task.ID, "error", err)
		}
	}
	ts.wg.Wait()
}

// Running returns the IDs of the tasks running now.
func (a *Agent) Running() []string {
	a.tasks.mu.Lock()
	defer a.tasks.mu.Unlock()
	out := make([]string, 0, len(a.tasks.running))
	for id := range a.tasks.running {
		out = append(out, id)
	}
	return out
}
