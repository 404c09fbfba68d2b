//go:build unix

package coordinator_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// These tests run real `megha coordinator` processes (internal/testcluster)
// so that a node can be SIGKILLed mid-write or SIGSTOPped while leading.

func processSpec(reqID string) *meghav1.JobSpec {
	return &meghav1.JobSpec{Name: "proc", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:  &meghav1.ModelSpec{Builtin: "transformer-tiny"},
		Data:   &meghav1.DataSpec{Dataset: "synthetic"},
		Stop:   &meghav1.StopCondition{Rounds: 10},
		Labels: map[string]string{"req": reqID}}
}

func processClient(t *testing.T, token string, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addrs: addrs, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitUntil polls cond every 10ms until it holds or d passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterLeaderKillNoAcknowledgedJobLost submits from 8 clients while
// the leader is SIGKILLed: every submit the cluster acknowledged must
// survive, once, on the new leader and on the killed node after it
// restarts from its data dir.
func TestClusterLeaderKillNoAcknowledgedJobLost(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes")
	}
	const (
		workers    = 8
		beforeKill = 60  // acknowledged submits before the kill
		afterKill  = 200 // and after it
	)
	c := testcluster.StartT(t, testcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	type ack struct {
		jobID, reqID string
		existed      bool
		at           time.Time
	}
	var (
		mu       sync.Mutex
		acks     []ack
		killedAt time.Time // zero until the kill
		retries  int
	)
	countAcks := func(afterKill bool) int {
		mu.Lock()
		defer mu.Unlock()
		if !afterKill {
			return len(acks)
		}
		if killedAt.IsZero() {
			return 0
		}
		n := 0
		for _, a := range acks {
			if a.at.After(killedAt) {
				n++
			}
		}
		return n
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		cl := processClient(t, testcluster.TenantToken, c.Addrs()...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				reqID := fmt.Sprintf("w%d-%d", w, i)
				for { // retry the same request ID until acknowledged
					select {
					case <-stop:
						return
					default:
					}
					sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
					resp, err := cl.Submit(sctx, processSpec(reqID), reqID)
					scancel()
					if err == nil {
						mu.Lock()
						acks = append(acks, ack{jobID: resp.Job.Id, reqID: reqID, existed: resp.Existed, at: time.Now()})
						mu.Unlock()
						break
					}
					if ctx.Err() != nil {
						return
					}
					switch status.Code(err) {
					case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
						// The client gave up within our per-submit deadline;
						// the outcome is unknown, so resubmit the same ID.
						mu.Lock()
						retries++
						mu.Unlock()
						t.Logf("worker %d: submit %s: %v (retrying)", w, reqID, err)
					default:
						t.Errorf("worker %d: submit %s: %v", w, reqID, err)
						return
					}
				}
			}
		}()
	}
	stopWorkers := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWorkers()

	waitUntil(t, fmt.Sprintf("%d acknowledged submits", beforeKill), 20*time.Second,
		func() bool { return countAcks(false) >= beforeKill })
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	// Acknowledgements from here on come from the surviving nodes.
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	t.Logf("killed leader %s after %d acknowledged submits", leader.ID, countAcks(false))
	waitUntil(t, fmt.Sprintf("%d acknowledged submits after the kill", afterKill), 30*time.Second,
		func() bool { return countAcks(true) >= afterKill })
	stopWorkers()
	if t.Failed() {
		return
	}

	mu.Lock()
	firstAfter, nAfter, existed := time.Duration(0), 0, 0
	for _, a := range acks {
		if a.existed {
			existed++
		}
		if !a.at.After(killedAt) {
			continue
		}
		nAfter++
		if firstAfter == 0 || a.at.Sub(killedAt) < firstAfter {
			firstAfter = a.at.Sub(killedAt)
		}
	}
	t.Logf("%d submits acknowledged (%d after the kill, the first %v after it; %d found an earlier attempt's job), %d resubmits",
		len(acks), nAfter, firstAfter, existed, retries)
	mu.Unlock()

	// Bring the killed node back from its data dir.
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(ctx, leader); err != nil {
		t.Fatal(err)
	}

	// Everything acknowledged is on the leader, exactly once.
	admin := processClient(t, testcluster.AdminToken, c.Addrs()...)
	jobs, err := admin.ListAll(ctx, &meghav1.ListJobsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*meghav1.Job{}
	byReq := map[string][]string{}
	for _, j := range jobs {
		if _, dup := byID[j.Id]; dup {
			t.Errorf("job %s listed twice", j.Id)
		}
		byID[j.Id] = j
		req := j.Spec.GetLabels()["req"]
		if req == "" {
			t.Errorf("job %s has no req label: %v", j.Id, j.Spec.GetLabels())
		}
		byReq[req] = append(byReq[req], j.Id)
	}
	for req, ids := range byReq {
		if len(ids) > 1 {
			sort.Strings(ids)
			t.Errorf("request %s created %d jobs: %v", req, len(ids), ids)
		}
	}
	for _, a := range acks {
		j, ok := byID[a.jobID]
		switch {
		case !ok:
			t.Errorf("acknowledged job %s (request %s, existed=%v, at +%v after the kill) is lost",
				a.jobID, a.reqID, a.existed, a.at.Sub(killedAt))
		case j.Spec.GetLabels()["req"] != a.reqID:
			t.Errorf("job %s carries request %s, acknowledged for %s", a.jobID, j.Spec.GetLabels()["req"], a.reqID)
		}
	}
	t.Logf("leader lists %d jobs for %d acknowledged submits", len(jobs), len(acks))

	// The restarted node's own state has them too, identical.
	local := processClient(t, testcluster.AdminToken, leader.GRPCAddr)
	missing := map[string]bool{}
	for _, a := range acks {
		missing[a.jobID] = true
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(missing) > 0 && time.Now().Before(deadline) {
		for id := range missing {
			gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
			j, err := local.Get(gctx, id, true)
			gcancel()
			if err != nil {
				if status.Code(err) != codes.NotFound {
					t.Logf("restarted %s: get %s: %v", leader.ID, id, err)
				}
				continue
			}
			if !proto.Equal(j, byID[id]) {
				t.Errorf("restarted %s has job %s as\n%v\nleader has\n%v", leader.ID, id, j, byID[id])
			}
			delete(missing, id)
		}
		if len(missing) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(missing) > 0 {
		ids := make([]string, 0, len(missing))
		for id := range missing {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		t.Errorf("restarted %s lacks %d acknowledged jobs after 15s, e.g. %v", leader.ID, len(ids), ids[:min(5, len(ids))])
	}
}

// TestClusterSIGSTOPLeader freezes the leader: the other two elect a new
// one and take writes; once thawed, the old leader steps down and rejoins.
func TestClusterSIGSTOPLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes")
	}
	c := testcluster.StartT(t, testcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(old); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	// Each attempt gets a fresh client and a short deadline: one
	// long-lived client that a follower has pointed at the frozen leader
	// stays stuck there (see TestClusterSIGSTOPLeaderOneSubmit).
	var resp *meghav1.SubmitJobResponse
	for attempt := 1; ; attempt++ {
		cl, err := client.New(client.Config{Addrs: c.AddrsExcept(old), Token: testcluster.TenantToken})
		if err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithTimeout(ctx, time.Second)
		resp, err = cl.Submit(actx, processSpec("during-stop"), "during-stop")
		acancel()
		cl.Close()
		if err == nil {
			break
		}
		if time.Since(stoppedAt) > 10*time.Second {
			c.Cont(old)
			t.Fatalf("no write accepted within 10s of SIGSTOP of leader %s; attempt %d: %v", old.ID, attempt, err)
		}
	}
	t.Logf("write accepted %v after SIGSTOP of leader %s", time.Since(stoppedAt), old.ID)

	if err := c.Cont(old); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the old leader to step down", 10*time.Second, func() bool {
		st, err := c.RaftStats(ctx, old)
		return err == nil && st["state"] == "Follower"
	})
	if err := c.WaitStable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCaughtUp(ctx, old); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, n := range c.Nodes {
		st, err := c.RaftStats(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if st["state"] == "Leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d nodes in state Leader, want 1", leaders)
	}
	members, err := c.Members(ctx, leader)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Errorf("%d members, want 3: %v", len(members), members)
	}
	// The write made while it was frozen reached the old leader.
	j, err := processClient(t, testcluster.TenantToken, old.GRPCAddr).Get(ctx, resp.Job.Id, true)
	if err != nil {
		t.Fatalf("old leader %s: get %s: %v", old.ID, resp.Job.Id, err)
	}
	if j.Spec.GetLabels()["req"] != "during-stop" {
		t.Errorf("old leader has %v", j)
	}
}

