package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/grpcmarket"
	"github.com/megha-ml/megha/lease/sim"
)

// marketProc is a running `megha market serve`.
type marketProc struct {
	addr   string
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	exited chan struct{}
}

// startMarket runs `megha market serve` on an OS-chosen port and returns
// once it is serving.
func startMarket(t *testing.T, args ...string) *marketProc {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "market.json")
	p := &marketProc{logs: &bytes.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binPath, append([]string{"market", "serve", "--listen", "127.0.0.1:0", "--ready-file", ready}, args...)...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("market log:\n%s", p.logs.String())
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
			p.addr = r.GRPCAddr
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("market exited:\n%s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("market not ready:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runMarket runs a market client command against addr (through
// MEGHA_MARKET, as a user would set it).
func runMarket(t *testing.T, addr string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"market"}, args...)...)
	cmd.Env = append(os.Environ(), "MEGHA_MARKET="+addr)
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

func TestCLIMarket(t *testing.T) {
	m := startMarket(t, "--seed", "7", "--block-time", "1s")
	names := []string{}
	for _, p := range sim.DefaultCatalog().Providers {
		names = append(names, p.Name)
	}
	if len(names) < 2 {
		t.Fatalf("default catalog has %d providers", len(names))
	}

	// Every provider of the default catalog is listed, up.
	r := runMarket(t, m.addr, "providers")
	if r.code != 0 {
		t.Fatalf("providers: %+v", r)
	}
	for _, n := range names {
		line := lineWith(r.stdout, n)
		if line == "" || !strings.Contains(line, " up ") || !strings.Contains(line, "akash1") {
			t.Fatalf("provider %s not listed up:\n%s", n, r.stdout)
		}
	}
	r = runMarket(t, m.addr, "providers", "-o", "json")
	var ps []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || len(ps) != len(names) || ps[0]["name"] != names[0] {
		t.Fatalf("providers -o json: %v %+v", err, r)
	}

	// A tenant's order gets bids; the bids command shows them with prices
	// per GPU-hour and the selector's line for each.
	orderID := postOrder(t, m.addr)
	r = runMarket(t, m.addr, "bids", orderID, "--selector", "cheapest", "--want", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "PRICE/GPU-HOUR") || !strings.Contains(r.stdout, "$") ||
		!strings.Contains(r.stdout, "Selector cheapest, 2 lease(s) wanted:") || !strings.Contains(r.stdout, "chosen") {
		t.Fatalf("bids: %+v", r)
	}
	r = runMarket(t, m.addr, "bids", orderID, "-o", "json")
	var bids []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &bids); err != nil || len(bids) == 0 || bids[0]["explanation"] == "" {
		t.Fatalf("bids -o json: %v %+v", err, r)
	}
	r = runMarket(t, m.addr, "bids", orderID, "--selector", "cheapest:x")
	if r.code == 0 || !strings.Contains(r.stderr, "--selector") || !strings.Contains(r.stderr, "valid names") {
		t.Fatalf("bad selector: %+v", r)
	}
	r = runMarket(t, m.addr, "bids", "o-999")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("bids of unknown order: %+v", r)
	}

	// Failing a provider marks it down; the others stay up.
	r = runMarket(t, m.addr, "fail", names[0])
	if r.code != 0 || !strings.Contains(r.stdout, "failed") {
		t.Fatalf("fail: %+v", r)
	}
	r = runMarket(t, m.addr, "providers")
	if line := lineWith(r.stdout, names[0]); !strings.Contains(line, "down") {
		t.Fatalf("%s not down after fail:\n%s", names[0], r.stdout)
	}
	if line := lineWith(r.stdout, names[1]); !strings.Contains(line, " up ") {
		t.Fatalf("%s not up:\n%s", names[1], r.stdout)
	}
	r = runMarket(t, m.addr, "fail", "no-such-provider")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, "megha market providers") {
		t.Fatalf("fail unknown provider: %+v", r)
	}

	// SIGTERM stops the market cleanly.
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("market did not stop on SIGTERM")
	}
	if code := m.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(m.logs.String(), "shutting down") {
		t.Fatalf("market exit %d:\n%s", code, m.logs.String())
	}
}

func TestCLIMarketNotRunning(t *testing.T) {
	r := runMarket(t, "127.0.0.1:1", "providers")
	if r.code == 0 || !strings.Contains(r.stderr, "market unavailable") || !strings.Contains(r.stderr, "megha market serve") ||
		strings.Contains(r.stderr, "rpc error") {
		t.Fatalf("no market: %+v", r)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "catalog.yaml")
	if err := os.WriteFile(bad, []byte("providers: [{name: x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "market", "serve", "--listen", "127.0.0.1:0", "--catalog", bad)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--catalog") {
		t.Fatalf("bad catalog: %v\n%s", err, out)
	}
}

// postOrder opens an order for 1 GPU of any model, 2 workers, as a tenant
// talking to the market at addr, and returns its ID.
func postOrder(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := grpcmarket.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseConn()
	tenant, err := lease.GenerateSigner(lease.NewKeyring(), "tenant", []byte("cli-tenant"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := lease.SignOrder(tenant, lease.Order{Tenant: tenant.Address(), GPUsPerWorker: 1, Workers: 2,
		MaxPricePerGPUHour: lease.FromMicroUSD(5_000_000), Deposit: lease.FromMicroUSD(10_000_000)})
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return o.ID
}

// lineWith returns the first line of s whose first field is name.
func lineWith(s, name string) string {
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l + " "
		}
	}
	return ""
}
