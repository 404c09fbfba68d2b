package coordinator

import (
	"context"
	"fmt"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxRoundWait bounds a JoinRound or FinishRound long-poll, below the
// client's per-attempt timeout so that a poll is never mistaken for a
// frozen leader.
const maxRoundWait = 1500 * time.Millisecond

// roundCaller checks that a round call comes from the worker, epoch and
// task it names, and returns the task and its job.
func (n *Node) roundCaller(workerID string, epoch uint64, taskID string) (*meghav1.Task, *meghav1.Job, error) {
	st := n.fsm.State()
	if _, err := st.liveWorker(workerID, epoch); err != nil {
		return nil, nil, err
	}
	t, ok := st.Task(taskID)
	if !ok {
		return nil, nil, fmt.Errorf("%w: task %q", ErrJobNotFound, taskID)
	}
	if t.WorkerId != workerID || t.WorkerEpoch != epoch {
		return nil, nil, fmt.Errorf("%w: task %s belongs to %s epoch %d", ErrStaleEpoch, t.Id, t.WorkerId, t.WorkerEpoch)
	}
	j, ok := st.Job(t.JobId)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrJobNotFound, t.JobId)
	}
	if !scheduler.BuiltinTrain(j) {
		return nil, nil, fmt.Errorf("%w: job %s does not run the built-in trainer", ErrInvalid, j.Id)
	}
	return t, j, nil
}

func roundWait(ms uint32) time.Duration {
	return min(time.Duration(ms)*time.Millisecond, maxRoundWait)
}

// stopReason explains why a task takes no further part in rounds, or "".
func stopReason(t *meghav1.Task, j *meghav1.Job) string {
	switch {
	case jobstate.Terminal(j.Status.GetState()):
		return "job " + j.Id + " is " + jobstate.Name(j.Status.GetState())
	case !scheduler.Live(t.State):
		return "task " + t.Id + " is " + t.State.String()
	}
	return ""
}

func planFor(j *meghav1.Job, taskID string) (*meghav1.RoundPlan, bool) {
	tr := j.Status.GetTrain()
	for _, m := range tr.GetMembers() {
		if m.TaskId == taskID {
			return &meghav1.RoundPlan{Ready: true, Round: tr.Committed + 1, Attempt: tr.Attempt,
				Members: tr.Members, Rank: m.Rank}, true
		}
	}
	return nil, false
}

// JoinRound records that a task is ready for a round and returns the
// round's membership once the leader has fixed it.
func (e *workerEndpoint) JoinRound(ctx context.Context, req *meghav1.JoinRoundRequest) (*meghav1.RoundPlan, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	if req.Round == 0 || req.Addr == "" {
		return nil, toStatus(fmt.Errorf("%w: round (≥ 1) and addr are required", ErrInvalid))
	}
	deadline := time.NewTimer(roundWait(req.WaitMs))
	defer deadline.Stop()
	joined := false
	for {
		t, j, err := n.roundCaller(req.WorkerId, req.Epoch, req.TaskId)
		if err != nil {
			return nil, toStatus(err)
		}
		if why := stopReason(t, j); why != "" {
			return &meghav1.RoundPlan{Stop: true, Reason: why}, nil
		}
		tr := j.Status.GetTrain()
		next := tr.GetCommitted() + 1
		switch {
		case req.Round < next:
			return &meghav1.RoundPlan{Resync: true, Reason: fmt.Sprintf("round %d was committed without task %s", req.Round, t.Id)}, nil
		case req.Round > next:
			return nil, toStatus(fmt.Errorf("%w: round %d is ahead of the job's next round %d", ErrBadTransition, req.Round, next))
		}
		if len(tr.GetMembers()) > 0 {
			if p, ok := planFor(j, t.Id); ok {
				return p, nil
			}
			return &meghav1.RoundPlan{Resync: true, Reason: fmt.Sprintf("round %d started without task %s", next, t.Id)}, nil
		}
		if !joined {
			n.rounds.join(j.Id, t.Id, roundJoin{round: req.Round, addr: req.Addr, worker: req.WorkerId})
			joined = true
		}
		_, _, changed := n.fsm.State().JobWatch(j.Id)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return &meghav1.RoundPlan{Ready: false, Round: req.Round}, nil
		case <-changed:
		}
		if !n.IsLeader() {
			return nil, toStatus(n.leaderErr(ErrNotLeader))
		}
	}
}

