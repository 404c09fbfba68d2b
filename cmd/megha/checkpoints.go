package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/checkpoint"
	"github.com/megha-ml/megha/internal/units"
	"github.com/spf13/cobra"
)

func newCheckpointsCmd(g *globals) *cobra.Command {
	var scan bool
	cmd := &cobra.Command{
		Use:   "checkpoints JOB",
		Short: "List a training job's checkpoints; `verify` checks every chunk",
		Long: `List the checkpoints the coordinator has recorded for a training job: round,
step, tokens, size, how much of it was new (the rest was already stored and
shared), how long the upload took, and where it is.

With --scan the job's store is listed too, so that checkpoints written but
never recorded (a writer killed before it reported, say) and unreadable
manifests show up. The store is read from here, with this machine's
credentials (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or
MINIO_ROOT_USER and MINIO_ROOT_PASSWORD).`,
		Example: `  megha checkpoints tiny-lm-3f9a1c2e5b7d
  megha checkpoints --scan tiny-lm-3f9a1c2e5b7d
  megha checkpoints verify tiny-lm-3f9a1c2e5b7d        # every recorded checkpoint
  megha checkpoints verify tiny-lm-3f9a1c2e5b7d 12     # round 12 only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := getTrainJob(cmd, g, args[0])
			if err != nil {
				return err
			}
			cks := job.Status.GetTrain().GetCheckpoints()
			out := cmd.OutOrStdout()
			if g.output == "json" && !scan {
				return printJSON(out, &meghav1.TrainStatus{Checkpoints: cks})
			}
			recorded := map[uint64]bool{}
			rows := make([][]string, 0, len(cks))
			for _, c := range cks {
				recorded[c.Round] = true
				rows = append(rows, []string{strconv.FormatUint(c.Round, 10), strconv.FormatUint(c.Step, 10),
					strconv.FormatUint(c.Tokens, 10), units.Bytes(c.Bytes), units.Bytes(c.Uploaded),
					fmt.Sprintf("%.2fs", c.Seconds), age(c.CommittedAt, time.Now()), "recorded"})
			}
			if scan {
				store, err := openJobStore(cmd.Context(), job)
				if err != nil {
					return err
				}
				infos, err := checkpoint.List(cmd.Context(), store, job.Id)
				if err != nil {
					return fmt.Errorf("listing %s: %w", store, err)
				}
				for _, in := range infos {
					if recorded[in.Round] {
						continue
					}
					state := "in the store, not recorded (never reported, or pruned from the record)"
					if in.Err != nil {
						state = "unreadable: " + in.Err.Error()
					}
					row := []string{strconv.FormatUint(in.Round, 10), "-", "-", "-", "-", "-", "-", state}
					if m := in.Manifest; m != nil {
						row[1], row[2], row[3] = strconv.FormatUint(m.Step, 10), strconv.FormatUint(m.Tokens, 10), units.Bytes(m.Bytes)
					}
					rows = append(rows, row)
				}
			}
			if len(rows) == 0 {
				fmt.Fprintf(out, "No checkpoints of %s yet (store %s).\n", job.Id, job.Spec.GetCheckpoint().GetStore())
				return nil
			}
			if err := table(out, []string{"ROUND", "STEP", "TOKENS", "SIZE", "NEW", "UPLOAD", "AGE", "STATE"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nstore %s\n", strings.Join(storeURLsOf(job), " + "))
			return nil
		},
	}
	cmd.Flags().BoolVar(&scan, "scan", false, "also list the checkpoints found in the store")
	cmd.AddCommand(newCheckpointsVerifyCmd(g))
	return cmd
}

func newCheckpointsVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify JOB [ROUND]",
		Short: "Check every chunk of a job's checkpoints against its hash",
		Long: `Read every chunk of a training job's recorded checkpoints (or of one round)
from its store and check its size and SHA-256, and each tensor's hash.
Exits with status 1 if any checkpoint has a problem; every problem is listed.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := getTrainJob(cmd, g, args[0])
			if err != nil {
				return err
			}
			var rounds []uint64
			if len(args) == 2 {
				r, err := strconv.ParseUint(args[1], 10, 64)
				if err != nil || r == 0 {
					return fmt.Errorf("ROUND %q: want a round number such as 12 (see `megha checkpoints %s`)", args[1], job.Id)
				}
				rounds = []uint64{r}
			} else {
				for _, c := range job.Status.GetTrain().GetCheckpoints() {
					rounds = append(rounds, c.Round)
				}
			}
			if len(rounds) == 0 {
				return fmt.Errorf("%s has no recorded checkpoints to verify", job.Id)
			}
			store, err := openJobStore(cmd.Context(), job)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			bad := 0
			for _, r := range rounds {
				start := time.Now()
				rep, err := checkpoint.Verify(cmd.Context(), store, job.Id, r)
				switch {
				case err != nil:
					bad++
					fmt.Fprintf(out, "round %d: %v\n", r, err)
				case len(rep.Problems) > 0:
					bad++
					fmt.Fprintf(out, "round %d: %d problems in %d chunks:\n", r, len(rep.Problems), rep.Chunks)
					for _, p := range rep.Problems {
						fmt.Fprintf(out, "  %s\n", p)
					}
				default:
					fmt.Fprintf(out, "round %d: ok, %d chunks, %s, verified in %.2fs\n", r, rep.Chunks, units.Bytes(rep.Bytes), time.Since(start).Seconds())
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d checkpoints failed verification; a joining worker skips those and restores an older one", bad, len(rounds))
			}
			return nil
		},
	}
}

