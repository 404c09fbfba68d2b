package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/megha-ml/megha/checkpoint"
)

// TestCLICheckpoints trains a small job on one worker process, then lists,
// verifies and exports its checkpoints through the CLI, and checks that a
// damaged chunk is reported by `verify` with a failing exit status.
func TestCLICheckpoints(t *testing.T) {
	addr, store := startCoordinatorDir(t)
	const admin, worker = "admin-token-0123456789", "worker-token-0123456789"
	w := exec.Command(binPath, "worker", "--coordinator", addr, "--token", worker, "--emulate-gpu", "H100-SXM",
		"--data-dir", filepath.Join(t.TempDir(), "w"), "--calibrate", "50ms", "--log-level", "warn")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { w.Wait(); close(exited) }()
	t.Cleanup(func() { w.Process.Kill(); <-exited })

	spec := writeFile(t, "ckpt.yaml", `name: ckpt
kind: train
model: {builtin: mlp-tiny}
data: {dataset: synthetic, batch_size: 8}
sync: {inner_steps: 5}
stop: {rounds: 4}
checkpoint: {every_rounds: 2, keep: 5}
`)
	r := run(t, addr, admin, "submit", spec)
	if r.code != 0 {
		t.Fatalf("submit: %d %s", r.code, r.stderr)
	}
	job := regexp.MustCompile(`Submitted job (\S+)`).FindStringSubmatch(r.stdout)
	if job == nil {
		t.Fatalf("submit output %q", r.stdout)
	}
	id := job[1]
	if r := run(t, addr, admin, "status", "--watch", id); r.code != 0 {
		t.Fatalf("status --watch: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The final checkpoint is reported after the job succeeds: wait for it.
	var list result
	deadline := 200
	for ; deadline > 0; deadline-- {
		list = run(t, addr, admin, "checkpoints", id)
		if strings.Contains(list.stdout, "\n4 ") {
			break
		}
	}
	if list.code != 0 || !strings.Contains(list.stdout, "\n2 ") || !strings.Contains(list.stdout, "\n4 ") || !strings.Contains(list.stdout, "store file://"+store) {
		t.Fatalf("checkpoints: %d\n%s%s", list.code, list.stdout, list.stderr)
	}
	if r := run(t, addr, admin, "status", id); !strings.Contains(r.stdout, "Checkpoints: latest round 4") {
		t.Errorf("status lacks the checkpoints line:\n%s", r.stdout)
	}
	if r := run(t, addr, admin, "checkpoints", "verify", id); r.code != 0 || strings.Count(r.stdout, ": ok,") != 2 {
		t.Fatalf("verify: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	out := filepath.Join(t.TempDir(), "model.safetensors")
	if r := run(t, addr, admin, "export", id, "--out", out); r.code != 0 || !strings.Contains(r.stdout, "round 4") {
		t.Fatalf("export: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensors, meta, err := checkpoint.ReadSafetensors(f)
	if err != nil {
		t.Fatal(err)
	}
	params := 0
	for _, ts := range tensors {
		if strings.Contains(ts.Name, "/") {
			t.Errorf("exported tensor %q keeps its checkpoint prefix", ts.Name)
		}
		params += len(ts.Data) / 4
	}
	if params != 139776 || meta["job"] != id || meta["round"] != "4" || meta["model"] != "mlp-tiny" {
		t.Fatalf("exported %d parameters, metadata %v", params, meta)
	}
	if r := run(t, addr, admin, "export", id, "--round", "3", "--out", out); r.code == 0 || !strings.Contains(r.stderr, "round 3") {
		t.Errorf("export of a round without a checkpoint: %d %s", r.code, r.stderr)
	}
	if r := run(t, addr, admin, "export", id); r.code == 0 || !strings.Contains(r.stderr, "--out FILE is required") {
		t.Errorf("export without --out: %d %s", r.code, r.stderr)
	}

	// Damage one chunk: verify names it and fails; the other round is fine.
	chunks, err := filepath.Glob(filepath.Join(store, "jobs", id, "chunks", "*"))
	if err != nil || len(chunks) == 0 {
		t.Fatalf("chunks: %v %v", chunks, err)
	}
	b, err := os.ReadFile(chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(chunks[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, addr, admin, "checkpoints", "verify", id)
	if r.code == 0 || !strings.Contains(r.stdout, filepath.Base(chunks[0])[:12]) || !strings.Contains(r.stderr, "failed verification") {
		t.Fatalf("verify after damage: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
