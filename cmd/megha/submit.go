package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/client"
	"github.com/megha-ml/megha/jobspec"
	"github.com/spf13/cobra"
)

func newSubmitCmd(g *globals) *cobra.Command {
	var (
		dryRun    bool
		watch     bool
		requestID string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "submit FILE.yaml",
		Short: "Submit a job from a YAML spec (- reads standard input)",
		Long: `Submit a job described by a YAML spec. The spec is checked here first; every
mistake is reported with its line and field, and nothing is sent until the
spec is valid. See examples/train-tiny.yaml and the job spec reference in the
README.`,
		Example: `  megha submit examples/train-tiny.yaml
  megha submit --dry-run examples/train-tiny.yaml
  megha submit --watch job.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := readSpec(args[0])
			if err != nil {
				return err
			}
			if dryRun {
				b, err := jobspec.Marshal(spec)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s is valid; with defaults filled it reads:\n", args[0])
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if requestID == "" {
				requestID = client.NewRequestID()
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := c.Submit(ctx, spec, requestID)
			if err != nil {
				return fmt.Errorf("submit %s: %w", args[0], err)
			}
			if g.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), resp.Job); err != nil {
					return err
				}
			} else {
				verb := "Submitted"
				if resp.Existed {
					verb = "Already submitted"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s job %s (tenant %s)\n", verb, resp.Job.Id, resp.Job.Tenant)
				fmt.Fprintf(cmd.OutOrStdout(), "  follow it: megha status --watch %s\n", resp.Job.Id)
			}
			if watch {
				return watchJob(cmd, g, c, resp.Job.Id)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the spec and print it with defaults filled; submit nothing")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the job until it finishes")
	cmd.Flags().StringVar(&requestID, "request-id", "", "idempotency key: resubmitting with the same key returns the first job")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (retries across leader changes included)")
	return cmd
}

// readSpec reads, parses, defaults and validates a spec file. Errors name
// the file, the line and the field.
func readSpec(path string) (*meghav1.JobSpec, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 2<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	spec, err := jobspec.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	// A relative file:// store means relative to where the user is, not
	// to wherever the coordinator and workers run.
	if c := spec.GetCheckpoint(); c != nil {
		if c.Store, err = absFileURL(c.Store); err != nil {
			return nil, fmt.Errorf("%s: checkpoint.store: %w", path, err)
		}
		for i, m := range c.Mirrors {
			if c.Mirrors[i], err = absFileURL(m); err != nil {
				return nil, fmt.Errorf("%s: checkpoint.mirrors[%d]: %w", path, i, err)
			}
		}
	}
	return spec, nil
}

// absFileURL makes a file:// URL's directory absolute; other URLs are
// returned as they are.
func absFileURL(u string) (string, error) {
	dir, ok := strings.CutPrefix(u, "file://")
	if !ok || filepath.IsAbs(dir) {
		return u, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return "file://" + filepath.ToSlash(abs), nil
}
