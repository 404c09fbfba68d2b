package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/megha-ml/megha/internal/report"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newReportCmd(g *globals) *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "report JOB [--out DIR]",
		Short: "Write a job's end-of-job report: loss curve, GPU-hours, spend, recoveries",
		Long: `Build the report of a job from what the coordinator recorded, print it, and
write DIR/report.json (every figure, for scripts) and DIR/loss.svg (the
training and validation loss by round, with the rounds where a worker was
lost marked). DIR defaults to ./megha-report-JOB and is created if needed.

The report has the loss per committed round; rounds, tokens and bytes sent
and received; GPU-hours by GPU model (from the job's leases, or from its
tasks when it ran on workers it did not lease; emulated GPUs are marked);
spend against the budget and each lease's price; every lost worker's
recovery (detected, replacement leased, placed, rejoined, rounds committed
without it) and the checkpoints kept.

Some figures are not measured: the work a lost worker threw away is
estimated from its last committed round, and when a replacement finished
restoring its checkpoint is not recorded (null). The report says which.
For a job still running, the report is a live snapshot and says so.

With -o json the JSON is printed instead of the text (the files are
written all the same; where they went is printed on stderr).`,
		Example: `  megha report tiny-lm-3f9a1c2e5b7d
  megha report tiny-lm-3f9a1c2e5b7d --out reports/tiny-lm
  megha report -o json tiny-lm-3f9a1c2e5b7d | jq '.recoveries[].recovery_seconds'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := g.dial(cmd, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			job, err := c.Get(ctx, args[0], false)
			if err != nil {
				return err
			}
			tasks, err := c.ListTasks(ctx, job.Id)
			if err != nil {
				return fmt.Errorf("listing the tasks of %s: %w", job.Id, err)
			}
			leases, err := c.ListLeases(ctx, job.Id)
			if err != nil {
				// An older coordinator, or a token that may not see leases:
				// the report goes on without them (GPU-hours from tasks).
				switch status.Code(err) {
				case codes.Unimplemented, codes.PermissionDenied:
					leases = nil
				default:
					return fmt.Errorf("listing the leases of %s: %w", job.Id, err)
				}
			}
			rep := report.Build(job, tasks, leases, time.Now())

			var js, svg bytes.Buffer
			if err := report.WriteJSON(&js, rep); err != nil {
				return err
			}
			if err := report.WriteSVG(&svg, rep); err != nil {
				return err
			}
			if outDir == "" {
				outDir = "megha-report-" + job.Id
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			jsonPath, svgPath := filepath.Join(outDir, "report.json"), filepath.Join(outDir, "loss.svg")
			for _, file := range []struct {
				path string
				body []byte
			}{{jsonPath, js.Bytes()}, {svgPath, svg.Bytes()}} {
				if err := writeFileAtomic(file.path, func(f *os.File) error { _, err := f.Write(file.body); return err }); err != nil {
					return err
				}
			}

			out, where := cmd.OutOrStdout(), cmd.OutOrStdout()
			if g.output == "json" {
				if _, err := out.Write(js.Bytes()); err != nil {
					return err
				}
				where = cmd.ErrOrStderr() // keep stdout one JSON document
			} else if err := report.WriteText(out, rep); err != nil {
				return err
			}
			fmt.Fprintf(where, "\nWrote %s and %s\n", jsonPath, svgPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&outDir, "out", "", "`DIR` to write report.json and loss.svg in (default ./megha-report-JOB)")
	return cmd
}
