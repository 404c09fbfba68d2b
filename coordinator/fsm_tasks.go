package coordinator

import (
	"fmt"
	"sort"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Tasks returns copies of a job's tasks, by rank then attempt.
func (s *State) Tasks(jobID string) []*meghav1.Task {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tasksLocked(s.byJob[jobID])
}

// WorkerTasks returns copies of a worker's tasks and a channel closed at
// the next change of the state.
func (s *State) WorkerTasks(workerID string) ([]*meghav1.Task, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tasksLocked(s.byWorker[workerID]), s.changed
}

// AllTasks returns copies of every task.
func (s *State) AllTasks() []*meghav1.Task {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*meghav1.Task, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, proto.Clone(t).(*meghav1.Task))
	}
	return out
}

func (s *State) tasksLocked(ids map[string]struct{}) []*meghav1.Task {
	out := make([]*meghav1.Task, 0, len(ids))
	for id := range ids {
		out = append(out, proto.Clone(s.tasks[id]).(*meghav1.Task))
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Rank != out[b].Rank {
			return out[a].Rank < out[b].Rank
		}
		return out[a].Id < out[b].Id
	})
	return out
}

func (s *State) putTaskLocked(t *meghav1.Task) {
	s.tasks[t.Id] = t
	addIndex(s.byJob, t.JobId, t.Id)
	addIndex(s.byWorker, t.WorkerId, t.Id)
}

// applyAssignTasks checks the scheduler's plan against the state as it is
// now (workers still ready in the planned epoch, not busy, ranks free) and
// records it; the job runs.
func (s *State) applyAssignTasks(index uint64, c *meghav1.AssignTasksCommand) (*ApplyResult, error) {
	prev, ok := s.jobs[c.GetJobId()]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, c.GetJobId())
	}
	st := prev.Status.GetState()
	if jobstate.Terminal(st) {
		return nil, fmt.Errorf("%w: %s is %s", ErrJobTerminal, prev.Id, jobstate.Name(st))
	}
	if len(c.Tasks) == 0 {
		return nil, fmt.Errorf("%w: no tasks to assign", ErrInvalid)
	}
	seenWorker := map[string]bool{}
	for _, t := range c.Tasks {
		if t.GetId() == "" || t.JobId != prev.Id || s.tasks[t.Id] != nil {
			return nil, fmt.Errorf("%w: task %q", ErrInvalid, t.GetId())
		}
		if _, err := s.liveWorkerLocked(t.WorkerId, t.WorkerEpoch); err != nil {
			return nil, err
		}
		if seenWorker[t.WorkerId] || s.workerBusyLocked(t.WorkerId) {
			return nil, fmt.Errorf("%w: worker %s already runs a task", ErrBadTransition, t.WorkerId)
		}
		seenWorker[t.WorkerId] = true
		for id := range s.byJob[prev.Id] {
			if o := s.tasks[id]; o.Rank == t.Rank && scheduler.Live(o.State) {
				return nil, fmt.Errorf("%w: rank %d of %s already runs", ErrBadTransition, t.Rank, prev.Id)
			}
		}
	}
	for _, t := range c.Tasks {
		t.State, t.AssignedAt = meghav1.TaskState_TASK_STATE_ASSIGNED, c.At
		s.putTaskLocked(t)
	}
	j := proto.Clone(prev).(*meghav1.Job)
	j.Status.State = meghav1.JobState_JOB_STATE_RUNNING
	if j.Status.StartedAt == nil {
		j.Status.StartedAt = c.At
	}
	j.Status.UpdatedAt = c.At
	j.ModifyIndex = index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

func (s *State) workerBusyLocked(workerID string) bool {
	for id := range s.byWorker[workerID] {
		if scheduler.Live(s.tasks[id].State) {
			return true
		}
	}
	return false
}

