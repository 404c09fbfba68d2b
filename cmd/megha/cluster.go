package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/spf13/cobra"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the coordinator's Raft cluster",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "members",
			Short: "List coordinator nodes and the leader",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, ctx, done, err := g.dial(cmd, 15*time.Second)
				if err != nil {
					return err
				}
				defer done()
				ms, err := c.Members(ctx)
				if err != nil {
					return err
				}
				return printMembers(cmd, g, ms)
			},
		},
		&cobra.Command{
			Use:   "raft-stats",
			Short: "Show Raft statistics of the node reached",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, ctx, done, err := g.dial(cmd, 15*time.Second)
				if err != nil {
					return err
				}
				defer done()
				st, err := c.RaftStats(ctx)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return printJSON(cmd.OutOrStdout(), st)
				}
				keys := make([]string, 0, len(st.Stats))
				for k := range st.Stats {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				rows := [][]string{{"node_id", st.NodeId}}
				for _, k := range keys {
					rows = append(rows, []string{k, st.Stats[k]})
				}
				return table(cmd.OutOrStdout(), []string{"KEY", "VALUE"}, rows)
			},
		},
		&cobra.Command{
			Use:     "remove ID",
			Short:   "Remove a coordinator node from the cluster",
			Example: "  megha cluster remove n3",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, ctx, done, err := g.dial(cmd, 30*time.Second)
				if err != nil {
					return err
				}
				defer done()
				ms, err := c.RemoveVoter(ctx, args[0])
				if err != nil {
					return err
				}
				return printMembers(cmd, g, ms)
			},
		},
	)
	return cmd
}

func printMembers(cmd *cobra.Command, g *globals, ms []*meghav1.Member) error {
	if g.output == "json" {
		return printJSONList(cmd.OutOrStdout(), ms)
	}
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		leader := ""
		if m.Leader {
			leader = "leader"
		}
		rows = append(rows, []string{m.Id, m.RaftAddr, orDash(m.GrpcAddr),
			strings.ToLower(strings.TrimPrefix(m.Suffrage.String(), "SUFFRAGE_")), leader})
	}
	if len(rows) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "No members.")
		return nil
	}
	return table(cmd.OutOrStdout(), []string{"ID", "RAFT ADDR", "GRPC ADDR", "SUFFRAGE", "ROLE"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
