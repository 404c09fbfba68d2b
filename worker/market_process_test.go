//go:build unix

package worker_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/testcluster"
)

// TestTrainJobOnLeasedWorkers runs a coordinator with the embedded market:
// a training job leases three workers of mixed GPUs (each a real `megha
// worker` process the market starts), trains on them, survives a provider
// failed through `megha market fail` (its lease closes, its worker is
// killed, the round goes on without it, and a replacement is leased, which
// restores the latest checkpoint and joins), and ends with every lease
// closed.
func TestTrainJobOnLeasedWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator and worker processes")
	}
	c := testcluster.StartT(t, testcluster.Options{Nodes: 1, Args: append(append([]string{}, trackingArgs...),
		"--market", "embedded", "--market-block-time", "200ms", "--bid-window", "300ms",
		"--market-worker-token", testcluster.WorkerToken, "--market-seed", "3")})
	cl := adminClient(t, c.Addrs()...)
	spec := trainSpec(t, `
name: leased
kind: train
model: {builtin: mlp-tiny}
data: {dataset: synthetic, batch_size: 16, seed: 7}
resources: {workers: 3, gpu_models: [H100-SXM, A100-80GB, L40S, RTX4090], max_price_per_gpu_hour: 3.00, bid_selector: spread}
sync: {inner_steps: 10, compression: int8}
stop: {rounds: 25}
budget: {max_spend: 50.00}
`)
	id := submit(t, cl, spec)
	waitJob(t, cl, id, 2*time.Minute, "round 2", func(j *meghav1.Job) bool { return j.Status.GetTrain().GetCommitted() >= 2 })
	leases := listLeases(t, cl, id)
	if len(leases) != 3 {
		t.Fatalf("%d leases, want 3", len(leases))
	}
	providers := map[string]bool{}
	for _, l := range leases {
		providers[l.ProviderName] = true
		if l.PricePerGpuHourMicros > 3_000_000 || !l.Emulated {
			t.Errorf("lease %s: $%.2f/GPU-h, emulated %v", l.Id, float64(l.PricePerGpuHourMicros)/1e6, l.Emulated)
		}
	}
	if len(providers) != 3 {
		t.Errorf("spread leased from %d providers, want 3: %v", len(providers), providers)
	}

	victim := leases[0]
	out, err := exec.Command(c.Bin, "market", "--market", c.Addrs()[0], "--token", testcluster.AdminToken, "fail", victim.ProviderName).CombinedOutput()
	if err != nil {
		t.Fatalf("megha market fail: %v\n%s", err, out)
	}
	t.Logf("failed provider %s: %s", victim.ProviderName, out)
	j := waitJob(t, cl, id, 3*time.Minute, "success", func(j *meghav1.Job) bool {
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	// Leases close once the final checkpoint is recorded (it is written
	// after the commit that ended the job).
	var ls []*meghav1.Lease
	deadline := time.Now().Add(90 * time.Second)
	for {
		ls = listLeases(t, cl, id)
		active := 0
		for _, l := range ls {
			if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
				active++
			}
		}
		if active == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var closedVictim bool
	for _, l := range ls {
		if l.State != meghav1.LeaseState_LEASE_STATE_CLOSED {
			t.Errorf("lease %s still %v after the job ended", l.Id, l.State)
		}
		if l.Id == victim.Id {
			closedVictim = true
			t.Logf("victim lease closed: %s", l.CloseReason)
		}
	}
	if !closedVictim || len(ls) != 4 {
		t.Errorf("leases after the failure: %d (victim closed %v), want the 3 first and a replacement", len(ls), closedVictim)
	}
	// The replacement restored a checkpoint and took part: the last round
	// has 3 members again (the victim's worker is dead).
	last := j.Status.Train.Rounds[len(j.Status.Train.Rounds)-1]
	if len(last.Members) != 3 {
		t.Errorf("last round had %d members, want the 2 survivors and the replacement", len(last.Members))
	}
	if n := len(j.Status.Train.Checkpoints); n == 0 {
		t.Error("no checkpoint recorded")
	}
	t.Logf("job finished: %d rounds, spend $%.6f, %d leases", j.Status.Train.Committed, float64(j.Status.SpendMicros)/1e6, len(ls))
	if b := spec.GetBudget().GetMaxSpendMicros(); j.Status.SpendMicros > b {
		t.Errorf("spend %d over budget %d", j.Status.SpendMicros, b)
	}
}

func listLeases(t *testing.T, cl *client.Client, id string) []*meghav1.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ls, err := cl.ListLeases(ctx, id)
	if err != nil {
		t.Fatal(fmt.Errorf("list leases: %w", err))
	}
	return ls
}
