package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/internal/jobstate"
	"github.com/spf13/cobra"
)

func newJobsCmd(g *globals) *cobra.Command {
	var (
		states []string
		tenant string
		stale  bool
	)
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs",
		Example: `  megha jobs
  megha jobs --state running,recovering
  megha jobs -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &meghav1.ListJobsRequest{Tenant: tenant, AllowStale: stale}
			for _, s := range states {
				st, err := jobstate.Parse(s)
				if err != nil {
					return fmt.Errorf("--state: %w", err)
				}
				req.States = append(req.States, st)
			}
			c, ctx, done, err := g.dial(cmd, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			jobs, err := c.ListAll(ctx, req)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSONList(cmd.OutOrStdout(), jobs)
			}
			if len(jobs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No jobs.")
				return nil
			}
			now := time.Now()
			rows := make([][]string, 0, len(jobs))
			for _, j := range jobs {
				p := j.Status.GetProgress()
				rows = append(rows, []string{j.Id, j.Tenant, jobstate.Name(j.Status.GetState()),
					strconv.FormatUint(p.GetRound(), 10), loss(p.GetLoss()), usd(j.Status.GetSpendMicros()),
					age(j.Status.GetCreatedAt(), now)})
			}
			return table(cmd.OutOrStdout(), []string{"ID", "TENANT", "STATE", "ROUND", "LOSS", "SPEND", "AGE"}, rows)
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only jobs in these states ("+strings.Join(stateNames(), ", ")+")")
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's jobs (admin tokens)")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from any node without asking the leader")
	return cmd
}

func stateNames() []string {
	var out []string
	for st := meghav1.JobState_JOB_STATE_PENDING; st <= meghav1.JobState_JOB_STATE_CANCELLED; st++ {
		out = append(out, jobstate.Name(st))
	}
	return out
}

func loss(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}
