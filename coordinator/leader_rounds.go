package coordinator

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultInnerSteps is DiLoCo's H when a spec leaves it out.
const DefaultInnerSteps = 50

// roundBook is the leader's memory of sync rounds between Raft entries: which
// tasks are ready for the next round (and where their collective endpoint
// is), and what each member reported about the attempt in flight. It is
// not replicated: after a failover members retry JoinRound and FinishRound
// against the new leader, which rebuilds it.
type roundBook struct {
	mu      sync.Mutex
	changed chan struct{}
	joins   map[string]map[string]roundJoin                   // job → task → join
	reports map[string]map[string]*meghav1.FinishRoundRequest // job → task → report of the attempt in flight
	failed  map[string]time.Time                              // job → when the attempt in flight was seen to fail
	// behind holds the tasks waiting to restore a checkpoint before they
	// can join (a replacement, or a task the rounds went on without).
	behind map[string]map[string]bool // job → task
	held   map[string]roundHold       // job → the round whose formation waits for them
	// wanted holds jobs whose next commit is checkpointed whatever the
	// cadence (a reclaim notice: the provider is about to take a worker).
	wanted map[string]bool
}

// roundHold is a round whose formation waits for restoring tasks.
type roundHold struct {
	round uint64
	since time.Time
}

// restoreHold bounds how long a round's formation waits for tasks that
// are restoring a checkpoint; after it the round goes on without them
// and they try again at a later round.
const restoreHold = 30 * time.Second

type roundJoin struct {
	round  uint64
	addr   string
	worker string
}

func newRoundBook() *roundBook {
	b := &roundBook{changed: make(chan struct{})}
	b.reset()
	return b
}

func (b *roundBook) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.joins = map[string]map[string]roundJoin{}
	b.reports = map[string]map[string]*meghav1.FinishRoundRequest{}
	b.failed = map[string]time.Time{}
	b.behind = map[string]map[string]bool{}
	b.held = map[string]roundHold{}
	b.wanted = map[string]bool{}
	b.notifyLocked()
}

func (b *roundBook) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *roundBook) watch() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *roundBook) join(job, task string, j roundJoin) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.joins[job] == nil {
		b.joins[job] = map[string]roundJoin{}
	}
	delete(b.behind[job], task)
	if old, ok := b.joins[job][task]; ok && old == j {
		return
	}
	b.joins[job][task] = j
	b.notifyLocked()
}

// markBehind records that a task waits to restore a checkpoint.
func (b *roundBook) markBehind(job, task string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.behind[job] == nil {
		b.behind[job] = map[string]bool{}
	}
	if !b.behind[job][task] {
		b.behind[job][task] = true
		b.notifyLocked()
	}
}

// wantCheckpoint has the job's next commit checkpointed.
func (b *roundBook) wantCheckpoint(job string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wanted[job] = true
}

// checkpointWanted reports (and with clear, forgets) a wantCheckpoint.
func (b *roundBook) checkpointWanted(job string, clear bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.wanted[job]
	if clear {
		delete(b.wanted, job)
	}
	return w
}

// pruneBehind forgets restoring tasks of a job that are no longer live.
func (b *roundBook) pruneBehind(job string, live []*meghav1.Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for task := range b.behind[job] {
		if !slices.ContainsFunc(live, func(t *meghav1.Task) bool { return t.Id == task }) {
			delete(b.behind[job], task)
		}
	}
}

// behindTasks returns the tasks of a job waiting to restore.
func (b *roundBook) behindTasks(job string) map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool, len(b.behind[job]))
	for k := range b.behind[job] {
		out[k] = true
	}
	return out
}

// hold reports whether the formation of a job's round may still wait for
// restoring tasks: for restoreHold from the first time it waited.
func (b *roundBook) hold(job string, round uint64, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.held[job]
	if !ok || h.round != round {
		h = roundHold{round: round, since: now}
		b.held[job] = h
	}
	return now.Sub(h.since) < restoreHold
}