// FinishRound records a member's outcome of an attempt and returns the
// decision once there is one.
func (e *workerEndpoint) FinishRound(ctx context.Context, req *meghav1.FinishRoundRequest) (*meghav1.RoundOutcome, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	if req.Round == 0 {
		return nil, toStatus(fmt.Errorf("%w: round (≥ 1) is required", ErrInvalid))
	}
	deadline := time.NewTimer(roundWait(req.WaitMs))
	defer deadline.Stop()
	reported := false
	for {
		t, j, err := n.roundCaller(req.WorkerId, req.Epoch, req.TaskId)
		if err != nil {
			return nil, toStatus(err)
		}
		tr := j.Status.GetTrain()
		if req.Round <= tr.GetCommitted() {
			return committedOutcome(j, t, req), nil
		}
		if why := stopReason(t, j); why != "" {
			return &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_STOP, Reason: why}, nil
		}
		next := tr.GetCommitted() + 1
		switch {
		case req.Round > next || len(tr.GetMembers()) == 0 || req.Attempt > tr.Attempt:
			return nil, toStatus(fmt.Errorf("%w: round %d attempt %d is not in flight", ErrBadTransition, req.Round, req.Attempt))
		case req.Attempt < tr.Attempt:
			if p, ok := planFor(j, t.Id); ok {
				return &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_RETRY, Retry: p, Reason: j.Status.LastError}, nil
			}
			return &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_STOP,
				Reason: fmt.Sprintf("round %d is retried without task %s", req.Round, t.Id)}, nil
		}
		if !reported {
			n.rounds.report(j.Id, req)
			reported = true
		}
		_, _, changed := n.fsm.State().JobWatch(j.Id)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_PENDING}, nil
		case <-changed:
		}
		if !n.IsLeader() {
			return nil, toStatus(n.leaderErr(ErrNotLeader))
		}
	}
}

// committedOutcome answers a report about a round that is already
// committed: commit if the caller was a member of the committed attempt.
func committedOutcome(j *meghav1.Job, t *meghav1.Task, req *meghav1.FinishRoundRequest) *meghav1.RoundOutcome {
	tr := j.Status.GetTrain()
	var rec *meghav1.RoundRecord
	if i := int(req.Round) - 1; i >= 0 && i < len(tr.GetRounds()) && tr.Rounds[i].Round == req.Round {
		rec = tr.Rounds[i]
	}
	member := false
	for _, m := range rec.GetMembers() {
		member = member || m.TaskId == t.Id
	}
	if rec == nil || rec.Attempt != req.Attempt || !member {
		return &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_STOP,
			Reason: fmt.Sprintf("round %d was committed without task %s", req.Round, t.Id)}
	}
	out := &meghav1.RoundOutcome{Decision: meghav1.RoundOutcome_DECISION_COMMIT,
		Done: j.Status.GetState() == meghav1.JobState_JOB_STATE_SUCCEEDED && req.Round == tr.Committed}
	if req.Round == tr.Committed {
		out.NextInnerSteps = tr.InnerSteps[t.Id]
	}
	if rec.Checkpoint {
		// Every member hears it; the round's rank 0 writes it. Cursors
		// and totals are as of this round only while it is the last.
		out.Checkpoint = true
		out.Cursors, out.Tokens = tr.Cursors, tr.Tokens
		out.Step = j.Status.GetProgress().GetStep()
		if req.Round != tr.Committed {
			out.Checkpoint = false // superseded by a later round's state
		}
	}
	return out
}

