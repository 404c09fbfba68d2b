package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run the built megha binary against a real coordinator
// process, as a user would.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "megha-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "megha")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build megha:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const cliTokens = `admin-token-0123456789 admin
acme-token-0123456789 tenant acme
worker-token-0123456789 worker
`

// startCoordinator runs `megha coordinator` on OS-chosen ports and returns
// its gRPC address.
func startCoordinator(t *testing.T) string {
	t.Helper()
	addr, _ := startCoordinatorDir(t)
	return addr
}

// startCoordinatorDir is startCoordinator, also returning the directory of
// its checkpoint store.
func startCoordinatorDir(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(cliTokens), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	var logs bytes.Buffer
	cmd := exec.Command(binPath, "coordinator", "--id", "n1", "--data-dir", filepath.Join(dir, "n1"),
		"--raft-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--tokens", tokens, "--ready-file", ready,
		"--checkpoint-store", "file://"+filepath.Join(dir, "checkpoints"))
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("coordinator log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			var r struct {
				GRPCAddr string `json:"grpc_addr"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			return r.GRPCAddr, filepath.Join(dir, "checkpoints")
		}
		select {
		case <-exited:
			t.Fatalf("coordinator exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coordinator not ready:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, addr, token string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "MEGHA_COORDINATOR="+addr, "MEGHA_TOKEN="+token, "MEGHA_TOKEN_FILE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

const goodSpec = `name: cli-job
kind: train
model:
  builtin: transformer-tiny
data:
  dataset: synthetic
resources:
  workers: 2
  max_price_per_gpu_hour: 1.25
stop:
  rounds: 3
`

func writeFile(t *testing.T, name, body string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIJobLifecycle(t *testing.T) {
	addr := startCoordinator(t)
	spec := writeFile(t, "job.yaml", goodSpec)

	r := run(t, addr, "acme-token-0123456789", "submit", spec)
	if r.code != 0 || !strings.Contains(r.stdout, "Submitted job cli-job-") {
		t.Fatalf("submit: %+v", r)
	}
	id := strings.Fields(r.stdout)[2]

	r = run(t, addr, "acme-token-0123456789", "jobs")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "pending") {
		t.Fatalf("jobs: %+v", r)
	}
	r = run(t, addr, "acme-token-0123456789", "jobs", "-o", "json")
	var jobs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil || len(jobs) != 1 || jobs[0]["id"] != id {
		t.Fatalf("jobs -o json: %v %+v", err, r)
	}
	r = run(t, addr, "acme-token-0123456789", "status", id)
	if r.code != 0 || !strings.Contains(r.stdout, "State:       pending") || !strings.Contains(r.stdout, "Tenant:      acme") {
		t.Fatalf("status: %+v", r)
	}
	r = run(t, addr, "acme-token-0123456789", "cancel", id, "--reason", "test over")
	if r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("cancel: %+v", r)
	}
	// Watching a finished job prints its last state and exits 2: it did not succeed.
	r = run(t, addr, "acme-token-0123456789", "status", "--watch", id)
	if r.code != 2 || !strings.Contains(r.stdout, "cancelled") {
		t.Fatalf("status --watch: %+v", r)
	}
	r = run(t, addr, "acme-token-0123456789", "cancel", id)
	if r.code == 0 || !strings.Contains(r.stderr, "already finished") {
		t.Fatalf("second cancel: %+v", r)
	}
	r = run(t, addr, "acme-token-0123456789", "status", "nope-123")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, "megha jobs") {
		t.Fatalf("status of unknown job: %+v", r)
	}
}

func TestCLIBadSpecNamesLineAndField(t *testing.T) {
	addr := startCoordinator(t)
	spec := writeFile(t, "bad.yaml", "name: x\nkind: train\nresources:\n  workerz: 3\n")
	r := run(t, addr, "acme-token-0123456789", "submit", spec)
	if r.code == 0 || !strings.Contains(r.stderr, "line 4") || !strings.Contains(r.stderr, "resources.workerz") ||
		!strings.Contains(r.stderr, `"workers"`) {
		t.Fatalf("bad spec: %+v", r)
	}
	r = run(t, addr, "acme-token-0123456789", "jobs")
	if !strings.Contains(r.stdout, "No jobs.") {
		t.Fatalf("a bad spec was submitted: %+v", r)
	}
}

func TestCLIAuthErrors(t *testing.T) {
	addr := startCoordinator(t)
	spec := writeFile(t, "job.yaml", goodSpec)
	r := run(t, addr, "", "jobs")
	if r.code == 0 || !strings.Contains(r.stderr, "no token") {
		t.Fatalf("no token: %+v", r)
	}
	r = run(t, addr, "wrong-token-0123456789", "jobs")
	if r.code == 0 || !strings.Contains(r.stderr, "token") || strings.Contains(r.stderr, "rpc error") {
		t.Fatalf("wrong token: %+v", r)
	}
	r = run(t, addr, "worker-token-0123456789", "submit", spec)
	if r.code == 0 || !strings.Contains(r.stderr, "may not call") {
		t.Fatalf("worker submit: %+v", r)
	}
}

func TestCLIClusterMembers(t *testing.T) {
	addr := startCoordinator(t)
	r := run(t, addr, "admin-token-0123456789", "cluster", "members")
	if r.code != 0 || !strings.Contains(r.stdout, "n1") || !strings.Contains(r.stdout, "leader") || !strings.Contains(r.stdout, addr) {
		t.Fatalf("members: %+v", r)
	}
	r = run(t, addr, "admin-token-0123456789", "workers")
	if r.code != 0 || !strings.Contains(r.stdout, "No workers.") {
		t.Fatalf("workers: %+v", r)
	}
	r = run(t, addr, "admin-token-0123456789", "logs", "nope-123")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("logs of an unknown job: %+v", r)
	}
	r = run(t, addr, "admin-token-0123456789", "cluster", "raft-stats", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"state": "Leader"`) {
		t.Fatalf("raft-stats: %+v", r)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit"}, "accepts 1 arg"},
		{[]string{"jobs", "--state", "sleeping"}, "unknown job state"},
		{[]string{"jobs", "-o", "yaml"}, "use table or json"},
		{[]string{"coordinator", "--bootstrap", "--join", "127.0.0.1:1"}, "exclude each other"},
		{[]string{"coordinator", "--tls-cert", "x"}, "go together"},
	} {
		r := run(t, "127.0.0.1:1", "some-token-0123456789", tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want %q", tc.args, r, tc.want)
		}
	}
}
