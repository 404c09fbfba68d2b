package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/internal/jobstate"
	"github.com/megha-ml/megha/internal/units"
	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	var watch, stale bool
	var rounds int
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's state, progress and spend",
		Example: `  megha status tiny-lm-3f9a1c2e5b7d
  megha status --watch tiny-lm-3f9a1c2e5b7d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if watch {
				return watchJob(cmd, g, c, args[0])
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			job, err := c.Get(ctx, args[0], stale)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), job)
			}
			tasks, _ := c.ListTasks(ctx, job.Id)
			describeJob(cmd.OutOrStdout(), job, tasks)
			if leases, err := c.ListLeases(ctx, job.Id); err == nil && len(leases) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "Leases:      %s (megha leases %s)\n", leaseSummary(leases), job.Id)
			}
			if err := roundTable(cmd.OutOrStdout(), job.Status.GetTrain(), rounds); err != nil {
				return err
			}
			if len(tasks) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
				rows := make([][]string, 0, len(tasks))
				for _, t := range tasks {
					exit := "-"
					if t.FinishedAt != nil {
						exit = fmt.Sprint(t.ExitCode)
					}
					rows = append(rows, []string{fmt.Sprint(t.Rank), t.Id, t.WorkerId, taskState(t.State), exit, orDash(t.Error)})
				}
				return table(cmd.OutOrStdout(), []string{"RANK", "TASK", "WORKER", "STATE", "EXIT", "ERROR"}, rows)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the job until it finishes")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from any node without asking the leader")
	cmd.Flags().IntVar(&rounds, "rounds", 10, "show the last N committed sync rounds (0 for all)")
	return cmd
}

// leaseSummary is one line about a job's leases: what is active, at what
// hourly rate, and how many have closed.
func leaseSummary(leases []*meghav1.Lease) string {
	byModel := map[string]int{}
	var models []string
	var perHour int64
	active, closed := 0, 0
	for _, l := range leases {
		if l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE {
			closed++
			continue
		}
		active++
		if byModel[l.GpuModel] == 0 {
			models = append(models, l.GpuModel)
		}
		byModel[l.GpuModel] += int(l.Gpus)
		perHour += l.PricePerGpuHourMicros * int64(l.Gpus)
	}
	parts := make([]string, len(models))
	for i, m := range models {
		parts[i] = fmt.Sprintf("%d×%s", byModel[m], m)
	}
	out := fmt.Sprintf("%d active", active)
	if active > 0 {
		out += fmt.Sprintf(" (%s) at %s/h", strings.Join(parts, ", "), usd(perHour))
	}
	if closed > 0 {
		out += fmt.Sprintf(", %d closed", closed)
	}
	return out
}

// roundTable lists the last n committed rounds of a built-in training job.
func roundTable(w io.Writer, tr *meghav1.TrainStatus, n int) error {
	recs := tr.GetRounds()
	if len(recs) == 0 {
		return nil
	}
	if n > 0 && len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(recs))
	for _, r := range recs {
		val := "-"
		if r.HasVal {
			val = loss(r.ValLoss)
		}
		dur := "-"
		if r.StartedAt != nil && r.CommittedAt != nil {
			dur = r.CommittedAt.AsTime().Sub(r.StartedAt.AsTime()).Round(time.Millisecond).String()
		}
		minSteps, maxSteps := uint32(0), uint32(0)
		for i, m := range r.Members {
			if i == 0 || m.Steps < minSteps {
				minSteps = m.Steps
			}
			maxSteps = max(maxSteps, m.Steps)
		}
		steps := fmt.Sprint(maxSteps)
		if minSteps != maxSteps {
			steps = fmt.Sprintf("%d–%d", minSteps, maxSteps)
		}
		rows = append(rows, []string{fmt.Sprint(r.Round), fmt.Sprint(r.Attempt), fmt.Sprint(len(r.Members)), steps,
			fmt.Sprint(r.Tokens), loss(r.TrainLoss), val, units.Bytes(r.BytesSent), dur})
	}
	return table(w, []string{"ROUND", "ATTEMPT", "WORKERS", "STEPS", "TOKENS", "TRAIN", "VAL", "SENT", "SYNC WAIT"}, rows)
}

// watchJob prints each new state of the job until it finishes; the exit
// code is 0 only if it succeeded.
func watchJob(cmd *cobra.Command, g *globals, c *client.Client, id string) error {
	var (
		last     *meghav1.Job
		lastLine string
	)
	err := c.Watch(cmd.Context(), id, func(j *meghav1.Job) error {
		last = j
		if g.output == "json" {
			return printJSON(cmd.OutOrStdout(), j)
		}
		p := j.Status.GetProgress()
		line := fmt.Sprintf("%-10s round %d  step %d  loss %s  spend %s", jobstate.Name(j.Status.GetState()),
			p.GetRound(), p.GetStep(), loss(p.GetLoss()), usd(j.Status.GetSpendMicros()))
		if tr := j.Status.GetTrain(); tr != nil {
			line = fmt.Sprintf("%-10s round %d  step %d  loss %s  val %s  sent %s  spend %s", jobstate.Name(j.Status.GetState()),
				p.GetRound(), p.GetStep(), loss(p.GetLoss()), loss(p.GetValLoss()), units.Bytes(tr.GetBytesSent()),
				usd(j.Status.GetSpendMicros()))
			if tr.GetAttempt() > 0 && len(tr.GetMembers()) > 0 {
				line += fmt.Sprintf("  (round %d retrying, attempt %d, %d workers)", tr.GetCommitted()+1, tr.GetAttempt(), len(tr.GetMembers()))
			}
		}
		if line != lastLine { // a change this view does not show is not news
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", time.Now().Format("15:04:05"), line)
			lastLine = line
		}
		return nil
	})
	if err != nil {
		return err
	}
	if last != nil && last.Status.GetState() != meghav1.JobState_JOB_STATE_SUCCEEDED {
		return exitError{code: 2, err: fmt.Errorf("job %s ended %s", id, jobstate.Name(last.Status.GetState()))}
	}
	return nil
}

func describeJob(w io.Writer, j *meghav1.Job, tasks []*meghav1.Task) {
	s, p := j.Status, j.Status.GetProgress()
	spec := j.Spec
	model := spec.GetModel().GetBuiltin()
	if model == "" {
		model = argv(spec.GetModel().GetCommand())
	}
	live := 0
	for _, t := range tasks {
		if t.State == meghav1.TaskState_TASK_STATE_ASSIGNED || t.State == meghav1.TaskState_TASK_STATE_RUNNING {
			live++
		}
	}
	fmt.Fprintf(w, "ID:          %s\n", j.Id)
	fmt.Fprintf(w, "Name:        %s\n", spec.GetName())
	fmt.Fprintf(w, "Tenant:      %s\n", j.Tenant)
	fmt.Fprintf(w, "State:       %s\n", jobstate.Name(s.GetState()))
	fmt.Fprintf(w, "Model:       %s\n", model)
	fmt.Fprintf(w, "Workers:     %d running / %d wanted\n", live, spec.GetResources().GetWorkers())
	fmt.Fprintf(w, "Progress:    round %d, step %d, %d tokens\n", p.GetRound(), p.GetStep(), p.GetTokens())
	fmt.Fprintf(w, "Loss:        train %s, validation %s\n", loss(p.GetLoss()), loss(p.GetValLoss()))
	if tr := s.GetTrain(); tr != nil {
		sy := spec.GetSync()
		algo := tr.GetAlgorithm()
		if algo == "diloco" {
			algo = fmt.Sprintf("DiLoCo, H=%d, outer lr %g, momentum %g", sy.GetInnerSteps(), sy.GetOuterLr(), sy.GetOuterMomentum())
		} else {
			algo = fmt.Sprintf("DDP (all-reduce every step), %d steps per round", sy.GetInnerSteps())
		}
		comp := strings.ToLower(strings.TrimPrefix(sy.GetCompression().String(), "COMPRESSION_"))
		if sy.GetErrorFeedback() {
			comp += " with error feedback"
		}
		fmt.Fprintf(w, "Sync:        %s, compression %s\n", algo, comp)
		rounds := fmt.Sprintf("%d committed", tr.GetCommitted())
		if r := spec.GetStop().GetRounds(); r > 0 {
			rounds = fmt.Sprintf("%d of %d committed", tr.GetCommitted(), r)
		}
		if len(tr.GetMembers()) > 0 {
			rounds += fmt.Sprintf("; round %d attempt %d in flight with %d workers", tr.GetCommitted()+1, tr.GetAttempt(), len(tr.GetMembers()))
		}
		if tr.GetAbortedAttempts() > 0 {
			rounds += fmt.Sprintf("; %d attempts abandoned and retried", tr.GetAbortedAttempts())
		}
		fmt.Fprintf(w, "Rounds:      %s\n", rounds)
		per := ""
		if tr.GetCommitted() > 0 {
			per = fmt.Sprintf(" (%s per round)", units.Bytes(tr.GetBytesSent()/int64(tr.GetCommitted())))
		}
		fmt.Fprintf(w, "Traffic:     %s sent, %s received by all workers%s\n", units.Bytes(tr.GetBytesSent()), units.Bytes(tr.GetBytesReceived()), per)
		fmt.Fprintf(w, "Checkpoints: %s\n", checkpointSummary(j))
	}
	budget := "no cap"
	if b := spec.GetBudget().GetMaxSpendMicros(); b > 0 {
		budget = usd(b)
	}
	fmt.Fprintf(w, "Spend:       %s of %s\n", usd(s.GetSpendMicros()), budget)
	fmt.Fprintf(w, "Created:     %s\n", stamp(s.GetCreatedAt()))
	fmt.Fprintf(w, "Started:     %s\n", stamp(s.GetStartedAt()))
	fmt.Fprintf(w, "Finished:    %s\n", stamp(s.GetFinishedAt()))
	if s.GetCancelReason() != "" {
		fmt.Fprintf(w, "Cancelled:   %s\n", s.GetCancelReason())
	}
	if s.GetLastError() != "" {
		fmt.Fprintf(w, "Last error:  %s\n", s.GetLastError())
	}
}

func taskState(s meghav1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// argv renders a command on one line, quoting arguments that need it, cut
// at 100 characters.
func argv(args []string) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'$") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	s := strings.Join(parts, " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

// checkpointSummary is one line about a training job's checkpoints: the
// latest, how many are kept, and where (no credentials: store URLs carry
// none).
func checkpointSummary(j *meghav1.Job) string {
	c := j.Spec.GetCheckpoint()
	where := c.GetStore()
	if n := len(c.GetMirrors()); n > 0 {
		where += fmt.Sprintf(" + %d mirrors", n)
	}
	cks := j.Status.GetTrain().GetCheckpoints()
	if len(cks) == 0 {
		return fmt.Sprintf("none yet, every %d rounds to %s", c.GetEveryRounds(), where)
	}
	last := cks[len(cks)-1]
	return fmt.Sprintf("latest round %d (%s, %s new, %.2fs), %d kept, every %d rounds to %s (megha checkpoints %s)",
		last.Round, units.Bytes(last.Bytes), units.Bytes(last.Uploaded), last.Seconds, len(cks), c.GetEveryRounds(), where, j.Id)
}
