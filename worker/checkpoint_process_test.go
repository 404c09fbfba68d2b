//go:build unix

package worker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/testcluster"
)

const ckptJobYAML = `
name: ckpt-e2e
kind: train
model: {builtin: mlp-tiny}
data: {dataset: synthetic, batch_size: 16, seed: 7}
resources: {workers: 2}
sync: {algorithm: diloco, inner_steps: 10}
stop: {rounds: %d}
checkpoint: {every_rounds: 3, keep: 2}
`

// rankLog returns the stdout of the newest task of a rank.
func rankLog(t *testing.T, cl *client.Client, id string, rank uint32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out strings.Builder
	if err := cl.Logs(ctx, &meghav1.TaskLogsRequest{JobId: id, Rank: rank}, func(ch *meghav1.LogChunk) error {
		out.Write(ch.Data)
		return nil
	}); err != nil {
		t.Fatalf("logs of rank %d: %v", rank, err)
	}
	return out.String()
}

// TestTrainJobReplacedWorkerRestores SIGKILLs one of a 2-worker job's
// workers while a spare waits: the spare takes the lost rank, restores the
// latest checkpoint of the committed round (written for it on demand, not
// waiting for the spec's every 3 rounds), joins the next round, and the
// job finishes with both ranks, its loss continuing from where it was.
// Retention keeps the last 2 checkpoints, and each is intact.
func TestTrainJobReplacedWorkerRestores(t *testing.T) {
	c := startCluster(t, 1)
	cl := adminClient(t, c.Addrs()...)
	var workers []*workerProc
	for range 2 {
		w := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", "H100-SXM")
		waitReadyCheck(t, cl, w, oneEmulated("H100-SXM"))
		workers = append(workers, w)
	}
	const rounds = 14
	id := submit(t, cl, trainSpec(t, fmt.Sprintf(ckptJobYAML, rounds)))
	waitJob(t, cl, id, 2*time.Minute, "round 4", func(j *meghav1.Job) bool {
		return j.Status.GetTrain().GetCommitted() >= 4
	})
	// The spare joins only now, so that the job was placed on the first two.
	spare := startWorker(t, c, testcluster.WorkerToken, c.Addrs(), "--emulate-gpu", "H100-SXM")
	waitReadyCheck(t, cl, spare, oneEmulated("H100-SXM"))
	victim := workers[1]
	victimID := victim.id()
	victim.signal(syscall.SIGKILL)
	victim.waitExit(5 * time.Second)
	j0, err := cl.Get(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := j0.Status.Train.Committed

	j := waitJob(t, cl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	tr := j.Status.Train
	if tr.Committed != rounds {
		t.Fatalf("committed %d rounds, want %d", tr.Committed, rounds)
	}
	spareID := spare.id()
	rejoined := uint64(0)
	var valBefore float64
	for _, r := range tr.Rounds {
		names := map[string]bool{}
		for _, m := range r.Members {
			names[m.WorkerId] = true
		}
		if names[victimID] {
			valBefore = r.ValLoss
		}
		if names[spareID] && rejoined == 0 {
			rejoined = r.Round
			t.Logf("the spare first took part in round %d (val loss %.4f; %.4f in the victim's last round)", r.Round, r.ValLoss, valBefore)
			// Continuing, not starting over: an untrained model scores 5.55.
			if r.ValLoss > valBefore+0.3 {
				t.Errorf("validation loss %.4f when the spare joined, %.4f before: the restored state was not the committed one", r.ValLoss, valBefore)
			}
		}
	}
	if rejoined == 0 || rejoined <= killedAt {
		t.Fatalf("the spare never took part after the kill at round %d (first round with it: %d)", killedAt, rejoined)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tasks, err := cl.ListTasks(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rank := -1
	for _, tk := range tasks {
		if tk.WorkerId == spareID {
			rank = int(tk.Rank)
		}
	}
	if rank < 0 {
		t.Fatalf("no task on the spare: %v", tasks)
	}
	log := rankLog(t, cl, id, uint32(rank))
	if !strings.Contains(log, fmt.Sprintf("restored the checkpoint of round %d", rejoined-1)) {
		t.Fatalf("rank %d's new task did not restore round %d's checkpoint:\n%s", rank, rejoined-1, log)
	}
	t.Logf("rank %d on the spare:\n%s", rank, log)
	// The final round is always checkpointed; retention keeps 2.
	j = waitJob(t, cl, id, time.Minute, "the final checkpoint recorded", func(j *meghav1.Job) bool {
		cks := j.Status.GetTrain().GetCheckpoints()
		return len(cks) > 0 && cks[len(cks)-1].Round == rounds
	})
	final := j.Status.Train.Checkpoints[len(j.Status.Train.Checkpoints)-1]
	if final.Step != j.Status.Progress.GetStep() || final.Tokens != tr.Tokens || len(final.Cursors) != 2 || final.Bytes <= 0 {
		t.Errorf("final checkpoint %v: want step %d, tokens %d, 2 cursors", final, j.Status.Progress.GetStep(), tr.Tokens)
	}
	store, err := checkpoint.NewFileStore(c.CheckpointDir())
	if err != nil {
		t.Fatal(err)
	}
	infos, err := checkpoint.List(context.Background(), store, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Round != rounds {
		t.Fatalf("store holds %d checkpoints (newest %v), want the last 2 ending at round %d", len(infos), infos, rounds)
	}
	for _, in := range infos {
		rep, err := checkpoint.Verify(context.Background(), store, id, in.Round)
		if err != nil || len(rep.Problems) > 0 {
			t.Errorf("round %d: %v %v", in.Round, err, rep.Problems)
		}
	}
	if _, err := os.Stat(filepath.Join(c.CheckpointDir(), "jobs", id)); err != nil {
		t.Fatal(err)
	}
}
