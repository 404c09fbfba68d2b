package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/spf13/cobra"
)

func newWorkersCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List worker agents: GPUs, state, lease, last heartbeat",
		Example: `  megha workers
  megha workers --all -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.dial(cmd, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			req := &meghav1.ListWorkersRequest{}
			if !all {
				req.States = []meghav1.WorkerState{meghav1.WorkerState_WORKER_STATE_READY}
			}
			resp, err := c.ListWorkers(ctx, req)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			if len(resp.Workers) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No workers.")
				return nil
			}
			now := time.Now()
			rows := make([][]string, 0, len(resp.Workers))
			for _, w := range resp.Workers {
				hb := "-"
				if w.LastHeartbeat != nil {
					hb = fmt.Sprintf("%.1fs ago", now.Sub(w.LastHeartbeat.AsTime()).Seconds())
				}
				rows = append(rows, []string{w.Id, orDash(w.Host), workerState(w.State), gpuSummary(w.Gpus),
					orDash(w.LeaseId), fmt.Sprint(w.Epoch), hb})
			}
			if err := table(cmd.OutOrStdout(), []string{"ID", "HOST", "STATE", "GPUS", "LEASE", "EPOCH", "LAST HEARTBEAT"}, rows); err != nil {
				return err
			}
			if len(resp.Throughput) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
				trows := make([][]string, 0, len(resp.Throughput))
				for _, t := range resp.Throughput {
					trows = append(trows, []string{t.Model, t.Probe, fmt.Sprintf("%.1f", t.Mean),
						fmt.Sprintf("%.1f-%.1f", t.Min, t.Max), fmt.Sprint(t.Samples)})
				}
				return table(cmd.OutOrStdout(), []string{"GPU MODEL", "PROBE", "MEAN/GPU (samples/s)", "RANGE", "MEASUREMENTS"}, trows)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include workers that were lost or left")
	return cmd
}

func workerState(s meghav1.WorkerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKER_STATE_"))
}

// gpuSummary renders GPUs as "2×H100-SXM (emulated)".
func gpuSummary(gpus []*meghav1.GPU) string {
	if len(gpus) == 0 {
		return "none"
	}
	counts := map[string]int{}
	emulated := false
	for _, g := range gpus {
		m := g.Model
		if m == "" {
			m = g.Name
		}
		counts[m]++
		emulated = emulated || g.Emulated
	}
	parts := make([]string, 0, len(counts))
	for m, n := range counts {
		parts = append(parts, fmt.Sprintf("%d×%s", n, m))
	}
	sort.Strings(parts)
	s := strings.Join(parts, ",")
	if emulated {
		s += " (emulated)"
	}
	return s
}
