package coordinator

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"google.golang.org/protobuf/proto"
)

// maxCheckpoints bounds the checkpoints a job's status lists, whatever
// its writer's retention reports (the spec's keep is at most 1000).
const maxCheckpoints = 1000

// applyCheckpointCommitted records a checkpoint whose manifest is written.
// A checkpoint of a round that is not yet committed is refused; one older
// than the newest recorded is refused too (a newer one superseded it), so
// the list stays ordered by round and the last entry is what a joining
// worker restores. A job that has ended still records its final one.
func (s *State) applyCheckpointCommitted(index uint64, c *meghav1.CheckpointCommittedCommand) (*ApplyResult, error) {
	prev, ok := s.jobs[c.GetJobId()]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, c.GetJobId())
	}
	if !scheduler.BuiltinTrain(prev) {
		return nil, fmt.Errorf("%w: job %s does not run the built-in trainer", ErrInvalid, prev.Id)
	}
	ck := c.GetCheckpoint()
	tr := prev.Status.GetTrain()
	switch {
	case ck == nil || ck.Round == 0 || ck.Key == "" || ck.Store == "":
		return nil, fmt.Errorf("%w: a checkpoint needs a round (≥ 1), a store and a key", ErrInvalid)
	case ck.Round > tr.GetCommitted():
		return nil, fmt.Errorf("%w: checkpoint of round %d, but %s has committed %d rounds", ErrBadTransition, ck.Round, prev.Id, tr.GetCommitted())
	}
	if n := len(tr.GetCheckpoints()); n > 0 && tr.Checkpoints[n-1].Round >= ck.Round {
		return nil, fmt.Errorf("%w: checkpoint of round %d is not newer than round %d's", ErrBadTransition, ck.Round, tr.Checkpoints[n-1].Round)
	}
	j := proto.Clone(prev).(*meghav1.Job)
	t := j.Status.Train
	ck = proto.Clone(ck).(*meghav1.CheckpointInfo)
	ck.CommittedAt = c.At
	t.Checkpoints = slices.DeleteFunc(t.Checkpoints, func(x *meghav1.CheckpointInfo) bool {
		return slices.Contains(c.Pruned, x.Round)
	})
	t.Checkpoints = append(t.Checkpoints, ck)
	if n := len(t.Checkpoints); n > maxCheckpoints {
		t.Checkpoints = t.Checkpoints[n-maxCheckpoints:]
	}
	j.Status.UpdatedAt, j.ModifyIndex = c.At, index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

// latestCheckpoint is the checkpoint a joining task restores, or nil.
func latestCheckpoint(j *meghav1.Job) *meghav1.CheckpointInfo {
	cks := j.GetStatus().GetTrain().GetCheckpoints()
	if len(cks) == 0 {
		return nil
	}
	return cks[len(cks)-1]
}

// rewindLocked takes a training job back to a checkpoint: the rounds
// after it are forgotten (their work is lost with the workers that held
// it) and the next round is the one after the checkpoint. Tokens and
// bytes stay counted: they were spent.
func rewindLocked(j *meghav1.Job, ck *meghav1.CheckpointInfo) {
	t := j.Status.Train
	if t == nil || ck.Round >= t.Committed && len(t.Members) == 0 {
		return
	}
	t.Members, t.Attempt, t.RoundStartedAt = nil, 0, nil
	if ck.Round < t.Committed {
		t.Rounds = slices.DeleteFunc(t.Rounds, func(r *meghav1.RoundRecord) bool { return r.Round > ck.Round })
		t.Committed = ck.Round
		t.Cursors = maps.Clone(ck.Cursors)
		if p := j.Status.Progress; p != nil {
			p.Round, p.Step = ck.Round, ck.Step
		}
	}
}

// checkpointStore is the store URL for training jobs that name none.
func (n *Node) checkpointStore() string {
	if n.cfg.CheckpointStore != "" {
		return n.cfg.CheckpointStore
	}
	dir, err := filepath.Abs(filepath.Join(n.cfg.DataDir, "checkpoints"))
	if err != nil {
		dir = filepath.Join(n.cfg.DataDir, "checkpoints")
	}
	return "file://" + filepath.ToSlash(dir)
}
