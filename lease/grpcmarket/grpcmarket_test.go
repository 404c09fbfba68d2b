package grpcmarket

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/leasetest"
	"github.com/megha-ml/megha/lease/sim"
)

// simMarket starts a deterministic embedded market (manual blocks, no
// random failures) and serves it over gRPC on 127.0.0.1:0.
func simMarket(t *testing.T) (*sim.Market, *Client, func()) {
	t.Helper()
	m, err := sim.New(sim.Config{Seed: 42, BlockTime: time.Second, ManualBlocks: true, NoRandomFailures: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	c, stop := serve(t, m, nil)
	return m, c, stop
}

// TestConformance runs the lease.Market suite against the embedded market
// as a remote one: every call crosses a real gRPC connection; only the
// harness hooks (blocks, failures) reach into the market directly.
func TestConformance(t *testing.T) {
	leasetest.Run(t, func(t *testing.T) leasetest.Harness {
		m, c, _ := simMarket(t)
		return leasetest.Harness{
			Market: c, Tenant: testSigner(t, "tenant"), Stranger: testSigner(t, "stranger"),
			Advance: func(t *testing.T, n int) { m.AdvanceBlocks(n) },
			Fail: func(t *testing.T, p string) {
				if err := m.Fail(p); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// TestStoppedSimIsUnavailable: the embedded market's server goes away
// under a client holding a lease; the next calls fail with ErrUnavailable
// within their deadline, and an event stream ends with it too.
func TestStoppedSimIsUnavailable(t *testing.T) {
	m, c, stop := simMarket(t)
	tenant := testSigner(t, "tenant")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := lease.Order{Tenant: tenant.Address(), GPUsPerWorker: 1, Workers: 1,
		MaxPricePerGPUHour: lease.FromMicroUSD(5_000_000), Deposit: lease.FromMicroUSD(10_000_000)}
	if p.Denom != lease.DefaultDenom {
		t.Fatalf("denom %s", p.Denom)
	}
	req, err := lease.SignOrder(tenant, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateOrder(ctx, req); err != nil {
		t.Fatal(err)
	}
	events := make(chan error, 1)
	go func() { events <- c.Events(context.Background(), func(lease.Event) error { return nil }) }()
	for deadline := time.Now().Add(5 * time.Second); m.Subscribers() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("event stream never subscribed")
		}
	}

	stop()
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	start := time.Now()
	if _, err := c.Leases(cctx, lease.LeaseFilter{Tenant: tenant.Address()}); !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("Leases on a stopped market: %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("took %v, past the 2s deadline", d)
	}
	select {
	case err := <-events:
		if !errors.Is(err, lease.ErrUnavailable) {
			t.Fatalf("event stream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event stream outlived the server")
	}
}
