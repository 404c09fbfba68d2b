package coordinator

import (
	"fmt"
	"math"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The round protocol, driven by hand: three registered workers whose
// tasks join rounds and report outcomes as the built-in trainer would,
// with failures and a lost member injected.

type roundMember struct {
	worker string
	epoch  uint64
	task   string
}

func roundSetup(t *testing.T, rounds uint64) (*Server, *client.Client, string, []roundMember) {
	t.Helper()
	return roundSetupSpec(t, rounds, nil)
}

func roundSetupSpec(t *testing.T, rounds uint64, ck *meghav1.CheckpointSpec) (*Server, *client.Client, string, []roundMember) {
	t.Helper()
	s := startServer(t, "n1", true, func(c *ServerConfig) {
		c.Workers.Detector = DefaultDetectorConfig()
		c.Workers.Detector.AcceptablePause = time.Hour // nobody is lost unless the test says so
	})
	waitFor(t, "leader", 10*time.Second, s.Node().IsLeader)
	wc := newClient(t, tokWorker, s.Addr())
	admin := newClient(t, tokAdmin, s.Addr())
	var members []roundMember
	for i := range 3 {
		res, err := wc.RegisterWorker(ctxT(t), &meghav1.RegisterWorkerRequest{WorkerId: fmt.Sprintf("w%d", i), Host: "h",
			AdvertiseAddr: fmt.Sprintf("127.0.0.1:%d", 9000+i),
			Gpus:          []*meghav1.GPU{{Uuid: fmt.Sprintf("EMU-%d", i), Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, roundMember{worker: res.WorkerId, epoch: res.Epoch})
	}
	spec := &meghav1.JobSpec{Name: "rounds", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:     &meghav1.ModelSpec{Builtin: "mlp-tiny"},
		Data:      &meghav1.DataSpec{Dataset: "synthetic", BatchSize: 4, SeqLen: 8},
		Resources: &meghav1.Resources{Workers: 3},
		Sync:      &meghav1.SyncSpec{InnerSteps: 10, OuterLr: 0.7, OuterMomentum: 0.9},
		Stop:      &meghav1.StopCondition{Rounds: rounds}, Checkpoint: ck}
	sub, err := admin.Submit(ctxT(t), spec, "r1")
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	waitFor(t, "3 tasks placed", 10*time.Second, func() bool { return len(s.Node().FSM().State().Tasks(id)) == 3 })
	for _, tk := range s.Node().FSM().State().Tasks(id) {
		for i := range members {
			if members[i].worker == tk.WorkerId {
				members[i].task = tk.Id
			}
		}
	}
	return s, wc, id, members
}

func join(t *testing.T, wc *client.Client, m roundMember, round uint64) *meghav1.RoundPlan {
	t.Helper()
	p, err := wc.JoinRound(ctxT(t), &meghav1.JoinRoundRequest{WorkerId: m.worker, Epoch: m.epoch, TaskId: m.task,
		Round: round, Addr: "127.0.0.1:1" + m.worker[1:]})
	if err != nil {
		t.Fatalf("JoinRound(%s, %d): %v", m.task, round, err)
	}
	return p
}

// finish reports until the coordinator decides.
func finish(t *testing.T, wc *client.Client, m roundMember, round uint64, attempt uint32, ok bool, stats *meghav1.MemberRound, wait uint32) *meghav1.RoundOutcome {
	t.Helper()
	req := &meghav1.FinishRoundRequest{WorkerId: m.worker, Epoch: m.epoch, TaskId: m.task, Round: round,
		Attempt: attempt, Ok: ok, Stats: stats, WaitMs: wait}
	if !ok {
		req.Error = "collective: peer reset"
	}
	out, err := wc.FinishRound(ctxT(t), req)
	if err != nil {
		t.Fatalf("FinishRound(%s, %d/%d): %v", m.task, round, attempt, err)
	}
	return out
}

func decide(t *testing.T, wc *client.Client, m roundMember, round uint64, attempt uint32, ok bool, stats *meghav1.MemberRound) *meghav1.RoundOutcome {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out := finish(t, wc, m, round, attempt, ok, stats, 1500)
		if out.Decision != meghav1.RoundOutcome_DECISION_PENDING {
			return out
		}
	}
	t.Fatalf("no decision on round %d attempt %d for %s", round, attempt, m.task)
	return nil
}

func TestRoundFailureRetriedThenCommitted(t *testing.T) {
	s, wc, id, ms := roundSetup(t, 2)
	st := s.Node().FSM().State()

	// Nothing forms until every live task has joined.
	for _, m := range ms[:2] {
		if p := join(t, wc, m, 1); p.Ready || p.Stop {
			t.Fatalf("round formed with 2 of 3 tasks joined: %v", p)
		}
	}
	var plan *meghav1.RoundPlan
	waitFor(t, "round 1 formed", 10*time.Second, func() bool {
		plan = join(t, wc, ms[2], 1)
		return plan.Ready
	})
	if plan.Attempt != 0 || len(plan.Members) != 3 {
		t.Fatalf("plan %v, want attempt 0 with 3 members", plan)
	}
	// A round the job is not at is refused.
	_, err := wc.JoinRound(ctxT(t), &meghav1.JoinRoundRequest{WorkerId: ms[0].worker, Epoch: ms[0].epoch, TaskId: ms[0].task, Round: 7, Addr: "x:1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("JoinRound for round 7: %v, want FailedPrecondition", err)
	}

	// Attempt 0: one member's all-reduce fails. The others, who succeeded,
	// must not commit; all are told to retry (everyone is still alive).
	stats := func(tokens uint64, loss, secs float64) *meghav1.MemberRound {
		return &meghav1.MemberRound{Steps: uint32(tokens / 4), Tokens: tokens, Loss: loss, Weight: float64(tokens),
			StepSeconds: secs, BytesSent: 100, BytesReceived: 100}
	}
	if out := finish(t, wc, ms[0], 1, 0, true, stats(40, 3, 0.01), 0); out.Decision != meghav1.RoundOutcome_DECISION_PENDING {
		t.Fatalf("decision with one report: %v", out)
	}
	finish(t, wc, ms[1], 1, 0, false, nil, 0)
	out := decide(t, wc, ms[2], 1, 0, true, stats(40, 3, 0.01))
	if out.Decision != meghav1.RoundOutcome_DECISION_RETRY || out.Retry.Attempt != 1 || len(out.Retry.Members) != 3 {
		t.Fatalf("outcome %v, want RETRY as attempt 1 with 3 members", out)
	}
	if tr, _ := st.Job(id); tr.Status.Train.AbortedAttempts != 1 || tr.Status.Train.Committed != 0 {
		t.Fatalf("train status %v after a failed attempt", tr.Status.Train)
	}

	// Attempt 1 succeeds everywhere: committed, with tokens-weighted loss
	// and the slow member (4× the step time) given a quarter of H.
	finish(t, wc, ms[0], 1, 1, true, stats(40, 2, 0.01), 0)
	finish(t, wc, ms[1], 1, 1, true, stats(40, 4, 0.04), 0)
	out = decide(t, wc, ms[2], 1, 1, true, stats(20, 3, 0.02))
	if out.Decision != meghav1.RoundOutcome_DECISION_COMMIT || out.Done {
		t.Fatalf("outcome %v, want COMMIT, not done", out)
	}
	j, _ := st.Job(id)
	tr := j.Status.Train
	rec := tr.Rounds[0]
	if tr.Committed != 1 || rec.Attempt != 1 || rec.Tokens != 100 || rec.BytesSent != 300 || len(rec.Members) != 3 {
		t.Fatalf("round record %v", rec)
	}
	if want := (40*2 + 40*4 + 20*3) / 100.0; math.Abs(rec.TrainLoss-want) > 1e-9 {
		t.Fatalf("train loss %v, want tokens-weighted %v", rec.TrainLoss, want)
	}
	if got := tr.InnerSteps; got[ms[0].task] != 10 || got[ms[1].task] != 3 || got[ms[2].task] != 5 {
		t.Fatalf("next inner steps %v, want 10 / 3 / 5 by step time", got)
	}
	// A repeated report of a committed round is answered the same way.
	if again := finish(t, wc, ms[0], 1, 1, true, stats(40, 2, 0.01), 0); again.Decision != meghav1.RoundOutcome_DECISION_COMMIT || again.NextInnerSteps != 10 {
		t.Fatalf("repeated report: %v", again)
	}

	// Round 2: a member is lost after everyone joined: the attempt is
	// retried with the two survivors at once.
	for _, m := range ms {
		join(t, wc, m, 2)
	}
	waitFor(t, "round 2 formed", 10*time.Second, func() bool { return join(t, wc, ms[0], 2).Ready })
	if _, err := s.Node().Apply(ctxT(t), &meghav1.Command{Cmd: &meghav1.Command_WorkerLost{WorkerLost: &meghav1.WorkerLostCommand{
		Id: ms[2].worker, Epoch: ms[2].epoch, Reason: "test", At: timestamppb.Now()}}}); err != nil {
		t.Fatal(err)
	}
	// Nobody has reported yet, and the survivors may be stuck in the ring
	// waiting on the lost member: the attempt is retried at once.
	waitFor(t, "round 2 retried without reports", 10*time.Second, func() bool {
		j, _ := st.Job(id)
		return j.Status.Train.Attempt == 1 && len(j.Status.Train.Members) == 2
	})
	finish(t, wc, ms[0], 2, 0, true, stats(40, 2, 0.01), 0)
	out = decide(t, wc, ms[1], 2, 0, true, stats(40, 2, 0.01))
	if out.Decision != meghav1.RoundOutcome_DECISION_RETRY || len(out.Retry.Members) != 2 {
		t.Fatalf("outcome %v, want RETRY with the 2 survivors", out)
	}
	// The lost worker's calls are refused: its epoch is over.
	if _, err := wc.FinishRound(ctxT(t), &meghav1.FinishRoundRequest{WorkerId: ms[2].worker, Epoch: ms[2].epoch, TaskId: ms[2].task,
		Round: 2, Attempt: 0, Ok: true}); status.Code(err) == codes.OK {
		t.Fatal("FinishRound from a lost worker accepted")
	}
	finish(t, wc, ms[0], 2, 1, true, stats(40, 2, 0.01), 0)
	out = decide(t, wc, ms[1], 2, 1, true, stats(40, 2, 0.01))
	if out.Decision != meghav1.RoundOutcome_DECISION_COMMIT || !out.Done {
		t.Fatalf("outcome %v, want COMMIT and done (stop after 2 rounds)", out)
	}
	j, _ = st.Job(id)
	if j.Status.State != meghav1.JobState_JOB_STATE_SUCCEEDED || len(j.Status.Train.Rounds[1].Members) != 2 {
		t.Fatalf("job %v, train %v", j.Status.State, j.Status.Train)
	}
	// Once the job is over, joining says stop.
	if p := join(t, wc, ms[0], 3); !p.Stop {
		t.Fatalf("join after the job ended: %v", p)
	}
}

func TestRoundCommandsValidated(t *testing.T) {
	s, _, id, ms := roundSetup(t, 5)
	bad := []*meghav1.StartRoundCommand{
		{JobId: id, Round: 2, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker, Addr: "a:1"}}},             // not the next round
		{JobId: id, Round: 1, Attempt: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker, Addr: "a:1"}}}, // no attempt 0 yet
		{JobId: id, Round: 1}, // no members
		{JobId: id, Round: 1, Members: []*meghav1.RoundMember{{TaskId: "nope", WorkerId: ms[0].worker, Addr: "a:1"}}},                           // unknown task
		{JobId: id, Round: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[1].worker, Addr: "a:1"}}},                       // wrong worker
		{JobId: id, Round: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker, Rank: 1, Addr: "a:1"}}},              // rank out of range
		{JobId: id, Round: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker}}},                                    // no address
		{JobId: "missing", Round: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker, Addr: "a:1"}}},                // no such job
		{JobId: id, Round: 1, Members: []*meghav1.RoundMember{{TaskId: ms[0].task, WorkerId: ms[0].worker, Addr: "a:1"}, {TaskId: ms[0].task}}}, // task twice
	}
	for i, c := range bad {
		if _, err := s.Node().Apply(ctxT(t), &meghav1.Command{Cmd: &meghav1.Command_StartRound{StartRound: c}}); err == nil {
			t.Errorf("bad StartRound %d accepted: %v", i, c)
		}
	}
	// A commit with no round in flight is refused.
	if _, err := s.Node().Apply(ctxT(t), &meghav1.Command{Cmd: &meghav1.Command_CommitRound{CommitRound: &meghav1.CommitRoundCommand{
		JobId: id, Record: &meghav1.RoundRecord{Round: 1}}}}); err == nil {
		t.Error("CommitRound with no round in flight accepted")
	}
	if j, _ := s.Node().FSM().State().Job(id); j.Status.Train != nil {
		t.Errorf("refused commands changed the job: %v", j.Status.Train)
	}
}

func TestRecentStepSecondsIsAMedian(t *testing.T) {
	tr := &meghav1.TrainStatus{}
	for _, s := range []float64{0.01, 0.01, 0.5, 0.01, 0.01, 9} { // one slow outlier long ago, one just now
		tr.Rounds = append(tr.Rounds, &meghav1.RoundRecord{Members: []*meghav1.MemberRound{{TaskId: "a", StepSeconds: s}, {TaskId: "b", StepSeconds: 1}}})
	}
	// This round (0.02) and the last four (9, 0.01, 0.01, 0.5): the
	// median, with both outliers ignored.
	if got := recentStepSeconds(tr, "a", 0.02); got != 0.02 {
		t.Fatalf("median step time %v, want 0.02", got)
	}
	if got := recentStepSeconds(&meghav1.TrainStatus{}, "a", 0.03); got != 0.03 {
		t.Fatalf("with no history %v, want this round's 0.03", got)
	}
	if got := recentStepSeconds(tr, "nobody", 0); got != 0 {
		t.Fatalf("unknown task %v, want 0", got)
	}
}
