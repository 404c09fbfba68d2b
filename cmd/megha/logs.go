package main

import (
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/spf13/cobra"
)

func newLogsCmd(g *globals) *cobra.Command {
	var (
		rank   uint32
		stderr bool
		follow bool
		tail   uint32
	)
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job task's output (rank 0 unless --rank)",
		Long: `Print the output of one rank of a job, relayed by the coordinator from the
worker that runs it (its newest attempt, if the rank was moved).`,
		Example: `  megha logs tiny-lm-3f9a1c2e5b7d
  megha logs -f --rank 2 --stderr tiny-lm-3f9a1c2e5b7d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			req := &meghav1.TaskLogsRequest{JobId: args[0], Rank: rank, Follow: follow, Tail: tail, Stream: "stdout"}
			if stderr {
				req.Stream = "stderr"
			}
			return c.Logs(cmd.Context(), req, func(ch *meghav1.LogChunk) error {
				_, err := cmd.OutOrStdout().Write(ch.Data)
				return err
			})
		},
	}
	cmd.Flags().Uint32Var(&rank, "rank", 0, "which rank's output")
	cmd.Flags().BoolVar(&stderr, "stderr", false, "standard error instead of standard output")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	cmd.Flags().Uint32Var(&tail, "tail", 0, "start with the last N lines (0: from the beginning)")
	return cmd
}
