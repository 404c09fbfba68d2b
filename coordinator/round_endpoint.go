package coordinator

import (
	"context"
	"fmt"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
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
			return &meghav1.RoundPlan{Stop: true, Reason: fmt.Sprintf("round %d was committed without task %s", req.Round, t.Id)}, nil
		case req.Round > next:
			return nil, toStatus(fmt.Errorf("%w: round %d is ahead of the job's next round %d", ErrBadTransition, req.Round, next))
		}
		if len(tr.GetMembers()) > 0 {
			if p, ok := planFor(j, t.Id); ok {
				return p, nil
			}
			return &meghav1.RoundPlan{Stop: true, Reason: fmt.Sprintf("round %d started without task %s", next, t.Id)}, nil
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
	return out
}