func (b *roundBook) report(job string, r *meghav1.FinishRoundRequest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reports[job] == nil {
		b.reports[job] = map[string]*meghav1.FinishRoundRequest{}
	}
	if old, ok := b.reports[job][r.TaskId]; ok && old.Round == r.Round && old.Attempt == r.Attempt && old.Ok == r.Ok {
		return
	}
	b.reports[job][r.TaskId] = proto.Clone(r).(*meghav1.FinishRoundRequest)
	b.notifyLocked()
}

// snapshot copies a job's joins and reports.
func (b *roundBook) snapshot(job string) (map[string]roundJoin, map[string]*meghav1.FinishRoundRequest, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	joins := make(map[string]roundJoin, len(b.joins[job]))
	for k, v := range b.joins[job] {
		joins[k] = v
	}
	reports := make(map[string]*meghav1.FinishRoundRequest, len(b.reports[job]))
	for k, v := range b.reports[job] {
		reports[k] = v
	}
	return joins, reports, b.failed[job]
}

func (b *roundBook) markFailed(job string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.failed[job]; !ok {
		b.failed[job] = at
	}
}

func (b *roundBook) clearFailed(job string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.failed, job)
}

// forget drops what is known of jobs that are no longer training.
func (b *roundBook) forget(keep map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keepOnly(b.joins, keep)
	keepOnly(b.reports, keep)
	keepOnly(b.failed, keep)
	keepOnly(b.behind, keep)
	keepOnly(b.held, keep)
	keepOnly(b.wanted, keep)
}

// keepOnly deletes the entries of m whose job is not in keep.
func keepOnly[V any](m map[string]V, keep map[string]bool) {
	for id := range m {
		if !keep[id] {
			delete(m, id)
		}
	}
}

// retryDelay spaces out retries of a round that fails while none of its
// members is known to be lost (a partition, say), so that a hopeless round
// does not fill the Raft log.
func retryDelay(attempt uint32) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)
}

// driveRounds is a leader duty: it forms each training job's next round
// once every live task is ready for it, commits a round once every member
// of its attempt has succeeded, and retries an attempt with the survivors
// as soon as a member is lost, or once every member has reported and one
// failed.
func (n *Node) driveRounds(ctx context.Context) {
	n.rounds.reset()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		views, changed := n.fsm.State().TrainingJobs()
		bookChanged := n.rounds.watch()
		keep := make(map[string]bool, len(views))
		for _, v := range views {
			keep[v.Job.Id] = true
			if err := n.driveRound(ctx, v); err != nil && ctx.Err() == nil {
				n.logger.Debug("round step refused", "job_id", v.Job.Id, "error", err)
			}
		}
		n.rounds.forget(keep)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-bookChanged:
		case <-t.C:
		}
	}
}