func newExportCmd(g *globals) *cobra.Command {
	var round uint64
	var outPath string
	cmd := &cobra.Command{
		Use:   "export JOB --out FILE",
		Short: "Write a checkpoint's model weights to a safetensors file",
		Long: `Read a training job's checkpoint from its store, verify every chunk, and write
the model's weights to FILE in the safetensors format (readable by the
safetensors Python package, PyTorch, JAX and others), with the job, round,
model and step as metadata. --round picks the checkpoint; the default is the
latest recorded one.`,
		Example: `  megha export tiny-lm-3f9a1c2e5b7d --out tiny-lm.safetensors
  megha export tiny-lm-3f9a1c2e5b7d --round 12 --out tiny-lm-r12.safetensors`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outPath == "" {
				return errors.New("--out FILE is required: where to write the weights (e.g. model.safetensors)")
			}
			job, err := getTrainJob(cmd, g, args[0])
			if err != nil {
				return err
			}
			cks := job.Status.GetTrain().GetCheckpoints()
			if round == 0 {
				if len(cks) == 0 {
					return fmt.Errorf("%s has no recorded checkpoints yet", job.Id)
				}
				round = cks[len(cks)-1].Round
			}
			store, err := openJobStore(cmd.Context(), job)
			if err != nil {
				return err
			}
			ck, err := checkpoint.Load(cmd.Context(), store, job.Id, round)
			if err != nil {
				return err
			}
			var weights []checkpoint.Tensor
			for _, t := range ck.Tensors {
				if name, ok := strings.CutPrefix(t.Name, "model/"); ok {
					t.Name = name
				}
				weights = append(weights, t)
			}
			m := ck.Manifest
			meta := map[string]string{"job": job.Id, "round": strconv.FormatUint(m.Round, 10), "step": strconv.FormatUint(m.Step, 10),
				"model": m.Model.Name, "format": "megha checkpoint export"}
			if err := writeFileAtomic(outPath, func(f *os.File) error { return checkpoint.WriteSafetensors(f, weights, meta) }); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d tensors of %s, round %d (step %d), %s\n", outPath, len(weights), m.Model.Name, m.Round, m.Step, units.Bytes(m.Bytes))
			return nil
		},
	}
	cmd.Flags().Uint64Var(&round, "round", 0, "the checkpoint's round (default: the latest recorded)")
	cmd.Flags().StringVar(&outPath, "out", "", "`FILE` to write (safetensors)")
	return cmd
}

// getTrainJob fetches a job and checks that it has checkpoints to speak of.
func getTrainJob(cmd *cobra.Command, g *globals, id string) (*meghav1.Job, error) {
	c, ctx, done, err := g.dial(cmd, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer done()
	job, err := c.Get(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if job.Spec.GetKind() != meghav1.JobKind_JOB_KIND_TRAIN || job.Spec.GetModel().GetBuiltin() == "" {
		return nil, fmt.Errorf("%s does not train a built-in model: only built-in training is checkpointed by megha", job.Id)
	}
	return job, nil
}

func storeURLsOf(job *meghav1.Job) []string {
	c := job.Spec.GetCheckpoint()
	return append([]string{c.GetStore()}, c.GetMirrors()...)
}

// openJobStore opens a job's checkpoint store (and mirrors) from here.
func openJobStore(ctx context.Context, job *meghav1.Job) (checkpoint.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := checkpoint.OpenAll(ctx, storeURLsOf(job))
	if err != nil {
		return nil, fmt.Errorf("opening the checkpoint store of %s: %w", job.Id, err)
	}
	return s, nil
}

// writeFileAtomic writes a file through a temporary file in the same
// directory, so that a failed write leaves no partial FILE.
func writeFileAtomic(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
