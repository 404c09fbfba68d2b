package main

import (
	"fmt"
	"time"

	"github.com/megha-ml/megha/internal/jobstate"
	"github.com/spf13/cobra"
)

func newCancelCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "cancel JOB",
		Short:   "Cancel a job",
		Example: `  megha cancel tiny-lm-3f9a1c2e5b7d --reason "wrong learning rate"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			job, err := c.Cancel(ctx, args[0], reason)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), job)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Job %s is %s\n", job.Id, jobstate.Name(job.Status.GetState()))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the job")
	return cmd
}