func (n *Node) driveRound(ctx context.Context, v RoundView) error {
	job := v.Job
	tr := job.Status.GetTrain()
	next := tr.GetCommitted() + 1
	n.rounds.pruneBehind(job.Id, v.Live)
	joins, reports, failedAt := n.rounds.snapshot(job.Id)
	apply := func(c *meghav1.Command) error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := n.Apply(actx, c)
		return err
	}

	if len(tr.GetMembers()) == 0 {
		members := n.formRound(job, next, v.Live, joins)
		if len(members) == 0 {
			return nil
		}
		err := apply(&meghav1.Command{Cmd: &meghav1.Command_StartRound{StartRound: &meghav1.StartRoundCommand{
			JobId: job.Id, Round: next, Attempt: 0, Members: members, At: timestamppb.Now()}}})
		if err == nil {
			n.logger.Info("round started", "job_id", job.Id, "round", next, "members", len(members))
		}
		return err
	}

	// An attempt is in flight: decide it once every member has reported or
	// is gone.
	var (
		ok       []*meghav1.FinishRoundRequest
		problems []string
		waiting  bool
		lost     bool
	)
	live := map[string]bool{}
	for _, t := range v.Live {
		live[t.Id] = true
	}
	for _, m := range tr.Members {
		r, has := reports[m.TaskId]
		switch {
		case has && r.Round == next && r.Attempt == tr.Attempt && r.Ok:
			ok = append(ok, r)
		case has && r.Round == next && r.Attempt == tr.Attempt:
			problems = append(problems, fmt.Sprintf("rank %d: %s", m.Rank, r.Error))
		case !live[m.TaskId]:
			problems = append(problems, fmt.Sprintf("rank %d lost (worker %s)", m.Rank, m.WorkerId))
			lost = true
		default:
			waiting = true
		}
	}
	if len(problems) == 0 && !waiting {
		n.rounds.clearFailed(job.Id)
		rec, steps := roundRecord(job, next, tr.Attempt, ok)
		// Checkpoint at the spec's cadence, and at once when a task waits
		// to restore (it can only join from the latest committed round) or
		// a provider announced it takes a worker back.
		every := uint64(job.Spec.GetCheckpoint().GetEveryRounds())
		rec.Checkpoint = (every > 0 && next%every == 0) || len(n.rounds.behindTasks(job.Id)) > 0 ||
			n.rounds.checkpointWanted(job.Id, false)
		err := apply(&meghav1.Command{Cmd: &meghav1.Command_CommitRound{CommitRound: &meghav1.CommitRoundCommand{
			JobId: job.Id, Record: rec, NextInnerSteps: steps, At: timestamppb.Now()}}})
		if err == nil {
			if rec.Checkpoint {
				n.rounds.checkpointWanted(job.Id, true)
			}
			n.logger.Info("round committed", "job_id", job.Id, "round", next, "attempt", tr.Attempt,
				"members", len(ok), "train_loss", rec.TrainLoss, "tokens", rec.Tokens)
		}
		return err
	}
	// A lost member dooms the attempt: retry at once, without waiting for
	// the others' reports (they may be stuck waiting on the lost member;
	// they see the new attempt and abandon theirs). Otherwise wait until
	// everyone has reported.
	if (waiting && !lost) || len(problems) == 0 {
		return nil
	}
	// The attempt failed. Retry with the members still alive, after a delay
	// unless one of them is known to be gone.
	var survivors []*meghav1.RoundMember
	for _, m := range tr.Members {
		if live[m.TaskId] {
			s := proto.Clone(m).(*meghav1.RoundMember)
			s.Rank = uint32(len(survivors))
			survivors = append(survivors, s)
		}
	}
	if len(survivors) == 0 {
		return nil // the job fails with its last task (loseWorkerTasksLocked)
	}
	if len(survivors) == len(tr.Members) {
		now := time.Now()
		n.rounds.markFailed(job.Id, now)
		if failedAt.IsZero() || now.Sub(failedAt) < retryDelay(tr.Attempt) {
			return nil // the ticker brings us back
		}
	}
	n.rounds.clearFailed(job.Id)
	reason := strings.Join(problems, "; ")
	err := apply(&meghav1.Command{Cmd: &meghav1.Command_StartRound{StartRound: &meghav1.StartRoundCommand{
		JobId: job.Id, Round: next, Attempt: tr.Attempt + 1, Members: survivors, At: timestamppb.Now(), Reason: reason}}})
	if err == nil {
		n.logger.Warn("round retried", "job_id", job.Id, "round", next, "attempt", tr.Attempt+1,
			"members", len(survivors), "reason", reason)
	}
	return err
}

