package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// standIn writes a shell script that records its arguments and then runs
// body (e.g. "exec sleep 600").
func standIn(t *testing.T, body string) (bin, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	bin = filepath.Join(dir, "megha")
	script := "#!/bin/sh\necho \"$@\" > " + argsFile + ".tmp && mv " + argsFile + ".tmp " + argsFile + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

func pidOf(t *testing.T, eps []string) int {
	t.Helper()
	for _, e := range eps {
		if s, ok := strings.CutPrefix(e, "pid:"); ok {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("endpoints %v have no pid", eps)
	return 0
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestExecLauncherStartsAndStopsWorker(t *testing.T) {
	bin, argsFile := standIn(t, "exec sleep 600")
	data := t.TempDir()
	e := &ExecLauncher{Bin: bin, Coordinator: "127.0.0.1:7000", Token: "tok", DataDir: data, ExtraArgs: []string{"--log-level", "debug"}}
	eps, err := e.Start(lease.Lease{ID: "lease-000001", GPUModel: "H100-SXM", GPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, eps)
	waitFor(t, "the worker to record its arguments", func() bool { _, err := os.Stat(argsFile); return err == nil })
	b, _ := os.ReadFile(argsFile)
	got := strings.TrimSpace(string(b))
	want := "worker --lease lease-000001 --emulate-gpu H100-SXMx2 --data-dir " + filepath.Join(data, "lease-000001") +
		" --coordinator 127.0.0.1:7000 --token tok --log-level debug"
	if got != want {
		t.Errorf("worker args:\n got %s\nwant %s", got, want)
	}
	if _, err := e.Start(lease.Lease{ID: "lease-000001", GPUModel: "H100-SXM", GPUs: 2}); err == nil {
		t.Error("a second worker for the same lease started")
	}
	if err := e.Stop("lease-000001"); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("worker %d still exists after Stop", pid)
	}
	if err := e.Stop("lease-000001"); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestExecLauncherKillsWorkerIgnoringTerm(t *testing.T) {
	bin, argsFile := standIn(t, "trap '' TERM\nexec sleep 600")
	e := &ExecLauncher{Bin: bin, DataDir: t.TempDir(), Grace: 100 * time.Millisecond}
	eps, err := e.Start(lease.Lease{ID: "l1", GPUModel: "RTX4090", GPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to start", func() bool { _, err := os.Stat(argsFile); return err == nil })
	start := time.Now()
	if err := e.Stop("l1"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period", d)
	}
	if pid := pidOf(t, eps); !gone(pid) {
		t.Errorf("worker %d survived SIGKILL", pid)
	}
}

// recordingLauncher records what the market asked of it.
type recordingLauncher struct {
	started, stopped chan string
	fail             bool
}

func (r *recordingLauncher) Start(l lease.Lease) ([]string, error) {
	if r.fail {
		return nil, errors.New("no room")
	}
	r.started <- l.ID
	return []string{"pid:1"}, nil
}

func (r *recordingLauncher) Stop(id string) error { r.stopped <- id; return nil }

func recv(t *testing.T, ch chan string, what string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		return ""
	}
}

func TestMarketStartsAndStopsWorkers(t *testing.T) {
	r := &recordingLauncher{started: make(chan string, 8), stopped: make(chan string, 8)}
	m := newTestMarket(t, func(c *Config) { c.Launcher = r })
	tenant, _ := signers(t)
	_, bids := openOrder(t, m, tenant, nil)
	ls := accept(t, m, tenant, bids[0], 2)
	for _, l := range ls {
		if got := recv(t, r.started, "worker start"); got != l.ID {
			t.Errorf("started %s, want %s", got, l.ID)
		}
		if len(l.Endpoints) != 1 || l.Endpoints[0] != "pid:1" {
			t.Errorf("lease %s endpoints %v", l.ID, l.Endpoints)
		}
	}
	closeLease(t, m, tenant, ls[0].ID)
	if got := recv(t, r.stopped, "worker stop on close"); got != ls[0].ID {
		t.Errorf("stopped %s, want %s", got, ls[0].ID)
	}
	if err := m.Fail(ls[1].ProviderName); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, r.stopped, "worker stop on provider failure"); got != ls[1].ID {
		t.Errorf("stopped %s, want %s", got, ls[1].ID)
	}
}

func TestAcceptRollsBackWhenWorkerCannotStart(t *testing.T) {
	m := newTestMarket(t, func(c *Config) { c.Launcher = &recordingLauncher{fail: true} })
	tenant, _ := signers(t)
	o, bids := openOrder(t, m, tenant, nil)
	before := m.Account(tenant.Address())
	req, _ := lease.SignAccept(tenant, lease.AcceptRequest{Tenant: tenant.Address(), OrderID: o.ID, BidID: bids[0].ID, Count: 1})
	if _, err := m.Accept(t.Context(), req); !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("Accept with a failing launcher: %v, want ErrUnavailable", err)
	}
	if after := m.Account(tenant.Address()); !after.IsEqual(before) {
		t.Errorf("account went from %s to %s", before, after)
	}
	for _, p := range m.Providers() {
		for _, g := range p.GPUs {
			if g.Free != g.Total {
				t.Errorf("%s has %d of %d %s free after a rolled-back accept", p.Name, g.Free, g.Total, g.Model)
			}
		}
	}
}
