package coordinator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Checkpoints in the round protocol, driven by hand: commits mark rounds
// for a checkpoint (at the spec's cadence, and at once when a task waits
// to restore), CommitCheckpoint records them, a replacement task restores
// the latest one and the next round waits for it, and a job that loses
// every worker goes back to its latest checkpoint.

func startTraining(t *testing.T, wc *client.Client, m roundMember) *meghav1.TrainingStart {
	t.Helper()
	s, err := wc.StartTraining(ctxT(t), &meghav1.StartTrainingRequest{WorkerId: m.worker, Epoch: m.epoch, TaskId: m.task, WaitMs: 100})
	if err != nil {
		t.Fatalf("StartTraining(%s): %v", m.task, err)
	}
	return s
}

// commitRound runs round r with the given members to a commit and
// returns the outcome each got.
func commitRound(t *testing.T, wc *client.Client, r uint64, ms []roundMember) []*meghav1.RoundOutcome {
	t.Helper()
	var plan *meghav1.RoundPlan
	for _, m := range ms[:len(ms)-1] {
		join(t, wc, m, r)
	}
	waitFor(t, fmt.Sprintf("round %d formed", r), 10*time.Second, func() bool {
		plan = join(t, wc, ms[len(ms)-1], r)
		return plan.Ready
	})
	if len(plan.Members) != len(ms) {
		t.Fatalf("round %d formed with %d members, want %d", r, len(plan.Members), len(ms))
	}
	for i, m := range ms {
		finish(t, wc, m, r, plan.Attempt, true, &meghav1.MemberRound{Steps: 10, Tokens: 100, Loss: 3, Weight: 100, StepSeconds: 0.01, Cursor: r*10 + uint64(i)}, 0)
	}
	outs := make([]*meghav1.RoundOutcome, len(ms))
	for i, m := range ms {
		outs[i] = decide(t, wc, m, r, plan.Attempt, true, nil)
		if outs[i].Decision != meghav1.RoundOutcome_DECISION_COMMIT {
			t.Fatalf("round %d: %s got %v", r, m.task, outs[i])
		}
	}
	return outs
}

func commitCheckpoint(wc *client.Client, t *testing.T, m roundMember, round uint64) error {
	_, err := wc.CommitCheckpoint(ctxT(t), &meghav1.CommitCheckpointRequest{WorkerId: m.worker, Epoch: m.epoch, TaskId: m.task,
		Checkpoint: &meghav1.CheckpointInfo{Round: round, Store: "mem://t", Key: fmt.Sprintf("jobs/x/ckpt/%012d/manifest.json", round), Bytes: 1000, Uploaded: 10}})
	return err
}