// formRound returns the members of a job's next round once it can form,
// or nil to wait. The first round waits for every live task. Later rounds
// wait for the members of the last committed round that are still live
// (they hold the shared state) and take any other task that has joined.
// Tasks restoring a checkpoint are waited for while a checkpoint they can
// restore exists or is being written, for at most restoreHold.
func (n *Node) formRound(job *meghav1.Job, next uint64, live []*meghav1.Task, joins map[string]roundJoin) []*meghav1.RoundMember {
	if len(live) == 0 {
		return nil
	}
	tr := job.Status.GetTrain()
	synced := map[string]bool{}
	restorable := false
	if rounds := tr.GetRounds(); len(rounds) > 0 {
		last := rounds[len(rounds)-1]
		for _, m := range last.Members {
			synced[m.TaskId] = true
		}
		ck := latestCheckpoint(job)
		restorable = last.Checkpoint || (ck != nil && ck.Round == tr.GetCommitted())
	}
	behind := n.rounds.behindTasks(job.Id)
	var members []*meghav1.RoundMember
	for _, t := range live {
		j, ok := joins[t.Id]
		joined := ok && j.round == next && j.worker == t.WorkerId
		switch {
		case joined:
			members = append(members, &meghav1.RoundMember{TaskId: t.Id, WorkerId: t.WorkerId,
				Rank: uint32(len(members)), Addr: j.addr})
		case next == 1 || synced[t.Id]:
			return nil
		case behind[t.Id] && restorable && n.rounds.hold(job.Id, next, time.Now()):
			return nil
		}
	}
	return members
}

// stepWindow is how many recent rounds a member's step time is the median
// of.
const stepWindow = 5

// recentStepSeconds is the median of a task's step time this round (now)
// and in its last stepWindow−1 committed rounds; 0 if it has none.
func recentStepSeconds(tr *meghav1.TrainStatus, taskID string, now float64) float64 {
	var xs []float64
	if now > 0 {
		xs = append(xs, now)
	}
	rounds := tr.GetRounds()
	for i := len(rounds) - 1; i >= 0 && len(xs) < stepWindow; i-- {
		for _, m := range rounds[i].Members {
			if m.TaskId == taskID && m.StepSeconds > 0 {
				xs = append(xs, m.StepSeconds)
			}
		}
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// roundRecord sums the members' reports of a successful attempt and sizes
// each member's next round: with DiLoCo, local steps in proportion to its
// measured step rate (median of its recent rounds; the fastest runs H), so
// that all finish a round at about the same time; with DDP, H each (they
// step in lockstep).
func roundRecord(job *meghav1.Job, round uint64, attempt uint32, reports []*meghav1.FinishRoundRequest) (*meghav1.RoundRecord, map[string]uint32) {
	sort.Slice(reports, func(a, b int) bool { return reports[a].TaskId < reports[b].TaskId })
	rec := &meghav1.RoundRecord{Round: round, Attempt: attempt}
	var lossSum float64
	var lossTok uint64
	fastest := 0.0
	for _, r := range reports {
		st := proto.Clone(r.GetStats()).(*meghav1.MemberRound)
		if st == nil {
			st = &meghav1.MemberRound{}
		}
		st.TaskId, st.WorkerId = r.TaskId, r.WorkerId
		rec.Members = append(rec.Members, st)
		rec.Tokens += st.Tokens
		rec.BytesSent += st.BytesSent
		rec.BytesReceived += st.BytesReceived
		if st.Weight > 0 && !math.IsNaN(st.Loss) {
			lossSum += st.Loss * float64(st.Tokens)
			lossTok += st.Tokens
		}
		if r.HasVal {
			rec.ValLoss, rec.HasVal = r.ValLoss, true
		}
	}
	// Size by each member's typical step time over its recent rounds, not
	// this round's alone: one round's time is at the mercy of whatever else
	// the machine ran meanwhile.
	stepSeconds := make(map[string]float64, len(rec.Members))
	for _, st := range rec.Members {
		if s := recentStepSeconds(job.Status.GetTrain(), st.TaskId, st.StepSeconds); s > 0 {
			stepSeconds[st.TaskId] = s
			fastest = max(fastest, 1/s)
		}
	}
	if lossTok > 0 {
		rec.TrainLoss = lossSum / float64(lossTok)
	}
	H := job.Spec.GetSync().GetInnerSteps()
	if H == 0 {
		H = DefaultInnerSteps
	}
	steps := make(map[string]uint32, len(reports))
	for _, st := range rec.Members {
		k := H
		if s := stepSeconds[st.TaskId]; job.Spec.GetSync().GetAlgorithm() != meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP && s > 0 && fastest > 0 {
			k = uint32(max(1, math.Round(float64(H)*(1/s)/fastest)))
		}
		steps[st.TaskId] = k
	}
	return rec, steps
}