// StartTraining tells a starting built-in training task where to begin:
// at round 1 while the job has committed none and none is in flight;
// otherwise by restoring the latest checkpoint, which must be of the last
// committed round (a task can only join with the shared state everyone
// else holds). Until there is such a checkpoint the task waits; the leader
// has the next committed round checkpointed and holds the round after it
// for the task (formRound).
func (e *workerEndpoint) StartTraining(ctx context.Context, req *meghav1.StartTrainingRequest) (*meghav1.TrainingStart, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	deadline := time.NewTimer(roundWait(req.WaitMs))
	defer deadline.Stop()
	for {
		t, j, err := n.roundCaller(req.WorkerId, req.Epoch, req.TaskId)
		if err != nil {
			return nil, toStatus(err)
		}
		if why := stopReason(t, j); why != "" {
			return &meghav1.TrainingStart{Stop: true, Reason: why}, nil
		}
		tr := j.Status.GetTrain()
		ck := latestCheckpoint(j)
		switch {
		case tr.GetCommitted() == 0 && len(tr.GetMembers()) == 0 && ck == nil:
			return &meghav1.TrainingStart{Ready: true, Round: 1}, nil
		case ck != nil && ck.Round == tr.GetCommitted() && len(tr.GetMembers()) == 0:
			// (With a round in flight the task could not join it: it waits
			// for that round's checkpoint rather than restore twice.)
			n.rounds.markBehind(j.Id, t.Id) // until it joins the next round
			return &meghav1.TrainingStart{Ready: true, Round: ck.Round + 1, Restore: ck}, nil
		}
		n.rounds.markBehind(j.Id, t.Id)
		_, _, changed := n.fsm.State().JobWatch(j.Id)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			why := fmt.Sprintf("waiting for a checkpoint of round %d to restore", max(tr.GetCommitted(), 1))
			if len(tr.GetMembers()) > 0 {
				why = fmt.Sprintf("waiting for round %d, in flight, to commit and be checkpointed", tr.GetCommitted()+1)
			}
			if ck != nil {
				why += fmt.Sprintf(" (the latest checkpoint is of round %d)", ck.Round)
			}
			return &meghav1.TrainingStart{Reason: why}, nil
		case <-changed:
		}
		if !n.IsLeader() {
			return nil, toStatus(n.leaderErr(ErrNotLeader))
		}
	}
}

// CommitCheckpoint records a checkpoint a task of the job has written:
// CheckpointCommitted through Raft. Retrying it is safe: a checkpoint
// already recorded is acknowledged again.
func (e *workerEndpoint) CommitCheckpoint(ctx context.Context, req *meghav1.CommitCheckpointRequest) (*meghav1.CommitCheckpointResponse, error) {
	n := e.s.node
	if err := n.checkLeader(false); err != nil {
		return nil, toStatus(err)
	}
	t, j, err := n.roundCaller(req.WorkerId, req.Epoch, req.TaskId)
	if err != nil {
		return nil, toStatus(err)
	}
	ck := req.GetCheckpoint()
	if ck == nil {
		return nil, toStatus(fmt.Errorf("%w: checkpoint is required", ErrInvalid))
	}
	if last := latestCheckpoint(j); last != nil && last.Round == ck.Round && last.Key == ck.Key {
		return &meghav1.CommitCheckpointResponse{}, nil
	}
	ck = proto.Clone(ck).(*meghav1.CheckpointInfo)
	ck.TaskId = t.Id
	_, err = n.Apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_CheckpointCommitted{CheckpointCommitted: &meghav1.CheckpointCommittedCommand{
		JobId: j.Id, Checkpoint: ck, Pruned: req.Pruned, At: timestamppb.Now()}}})
	if err != nil {
		return nil, toStatus(err)
	}
	n.logger.Info("checkpoint committed", "job_id", j.Id, "round", ck.Round, "bytes", ck.Bytes, "uploaded", ck.Uploaded, "store", ck.Store)
	return &meghav1.CommitCheckpointResponse{}, nil
}