// applyUpdateTask records a worker's report and rolls it up into the job:
// the first failed rank fails the job (and stops the others); the job
// succeeds when every rank has.
func (s *State) applyUpdateTask(index uint64, c *meghav1.UpdateTaskCommand) (*ApplyResult, error) {
	t, ok := s.tasks[c.GetTaskId()]
	if !ok {
		return nil, fmt.Errorf("%w: task %s", ErrJobNotFound, c.GetTaskId())
	}
	if t.WorkerId != c.WorkerId || t.WorkerEpoch != c.WorkerEpoch {
		return nil, fmt.Errorf("%w: task %s belongs to %s epoch %d", ErrStaleEpoch, t.Id, t.WorkerId, t.WorkerEpoch)
	}
	if !scheduler.Live(t.State) {
		if t.State == c.State {
			return &ApplyResult{}, nil // a repeated report, or the job ended it first
		}
		return nil, fmt.Errorf("%w: %s is %s", ErrTaskFinished, t.Id, t.State)
	}
	switch c.State {
	case meghav1.TaskState_TASK_STATE_RUNNING, meghav1.TaskState_TASK_STATE_SUCCEEDED, meghav1.TaskState_TASK_STATE_FAILED:
	default:
		return nil, fmt.Errorf("%w: a worker reports running, succeeded or failed, not %s", ErrInvalid, c.State)
	}
	t = proto.Clone(t).(*meghav1.Task)
	t.State, t.ExitCode, t.Error = c.State, c.ExitCode, c.Error
	if c.State == meghav1.TaskState_TASK_STATE_RUNNING {
		if t.StartedAt == nil {
			t.StartedAt = c.At
		}
	} else {
		t.FinishedAt = c.At
	}
	s.tasks[t.Id] = t

	prev := s.jobs[t.JobId]
	if prev == nil || jobstate.Terminal(prev.Status.GetState()) {
		return &ApplyResult{}, nil
	}
	j := proto.Clone(prev).(*meghav1.Job)
	j.Status.UpdatedAt, j.ModifyIndex = c.At, index
	if c.Progress != nil && t.Rank == 0 {
		j.Status.Progress = c.Progress
	}
	switch c.State {
	case meghav1.TaskState_TASK_STATE_FAILED:
		j.Status.State, j.Status.FinishedAt = meghav1.JobState_JOB_STATE_FAILED, c.At
		j.Status.LastError = fmt.Sprintf("rank %d failed on worker %s: exit code %d", t.Rank, t.WorkerId, t.ExitCode)
		if c.Error != "" {
			j.Status.LastError += ": " + c.Error
		}
		s.endTasksLocked(j.Id, meghav1.TaskState_TASK_STATE_CANCELLED, c.At)
	case meghav1.TaskState_TASK_STATE_SUCCEEDED:
		if s.allRanksSucceededLocked(j) {
			j.Status.State, j.Status.FinishedAt = meghav1.JobState_JOB_STATE_SUCCEEDED, c.At
		}
	}
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

func (s *State) allRanksSucceededLocked(j *meghav1.Job) bool {
	world := j.Spec.GetResources().GetWorkers()
	if world == 0 {
		world = 1
	}
	done := map[uint32]bool{}
	for id := range s.byJob[j.Id] {
		if t := s.tasks[id]; t.State == meghav1.TaskState_TASK_STATE_SUCCEEDED {
			done[t.Rank] = true
		}
	}
	return uint32(len(done)) >= world
}

// endTasksLocked moves a job's live tasks to a final state.
func (s *State) endTasksLocked(jobID string, st meghav1.TaskState, at *timestamppb.Timestamp) {
	for id := range s.byJob[jobID] {
		if t := s.tasks[id]; scheduler.Live(t.State) {
			t = proto.Clone(t).(*meghav1.Task)
			t.State, t.FinishedAt = st, at
			s.tasks[id] = t
		}
	}
}

// loseWorkerTasksLocked marks a lost (or departed) worker's live tasks
// lost and sends their running jobs to Recovering, where the scheduler
// places the missing ranks on other workers.
func (s *State) loseWorkerTasksLocked(index uint64, workerID string, at *timestamppb.Timestamp) {
	for id := range s.byWorker[workerID] {
		t := s.tasks[id]
		if !scheduler.Live(t.State) {
			continue
		}
		t = proto.Clone(t).(*meghav1.Task)
		t.State, t.FinishedAt, t.Error = meghav1.TaskState_TASK_STATE_LOST, at, "worker "+workerID+" lost"
		s.tasks[id] = t
		prev := s.jobs[t.JobId]
		if prev == nil || prev.Status.GetState() != meghav1.JobState_JOB_STATE_RUNNING {
			continue
		}
		j := proto.Clone(prev).(*meghav1.Job)
		j.Status.UpdatedAt, j.ModifyIndex = at, index
		j.Status.LastError = fmt.Sprintf("rank %d lost with worker %s", t.Rank, workerID)
		switch survivors := len(s.liveTasksLocked(j.Id)); {
		case !scheduler.BuiltinTrain(j):
			// A user command restarts the missing rank elsewhere.
			j.Status.State = meghav1.JobState_JOB_STATE_RECOVERING
		case survivors > 0:
			// Built-in training goes on with the survivors: the round in
			// flight is retried without the lost rank.
			j.Status.LastError += fmt.Sprintf("; training continues with %d workers", survivors)
		case latestCheckpoint(j) != nil:
			// Every worker is lost: the job resumes from its latest
			// checkpoint on the workers placed next.
			ck := latestCheckpoint(j)
			j.Status.State = meghav1.JobState_JOB_STATE_RECOVERING
			j.Status.LastError += fmt.Sprintf("; every worker is lost: resuming from the checkpoint of round %d", ck.Round)
			rewindLocked(j, ck)
		default:
			j.Status.State, j.Status.FinishedAt = meghav1.JobState_JOB_STATE_FAILED, at
			j.Status.LastError += "; every worker is lost and the job has no checkpoint to resume from"
		}
		s.putJobLocked(j)
	}
}
