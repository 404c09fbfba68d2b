//go:build unix

package benchmarks

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/testcluster"
)

// Failover benchmark parameters.
const (
	failoverTrials     = 10
	failoverAttemptMax = 250 * time.Millisecond // per Submit attempt
	failoverGoal       = 1.0                    // seconds
)

// RunFailover measures how long writes stop when the leader dies: on 3
// real coordinator processes, SIGKILL the leader and time until a Submit
// through a client holding the two surviving addresses succeeds; restart
// the killed node from its data dir and let it rejoin before the next
// trial.
func RunFailover(ctx context.Context, cfg Config) (*Result, error) {
	trials := failoverTrials
	if cfg.Quick {
		trials = 2
	}
	c, err := testcluster.Start(testcluster.Options{Nodes: 3, Bin: cfg.Bin, Logf: cfg.Logf})
	if err != nil {
		return nil, fmt.Errorf("coordinator-failover: %w", err)
	}
	defer c.Close()

	var samples []float64
	for trial := 1; trial <= trials; trial++ {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		d, leader, err := failoverTrial(tctx, c, trial)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("coordinator-failover: trial %d: %w", trial, err)
		}
		samples = append(samples, d.Seconds())
		cfg.logf("coordinator-failover: trial %d/%d: killed leader %s, write accepted after %.3fs",
			trial, trials, leader, d.Seconds())
	}
	med, p90 := Median(samples), Percentile(samples, 90)
	var ss []string
	for i, s := range samples {
		samples[i] = round(s, 4)
		ss = append(ss, fmt.Sprintf("%.3f", s))
	}
	notes := fmt.Sprintf("3 coordinator processes; SIGKILL the leader, time until a Submit through a client "+
		"holding the 2 surviving addresses (%v per attempt) succeeds; default Raft timing "+
		"(heartbeat/election/lease 300/300/250 ms); killed node restarted and caught up between trials; "+
		"p90 %.3f s, max %.3f s; trials (s): %s",
		failoverAttemptMax, p90, Percentile(samples, 100), strings.Join(ss, " "))
	if cfg.Quick {
		notes = "QUICK RUN, not a measurement; " + notes
	}
	return &Result{
		Name: "coordinator-failover", Figure: round(med, 3), Unit: "s",
		Baseline: nil, BaselineName: "none (absolute bound)",
		Ratio: round(med, 3), Goal: failoverGoal, Better: Lower, Runs: trials,
		Machine: ThisMachine(), Date: Today(), Notes: notes,
		Samples: samples, P90: ptr(round(p90, 4)),
	}, nil
}

func failoverTrial(ctx context.Context, c *testcluster.Cluster, trial int) (time.Duration, string, error) {
	if err := c.WaitStable(ctx); err != nil {
		return 0, "", err
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return 0, "", err
	}
	cl, err := client.New(client.Config{Addrs: c.AddrsExcept(leader), Token: testcluster.TenantToken})
	if err != nil {
		return 0, "", err
	}
	defer cl.Close()
	// Connect to the first survivor before the clock starts.
	if _, err := cl.Members(ctx); err != nil {
		return 0, "", err
	}
	spec := submitSpec()
	reqID := fmt.Sprintf("failover-%d-%d", trial, time.Now().UnixNano())

	start := time.Now()
	if err := c.Kill(leader); err != nil {
		return 0, "", err
	}
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, failoverAttemptMax)
		resp, err := cl.Submit(actx, spec, reqID)
		cancel()
		if err == nil {
			if resp.Job.GetSpec().GetName() != spec.Name {
				return 0, "", fmt.Errorf("submit returned %v", resp.Job)
			}
			break
		}
		last = err
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("no write accepted after killing %s: %v", leader, last)
		}
	}
	d := time.Since(start)

	if err := c.Restart(leader); err != nil {
		return 0, "", err
	}
	if err := c.WaitCaughtUp(ctx, leader); err != nil {
		return 0, "", err
	}
	return d, leader.ID, nil
}