// TestClusterSIGSTOPLeaderOneSubmit is the user's view of
// TestClusterSIGSTOPLeader: Submit through one client that knows only the
// two healthy nodes.
//
// The first follower asked may still name the frozen leader, whose kernel
// accepts the TCP connection while nothing answers: the client must give
// that attempt up (AttemptTimeout) and move on, and must not stay pointed
// at the frozen node for its next call.
func TestClusterSIGSTOPLeaderOneSubmit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes")
	}
	c := testcluster.StartT(t, testcluster.Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	others := processClient(t, testcluster.TenantToken, c.AddrsExcept(old)...)
	if _, err := others.Members(ctx); err != nil { // connect before the freeze
		t.Fatal(err)
	}
	if err := c.Stop(old); err != nil {
		t.Fatal(err)
	}
	defer c.Cont(old)
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err1 := others.Submit(wctx, processSpec("one-submit"), "one-submit")
	wcancel()
	d1 := time.Since(start)
	// By now the healthy two have long elected a leader; the same client
	// tries again.
	wctx, wcancel = context.WithTimeout(ctx, 3*time.Second)
	_, err2 := others.Submit(wctx, processSpec("one-submit"), "one-submit")
	wcancel()
	if err1 != nil || err2 != nil {
		t.Fatalf("leader %s frozen: first Submit: %v (after %v); second Submit: %v (after %v)",
			old.ID, err1, d1.Round(time.Millisecond), err2, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("Submit returned %v after the freeze", d1)
}