func TestCheckpointsAndARestoringReplacement(t *testing.T) {
	s, wc, id, ms := roundSetupSpec(t, 20, &meghav1.CheckpointSpec{EveryRounds: 5, Keep: 3})
	st := s.Node().FSM().State()
	for _, m := range ms {
		if got := startTraining(t, wc, m); !got.Ready || got.Round != 1 || got.Restore != nil {
			t.Fatalf("a fresh job's task starts %v, want round 1 without a restore", got)
		}
	}
	// Round 1: not a multiple of every_rounds, nobody waiting: no checkpoint.
	outs := commitRound(t, wc, 1, ms)
	if outs[0].Checkpoint {
		t.Fatal("round 1 marked for a checkpoint with every_rounds 5 and nobody waiting")
	}
	if err := commitCheckpoint(wc, t, ms[0], 2); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("checkpoint of an uncommitted round: %v, want FailedPrecondition", err)
	}

	// Worker 2 is lost; a new worker takes its rank.
	if _, err := s.Node().Apply(ctxT(t), &meghav1.Command{Cmd: &meghav1.Command_WorkerLost{WorkerLost: &meghav1.WorkerLostCommand{
		Id: ms[2].worker, Epoch: ms[2].epoch, Reason: "test", At: timestamppb.Now()}}}); err != nil {
		t.Fatal(err)
	}
	res, err := wc.RegisterWorker(ctxT(t), &meghav1.RegisterWorkerRequest{WorkerId: "w9", Host: "h", AdvertiseAddr: "127.0.0.1:9009",
		Gpus: []*meghav1.GPU{{Uuid: "EMU-9", Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}})
	if err != nil {
		t.Fatal(err)
	}
	nw := roundMember{worker: res.WorkerId, epoch: res.Epoch}
	waitFor(t, "the lost rank placed on the new worker", 10*time.Second, func() bool {
		for _, tk := range st.Tasks(id) {
			if tk.WorkerId == nw.worker && tk.Rank == 2 {
				nw.task = tk.Id
				return true
			}
		}
		return false
	})
	// No checkpoint of round 1: the newcomer waits, and says why.
	got := startTraining(t, wc, nw)
	if got.Ready || !strings.Contains(got.Reason, "waiting for a checkpoint of round 1") {
		t.Fatalf("newcomer without a checkpoint to restore: %v", got)
	}
	// Round 2 goes on with the survivors and is checkpointed for it.
	outs = commitRound(t, wc, 2, ms[:2])
	if !outs[0].Checkpoint || outs[0].Cursors["0"] != 20 || outs[0].Cursors["1"] != 21 {
		t.Fatalf("round 2 outcome %v, want a checkpoint with cursors 0:20 1:21", outs[0])
	}
	if err := commitCheckpoint(wc, t, ms[0], 2); err != nil {
		t.Fatal(err)
	}
	if err := commitCheckpoint(wc, t, ms[0], 2); err != nil {
		t.Fatalf("a repeated report is acknowledged: %v", err)
	}
	if err := commitCheckpoint(wc, t, ms[0], 1); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("an older checkpoint after a newer one: %v, want FailedPrecondition", err)
	}
	j, _ := st.Job(id)
	if cks := j.Status.Train.Checkpoints; len(cks) != 1 || cks[0].Round != 2 || cks[0].TaskId != ms[0].task || cks[0].CommittedAt == nil {
		t.Fatalf("recorded checkpoints %v", cks)
	}
	// The newcomer restores round 2 and joins round 3, which waits for it.
	waitFor(t, "restore offered", 10*time.Second, func() bool { got = startTraining(t, wc, nw); return got.Ready })
	if got.Round != 3 || got.Restore.GetRound() != 2 {
		t.Fatalf("newcomer start %v, want round 3 after restoring round 2", got)
	}
	for _, m := range ms[:2] {
		join(t, wc, m, 3)
	}
	if p := join(t, wc, ms[1], 3); p.Ready {
		t.Fatal("round 3 formed without the restoring newcomer")
	}
	outs = commitRound(t, wc, 3, []roundMember{ms[0], ms[1], nw})
	if outs[0].Checkpoint {
		t.Fatal("round 3 checkpointed though nobody waits and 3 is not a multiple of 5")
	}

	// A reclaim notice (the lease manager's wantCheckpoint) has the next
	// commit checkpointed, once.
	s.Node().rounds.wantCheckpoint(id)
	if outs = commitRound(t, wc, 4, []roundMember{ms[0], ms[1], nw}); !outs[0].Checkpoint {
		t.Fatal("round 4 not checkpointed after a reclaim notice")
	}
	if s.Node().rounds.checkpointWanted(id, false) {
		t.Fatal("the wish for a checkpoint outlived the commit that took it")
	}

	// Every worker lost: the job goes back to round 2's checkpoint.
	for _, m := range []roundMember{ms[0], ms[1], nw} {
		if _, err := s.Node().Apply(ctxT(t), &meghav1.Command{Cmd: &meghav1.Command_WorkerLost{WorkerLost: &meghav1.WorkerLostCommand{
			Id: m.worker, Epoch: m.epoch, Reason: "test", At: timestamppb.Now()}}}); err != nil {
			t.Fatal(err)
		}
	}
	j, _ = st.Job(id)
	if tr := j.Status.Train; j.Status.State != meghav1.JobState_JOB_STATE_RECOVERING || tr.Committed != 2 || len(tr.Rounds) != 2 ||
		!strings.Contains(j.Status.LastError, "resuming from the checkpoint of round 2") {
		t.Fatalf("after losing every worker: state %v, committed %d, %d rounds, %q", j.Status.State, tr.Committed, len(tr.Rounds), j.Status.LastError)
	}
}

// A finished training job keeps its leases until its final checkpoint is
// recorded, for at most finalCheckpointWait.
func TestAwaitingFinalCheckpoint(t *testing.T) {
	now := time.Now()
	job := func(state meghav1.JobState, committed, ck uint64, finished time.Time) *meghav1.Job {
		j := &meghav1.Job{Spec: &meghav1.JobSpec{Kind: meghav1.JobKind_JOB_KIND_TRAIN, Model: &meghav1.ModelSpec{Builtin: "mlp-tiny"}},
			Status: &meghav1.JobStatus{State: state, FinishedAt: timestamppb.New(finished), Train: &meghav1.TrainStatus{Committed: committed}}}
		if ck > 0 {
			j.Status.Train.Checkpoints = []*meghav1.CheckpointInfo{{Round: ck}}
		}
		return j
	}
	succeeded := meghav1.JobState_JOB_STATE_SUCCEEDED
	for _, tc := range []struct {
		name string
		j    *meghav1.Job
		want bool
	}{
		{"final checkpoint not yet recorded", job(succeeded, 10, 9, now), true},
		{"none recorded at all", job(succeeded, 10, 0, now), true},
		{"final checkpoint recorded", job(succeeded, 10, 10, now), false},
		{"waited long enough", job(succeeded, 10, 9, now.Add(-finalCheckpointWait)), false},
		{"cancelled: no final checkpoint is coming", job(meghav1.JobState_JOB_STATE_CANCELLED, 10, 9, now), false},
	} {
		if got := awaitingFinalCheckpoint(tc.j, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
