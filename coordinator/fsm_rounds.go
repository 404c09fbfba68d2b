package coordinator

import (
	"fmt"
	"sort"
	"strconv"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/proto"
)

// Sync rounds of built-in training jobs. The leader fixes each attempt's
// members (StartRound) and records a round once every member of the attempt
// has reported success (CommitRound); everything in between (who has
// arrived, who has reported) is leader memory, rebuilt from the members'
// retries after a failover. See leader_rounds.go.

// trainJobLocked returns the stored job if it is a live built-in training
// job.
func (s *State) trainJobLocked(id string) (*meghav1.Job, error) {
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, id)
	}
	if !scheduler.BuiltinTrain(j) {
		return nil, fmt.Errorf("%w: job %s does not run the built-in trainer", ErrInvalid, id)
	}
	if st := j.Status.GetState(); jobstate.Terminal(st) {
		return nil, fmt.Errorf("%w: %s is %s", ErrJobTerminal, id, jobstate.Name(st))
	}
	return j, nil
}

// applyStartRound fixes the members of an attempt of the job's next round.
func (s *State) applyStartRound(index uint64, c *meghav1.StartRoundCommand) (*ApplyResult, error) {
	prev, err := s.trainJobLocked(c.GetJobId())
	if err != nil {
		return nil, err
	}
	tr := prev.Status.GetTrain()
	next := tr.GetCommitted() + 1
	if c.Round != next {
		return nil, fmt.Errorf("%w: round %d is not the next round (%d) of %s", ErrBadTransition, c.Round, next, prev.Id)
	}
	wantAttempt := uint32(0)
	if len(tr.GetMembers()) > 0 {
		wantAttempt = tr.GetAttempt() + 1
	}
	if c.Attempt != wantAttempt {
		return nil, fmt.Errorf("%w: attempt %d of round %d of %s, want %d", ErrBadTransition, c.Attempt, c.Round, prev.Id, wantAttempt)
	}
	if len(c.Members) == 0 {
		return nil, fmt.Errorf("%w: a round needs at least one member", ErrInvalid)
	}
	seenRank := map[uint32]bool{}
	seenTask := map[string]bool{}
	for _, m := range c.Members {
		t, ok := s.tasks[m.GetTaskId()]
		switch {
		case !ok || t.JobId != prev.Id:
			return nil, fmt.Errorf("%w: task %q is not a task of %s", ErrInvalid, m.GetTaskId(), prev.Id)
		case !scheduler.Live(t.State):
			return nil, fmt.Errorf("%w: task %s is %s", ErrTaskFinished, t.Id, t.State)
		case t.WorkerId != m.WorkerId:
			return nil, fmt.Errorf("%w: task %s runs on %s, not %s", ErrInvalid, t.Id, t.WorkerId, m.WorkerId)
		case m.Rank >= uint32(len(c.Members)) || seenRank[m.Rank] || seenTask[t.Id]:
			return nil, fmt.Errorf("%w: ranks must be 0..%d, each once, one per task", ErrInvalid, len(c.Members)-1)
		case m.Addr == "":
			return nil, fmt.Errorf("%w: member %s has no address", ErrInvalid, t.Id)
		}
		seenRank[m.Rank], seenTask[t.Id] = true, true
	}
	j := proto.Clone(prev).(*meghav1.Job)
	if j.Status.Train == nil {
		j.Status.Train = &meghav1.TrainStatus{Algorithm: algorithmName(j.Spec)}
	}
	t := j.Status.Train
	members := make([]*meghav1.RoundMember, len(c.Members))
	for i, m := range c.Members {
		members[i] = proto.Clone(m).(*meghav1.RoundMember)
	}
	sort.Slice(members, func(a, b int) bool { return members[a].Rank < members[b].Rank })
	t.Members, t.Attempt = members, c.Attempt
	if c.Attempt == 0 {
		t.RoundStartedAt = c.At
	} else {
		t.AbortedAttempts++
		j.Status.LastError = fmt.Sprintf("round %d: attempt %d abandoned (%s); retrying with %d workers", c.Round, c.Attempt-1, c.Reason, len(members))
	}
	j.Status.UpdatedAt, j.ModifyIndex = c.At, index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

// applyCommitRound records a round completed by every member of its
// attempt and ends the job when its stop condition is met.
func (s *State) applyCommitRound(index uint64, c *meghav1.CommitRoundCommand) (*ApplyResult, error) {
	prev, err := s.trainJobLocked(c.GetJobId())
	if err != nil {
		return nil, err
	}
	rec := c.GetRecord()
	tr := prev.Status.GetTrain()
	switch {
	case rec == nil:
		return nil, fmt.Errorf("%w: commit without a round record", ErrInvalid)
	case len(tr.GetMembers()) == 0 || rec.Round != tr.GetCommitted()+1 || rec.Attempt != tr.GetAttempt():
		return nil, fmt.Errorf("%w: round %d attempt %d of %s is not in flight", ErrBadTransition, rec.Round, rec.Attempt, prev.Id)
	case len(rec.Members) != len(tr.Members):
		return nil, fmt.Errorf("%w: %d member reports for %d members", ErrInvalid, len(rec.Members), len(tr.Members))
	}
	inRound := map[string]bool{}
	for _, m := range tr.Members {
		inRound[m.TaskId] = true
	}
	for _, m := range rec.Members {
		if !inRound[m.GetTaskId()] {
			return nil, fmt.Errorf("%w: task %q is not a member of round %d attempt %d", ErrInvalid, m.GetTaskId(), rec.Round, rec.Attempt)
		}
		delete(inRound, m.TaskId)
	}
	j := proto.Clone(prev).(*meghav1.Job)
	t := j.Status.Train
	rec = proto.Clone(rec).(*meghav1.RoundRecord)
	rec.StartedAt, rec.CommittedAt = t.RoundStartedAt, c.At
	t.Rounds = append(t.Rounds, rec)
	t.Committed = rec.Round
	t.Members, t.Attempt, t.RoundStartedAt = nil, 0, nil
	t.Tokens += rec.Tokens
	t.BytesSent += rec.BytesSent
	t.BytesReceived += rec.BytesReceived
	t.InnerSteps = c.NextInnerSteps
	for _, m := range rec.Members {
		if task, ok := s.tasks[m.TaskId]; ok {
			if t.Cursors == nil {
				t.Cursors = map[string]uint64{}
			}
			t.Cursors[strconv.FormatUint(uint64(task.Rank), 10)] = m.Cursor
		}
	}
	p := j.Status.Progress
	if p == nil {
		p = &meghav1.Progress{}
		j.Status.Progress = p
	}
	p.Round, p.Tokens, p.Loss, p.Workers = rec.Round, t.Tokens, rec.TrainLoss, uint32(len(rec.Members))
	var steps uint32
	for _, m := range rec.Members {
		steps = max(steps, m.Steps)
	}
	p.Step += uint64(steps)
	if rec.HasVal {
		p.ValLoss = rec.ValLoss
	}
	j.Status.UpdatedAt, j.ModifyIndex = c.At, index
	if why := stopReached(j.Spec.GetStop(), rec, t); why != "" {
		j.Status.State, j.Status.FinishedAt = meghav1.JobState_JOB_STATE_SUCCEEDED, c.At
		j.Status.LastError = ""
		j.Status.CancelReason = ""
		rec.Checkpoint = true // the final state is always checkpointed
		s.endTasksLocked(j.Id, meghav1.TaskState_TASK_STATE_SUCCEEDED, c.At)
	}
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

// stopReached says which stop bound a committed round meets, if any.
func stopReached(stop *meghav1.StopCondition, rec *meghav1.RoundRecord, t *meghav1.TrainStatus) string {
	switch {
	case stop.GetRounds() > 0 && t.Committed >= stop.GetRounds():
		return fmt.Sprintf("%d rounds", t.Committed)
	case stop.GetTokens() > 0 && t.Tokens >= stop.GetTokens():
		return fmt.Sprintf("%d tokens", t.Tokens)
	case stop.GetTargetLoss() > 0 && rec.HasVal && rec.ValLoss <= stop.GetTargetLoss():
		return fmt.Sprintf("validation loss %.4f ≤ %.4f", rec.ValLoss, stop.GetTargetLoss())
	}
	return ""
}

func algorithmName(spec *meghav1.JobSpec) string {
	if spec.GetSync().GetAlgorithm() == meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP {
		return "ddp"
	}
	return "diloco"
}

// liveTasksLocked returns the job's live tasks (assigned or running), by
// rank.
func (s *State) liveTasksLocked(jobID string) []*meghav1.Task {
	var out []*meghav1.Task
	for id := range s.byJob[jobID] {
		if t := s.tasks[id]; scheduler.Live(t.State) {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Rank < out[b].Rank })
	return out
}

// RoundView is what the round driver needs of one training job.
type RoundView struct {
	Job  *meghav1.Job    // a copy
	Live []*meghav1.Task // copies of the live tasks, by rank
}

// TrainingJobs returns a view of every live built-in training job and a
// channel closed at the next state change.
func (s *State) TrainingJobs() ([]RoundView, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []RoundView
	for _, st := range []meghav1.JobState{meghav1.JobState_JOB_STATE_RUNNING, meghav1.JobState_JOB_STATE_RECOVERING} {
		for id := range s.byState[st] {
			j := s.jobs[id]
			if !scheduler.BuiltinTrain(j) {
				continue
			}
			v := RoundView{Job: proto.Clone(j).(*meghav1.Job)}
			for _, t := range s.liveTasksLocked(id) {
				v.Live = append(v.Live, proto.Clone(t).(*meghav1.Task))
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Job.Id < out[b].Job.Id })
	return out, s.changed
}

// Task returns a copy of a task.
func (s *State) Task(id string) (*meghav1.Task, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tasks[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(t).(*meghav1.Task), true
}
