//go:build unix

package worker_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/testcluster"
	"github.com/megha-ml/megha/jobspec"
)

// These tests run built-in training end to end: a `megha coordinator`
// process, three `megha worker` processes with emulated GPUs of different
// speeds, and a DiLoCo job whose rounds the coordinator fixes and commits.

func trainSpec(t *testing.T, yaml string) *meghav1.JobSpec {
	t.Helper()
	spec, err := jobspec.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	jobspec.ApplyDefaults(spec)
	if err := jobspec.Validate(spec); err != nil {
		t.Fatal(err)
	}
	return spec
}

func submit(t *testing.T, cl *client.Client, spec *meghav1.JobSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cl.Submit(ctx, spec, fmt.Sprintf("test-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return res.Job.Id
}

// waitJob polls the job until done(job) or the deadline, failing the test
// if the job ends in another state first.
func waitJob(t *testing.T, cl *client.Client, id string, d time.Duration, what string, done func(*meghav1.Job) bool) *meghav1.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	var last *meghav1.Job
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		j, err := cl.Get(ctx, id, false)
		cancel()
		if err == nil {
			last = j
			if done(j) {
				return j
			}
			switch j.Status.State {
			case meghav1.JobState_JOB_STATE_FAILED, meghav1.JobState_JOB_STATE_CANCELLED:
				t.Fatalf("job %s is %v while waiting for %s: %s", id, j.Status.State, what, j.Status.LastError)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s: no %s within %v; last status %v", id, what, d, last.GetStatus())
	return nil
}

func oneEmulated(model string) func([]*meghav1.GPU) error {
	return func(gpus []*meghav1.GPU) error {
		if len(gpus) != 1 || gpus[0].Model != model || !gpus[0].Emulated {
			return fmt.Errorf("GPUs %v, want one emulated %s", gpus, model)
		}
		return nil
	}
}

const trainJobYAML = `
name: diloco-e2e
kind: train
model: {builtin: mlp-tiny}
data: {dataset: synthetic, batch_size: 16, seed: 7}
resources: {workers: 3}
sync: {algorithm: diloco, inner_steps: %d, compression: %s}
stop: {rounds: %d}
`

// TestTrainJobEndToEnd runs a 3-worker DiLoCo job of mlp-tiny to the end:
// every round is committed with all three members, loss falls, traffic is
// counted, and the slower emulated GPUs are given fewer local steps.
func TestTrainJobEndToEnd(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	gpus := []string{"H100-SXM", "A100-80GB", "RTX4090"}
	for _, g := range gpus {
		w := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", g)
		waitReadyCheck(t, cl, w, oneEmulated(g))
	}
	const rounds = 12
	id := submit(t, cl, trainSpec(t, fmt.Sprintf(trainJobYAML, 20, "int8", rounds)))
	j := waitJob(t, cl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	tr := j.Status.Train
	if tr.GetCommitted() != rounds || len(tr.Rounds) != rounds {
		t.Fatalf("committed %d rounds (%d records), want %d", tr.GetCommitted(), len(tr.Rounds), rounds)
	}
	for _, r := range tr.Rounds {
		t.Logf("round %d attempt %d: %d members, %d tokens, loss %.4f, val %.4f, sent %d B", r.Round, r.Attempt,
			len(r.Members), r.Tokens, r.TrainLoss, r.ValLoss, r.BytesSent)
		if len(r.Members) != 3 || r.BytesSent <= 0 || r.BytesReceived <= 0 || !r.HasVal || r.Tokens == 0 {
			t.Errorf("round %d: %d members, sent %d, received %d, has_val %v, tokens %d", r.Round, len(r.Members),
				r.BytesSent, r.BytesReceived, r.HasVal, r.Tokens)
		}
	}
	// An untrained byte model scores about ln 256 = 5.55 nats; the process's
	// entropy rate is about 1.3.
	last := tr.Rounds[rounds-1]
	if last.ValLoss > 3.5 {
		t.Errorf("validation loss %.4f after %d rounds, want below 3.5 (untrained: 5.55)", last.ValLoss, rounds)
	}
	if j.Status.Progress.GetRound() != rounds || j.Status.Progress.GetTokens() != tr.Tokens {
		t.Errorf("progress %v does not match %d rounds / %d tokens", j.Status.Progress, rounds, tr.Tokens)
	}
	// Heterogeneity: after the first round, the emulated H100 (fastest) runs
	// H = 20 local steps and the RTX 4090 (about 6× slower) far fewer.
	steps := map[string]uint32{}
	for _, m := range last.Members {
		steps[m.GpuModel] = m.Steps
		if !m.Emulated {
			t.Errorf("member %s on %s not labelled emulated", m.WorkerId, m.GpuModel)
		}
	}
	t.Logf("local steps in the last round by GPU: %v", steps)
	// (Step times are measured under whatever else the machine runs, so
	// the A100 and the RTX 4090 may come out equal; never the wrong way
	// round by much, and both well below the H100.)
	if steps["H100-SXM"] != 20 || steps["A100-80GB"] >= 15 || steps["RTX4090"] > steps["A100-80GB"]+1 {
		t.Errorf("local steps %v not sized to emulated speed (want H100-SXM 20 > A100-80GB ≥ RTX4090)", steps)
	}
	// Tasks end as succeeded with the job.
	checkTasks(t, cl, id, func(*meghav1.Task) meghav1.TaskState { return meghav1.TaskState_TASK_STATE_SUCCEEDED })
}

// checkTasks compares each of the job's tasks with the state want gives.
func checkTasks(t *testing.T, cl *client.Client, id string, want func(*meghav1.Task) meghav1.TaskState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tasks, err := cl.ListTasks(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if w := want(tk); tk.State != w {
			t.Errorf("task %s (rank %d) on %s is %v, want %v", tk.Id, tk.Rank, tk.WorkerId, tk.State, w)
		}
	}
}

// TestTrainJobSurvivesWorkerKill SIGKILLs one of three workers in the
// middle of a run: the round in flight is abandoned and retried with the
// two survivors, and the job still finishes.
func TestTrainJobSurvivesWorkerKill(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	var workers []*workerProc
	for range 3 {
		w := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", "H100-SXM")
		waitReadyCheck(t, cl, w, oneEmulated("H100-SXM"))
		workers = append(workers, w)
	}
	const rounds = 12
	id := submit(t, cl, trainSpec(t, fmt.Sprintf(trainJobYAML, 10, "none", rounds)))
	waitJob(t, cl, id, 2*time.Minute, "round 3", func(j *meghav1.Job) bool {
		return j.Status.GetTrain().GetCommitted() >= 3
	})
	victim := workers[1]
	victimID := victim.id()
	victim.signal(syscall.SIGKILL)
	victim.waitExit(5 * time.Second)
	killedAt := time.Now()

	j := waitJob(t, cl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	t.Logf("finished %v after the kill; %d attempts abandoned; last error %q", time.Since(killedAt).Round(time.Millisecond),
		j.Status.Train.AbortedAttempts, j.Status.LastError)
	tr := j.Status.Train
	if tr.Committed != rounds {
		t.Fatalf("committed %d rounds, want %d", tr.Committed, rounds)
	}
	sawVictim, after := false, 0
	for _, r := range tr.Rounds {
		has := false
		for _, m := range r.Members {
			has = has || m.WorkerId == victimID
		}
		if has {
			if after > 0 {
				t.Errorf("round %d includes the killed worker after rounds without it", r.Round)
			}
			sawVictim = true
			continue
		}
		after++
		if len(r.Members) != 2 {
			t.Errorf("round %d has %d members, want the 2 survivors", r.Round, len(r.Members))
		}
	}
	if !sawVictim || after == 0 {
		t.Fatalf("rounds with the victim: %v; rounds after: %d", sawVictim, after)
	}
	checkTasks(t, cl, id, func(tk *meghav1.Task) meghav1.TaskState {
		if tk.WorkerId == victimID {
			return meghav1.TaskState_TASK_STATE_LOST
		}
		return meghav1.TaskState_TASK_STATE_SUCCEEDED
	})
}

// TestTrainJobSurvivesLeaderKill SIGKILLs the coordinator leader of a
// 3-node cluster in the middle of a training run: members' long-polls move
// to the new leader, which rebuilds the round in flight from their retries,
// and the job finishes with every round committed once.
func TestTrainJobSurvivesLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	cl := adminClient(t, c.Addrs()...)
	for range 3 {
		w := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", "H100-SXM")
		waitReadyCheck(t, cl, w, oneEmulated("H100-SXM"))
	}
	const rounds = 12
	id := submit(t, cl, trainSpec(t, fmt.Sprintf(trainJobYAML, 10, "fp16", rounds)))
	waitJob(t, cl, id, 2*time.Minute, "round 3", func(j *meghav1.Job) bool {
		return j.Status.GetTrain().GetCommitted() >= 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	ncl := adminClient(t, c.AddrsExcept(old)...)
	j := waitJob(t, ncl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	t.Logf("killed leader %s; job finished %v later", old.ID, time.Since(killedAt).Round(time.Millisecond))
	tr := j.Status.Train
	if tr.Committed != rounds || len(tr.Rounds) != rounds {
		t.Fatalf("committed %d rounds (%d records), want %d", tr.Committed, len(tr.Rounds), rounds)
	}
	for i, r := range tr.Rounds {
		if r.Round != uint64(i+1) || len(r.Members) != 3 {
			t.Errorf("record %d: round %d with %d members, want round %d with all 3", i, r.Round, len(r.Members), i+1)
		}
	}
}

// TestTrainJobSurvivesFrozenWorker SIGSTOPs one of three workers mid-run:
// its sockets stay open, so nothing breaks in the ring; the coordinator's
// failure detector declares it lost, the attempt in flight is abandoned at
// once (members stuck waiting on it in the ring see that and stop), and
// training goes on with the two others well before the ring's own 30 s
// timeout would have fired.
func TestTrainJobSurvivesFrozenWorker(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	var workers []*workerProc
	for range 3 {
		w := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", "H100-SXM")
		waitReadyCheck(t, cl, w, oneEmulated("H100-SXM"))
		workers = append(workers, w)
	}
	const rounds = 40
	id := submit(t, cl, trainSpec(t, fmt.Sprintf(trainJobYAML, 2, "none", rounds)))
	before := waitJob(t, cl, id, 2*time.Minute, "round 5", func(j *meghav1.Job) bool {
		return j.Status.GetTrain().GetCommitted() >= 5
	})
	victim := workers[2]
	victimID := victim.id()
	victim.signal(syscall.SIGSTOP)
	stopped := time.Now()
	t.Cleanup(func() { _ = victim.cmd.Process.Signal(syscall.SIGCONT) })

	waitJob(t, cl, id, time.Minute, "a round without the frozen worker", func(j *meghav1.Job) bool {
		rs := j.Status.GetTrain().GetRounds()
		return len(rs) > 0 && len(rs[len(rs)-1].Members) == 2 && rs[len(rs)-1].Round > before.Status.Train.Committed
	})
	resumed := time.Since(stopped)
	t.Logf("training went on with 2 workers %v after the SIGSTOP", resumed.Round(time.Millisecond))
	if resumed > 20*time.Second {
		t.Errorf("training waited %v for a frozen worker; the failure detector's bound is a few seconds", resumed)
	}
	j := waitJob(t, cl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	for _, r := range j.Status.Train.Rounds[before.Status.Train.Committed+1:] {
		for _, m := range r.Members {
			if m.WorkerId == victimID && r.Round > before.Status.Train.Committed+1 {
				t.Errorf("round %d includes the frozen worker", r.Round)
			}
		}
	}
}
