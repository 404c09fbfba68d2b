package main

import (
	"fmt"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/spf13/cobra"
)

func newLeasesCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "leases [JOB]",
		Short: "List the market leases held for a job: provider, GPUs, price, spend, state",
		Long: `List the market leases the coordinator holds for a job (or, for an admin
with no JOB, for every job): which provider, which GPUs, the price per
GPU-hour, what each has drawn from escrow, and why it was chosen or closed.`,
		Example: `  megha leases tiny-lm-3f9a1c2e5b7d
  megha leases --all          # admin: every job's leases, closed ones too
  megha leases -o json tiny-lm-3f9a1c2e5b7d`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job := ""
			if len(args) == 1 {
				job = args[0]
			}
			c, ctx, done, err := g.dial(cmd, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			leases, err := c.ListLeases(ctx, job)
			if err != nil {
				return err
			}
			if job == "" && !all {
				active := leases[:0]
				for _, l := range leases {
					if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
						active = append(active, l)
					}
				}
				leases = active
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), &meghav1.ListLeasesResponse{Leases: leases})
			}
			if len(leases) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No leases.")
				return nil
			}
			rows := make([][]string, 0, len(leases))
			var spent int64
			for _, l := range leases {
				gpus := fmt.Sprintf("%d×%s", l.Gpus, l.GpuModel)
				if l.Emulated {
					gpus += " (emulated)"
				}
				state := strings.ToLower(strings.TrimPrefix(l.State.String(), "LEASE_STATE_"))
				if l.CloseReason != "" {
					state += ": " + l.CloseReason
				}
				rows = append(rows, []string{l.Id, l.JobId, l.ProviderName, orDash(l.Region), gpus,
					usd(l.PricePerGpuHourMicros), usd(l.SpentMicros), usd(l.DepositMicros), state})
				spent += l.SpentMicros
			}
			if err := table(cmd.OutOrStdout(), []string{"LEASE", "JOB", "PROVIDER", "REGION", "GPUS", "$/GPU-H", "SPENT", "ESCROW", "STATE"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%d leases, %s spent\n", len(leases), usd(spent))
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "with no JOB: include closed leases")
	return cmd
}
