package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
)

// subscribe starts an Events subscriber on m and waits until it is
// registered.
func subscribe(t *testing.T, m *Market, fn func(lease.Event) error) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	n := m.Subscribers()
	go func() { errc <- m.Events(ctx, fn) }()
	t.Cleanup(cancel)
	waitFor(t, "the subscriber", func() bool { return m.Subscribers() > n })
	return errc
}

func collect(t *testing.T, m *Market) <-chan lease.Event {
	ch := make(chan lease.Event, 1024)
	subscribe(t, m, func(e lease.Event) error { ch <- e; return nil })
	return ch
}

func next(t *testing.T, ch <-chan lease.Event) lease.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return lease.Event{}
	}
}

// TestDeterministic runs the same calls on two markets with the same seed
// (random failures on) and expects the same bids, leases and closings.
func TestDeterministic(t *testing.T) {
	run := func() string {
		m := newTestMarket(t, func(c *Config) { c.Seed = 7; c.NoRandomFailures = false; c.BlockTime = time.Minute })
		tenant, _ := signers(t)
		var b strings.Builder
		for i := range 4 {
			o, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.Deposit = lease.FromMicroUSD(50_000_000) })
			for _, x := range bids {
				fmt.Fprintln(&b, o.ID, x.ID, x.ProviderName, x.GPUModel, x.Count, x.PricePerBlock)
			}
			accept(t, m, tenant, bids[i%len(bids)], 1)
			m.AdvanceBlocks(1500)
		}
		ls, _ := m.Leases(t.Context(), lease.LeaseFilter{})
		for _, l := range ls {
			fmt.Fprintln(&b, l.ID, l.State, l.ClosedAt, l.CloseReason, l.Escrow.Drawn)
		}
		for _, p := range m.Providers() {
			fmt.Fprintln(&b, p.Name, p.State, p.Reliability)
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("same seed, same calls, different markets:\n%s\n---\n%s", a, b)
	}
	if !strings.Contains(a, "failed") && !strings.Contains(a, "escrow exhausted") {
		t.Logf("no lease ended in the run:\n%s", a)
	}
}

const flakyCatalog = `
providers:
  - name: flaky
    region: us-east
    gpus: [{model: RTX4090, count: 2}]
    mtbf: 1s
    mttr: 4s
    reclaim: {probability: 1, notice: 3s}
`

func TestReclaimNoticeThenFailure(t *testing.T) {
	cat, err := ParseCatalog([]byte(flakyCatalog))
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMarket(t, func(c *Config) { c.Catalog = cat; c.NoRandomFailures = false })
	tenant, _ := signers(t)
	ev := collect(t, m)
	o, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.Workers = 3 })
	l := accept(t, m, tenant, bids[0], 1)[0]
	m.AdvanceBlocks(1) // mtbf = block time: it fails in the first block, with notice
	e := next(t, ev)
	if e.Kind != lease.EventReclaimNotice || e.LeaseID != l.ID || !e.Deadline.Equal(m.timeAt(4)) {
		t.Fatalf("event %+v, want a reclaim notice for %s with deadline at block 4", e, l.ID)
	}
	if st := m.Providers()[0]; st.State != "reclaiming" {
		t.Errorf("provider state %s, want reclaiming", st.State)
	}
	if bids, _ := m.Bids(t.Context(), o.ID); len(bids) != 0 {
		t.Errorf("a reclaiming provider still offers %d bids", len(bids))
	}
	m.AdvanceBlocks(2)
	if got, _ := m.Lease(t.Context(), l.ID); got.State != lease.LeaseActive {
		t.Fatalf("lease closed before the deadline: %s", got.CloseReason)
	}
	m.AdvanceBlocks(1)
	e = next(t, ev)
	if got, _ := m.Lease(t.Context(), l.ID); e.Kind != lease.EventLeaseClosed || got.CloseReason != "provider flaky failed" || !got.ClosedAt.Equal(m.timeAt(4)) {
		t.Fatalf("at the deadline: event %+v, lease %v %q", e, got.State, got.CloseReason)
	}
	if st := m.Providers()[0]; st.State != "down" || st.Reliability >= 1 {
		t.Errorf("provider after failure: %+v", st)
	}
}

func TestFailedProviderBidsAgainAfterMTTR(t *testing.T) {
	cat, err := ParseCatalog([]byte(flakyCatalog))
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMarket(t, func(c *Config) { c.Catalog = cat })
	tenant, _ := signers(t)
	o, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.Workers = 3 })
	l := accept(t, m, tenant, bids[0], 1)[0]
	if err := m.Fail("flaky"); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Lease(t.Context(), l.ID); got.State != lease.LeaseClosed || got.CloseReason != "provider flaky failed" {
		t.Fatalf("lease of the failed provider: %v %q", got.State, got.CloseReason)
	}
	if bids, _ := m.Bids(t.Context(), o.ID); len(bids) != 0 {
		t.Errorf("a down provider offers %+v", bids)
	}
	m.AdvanceBlocks(3)
	if st := m.Providers()[0]; st.State != "down" || !st.UpAt.Equal(m.timeAt(4)) {
		t.Errorf("provider within its MTTR: %+v", st)
	}
	m.AdvanceBlocks(1)
	if bids, _ := m.Bids(t.Context(), o.ID); len(bids) != 1 || bids[0].ID == l.BidID || bids[0].Count != 2 {
		t.Errorf("recovered provider's bids: %+v, want one fresh bid for 2 leases", bids)
	}
}

func TestEscrowLowOnce(t *testing.T) {
	m := newTestMarket(t, func(c *Config) { c.EscrowLowBlocks = 5 })
	tenant, _ := signers(t)
	ev := collect(t, m)
	_, bids := openOrder(t, m, tenant, nil)
	b := bids[0]
	// A deposit for exactly 10 blocks.
	o2, bids2 := openOrder(t, m, tenant, func(o *lease.Order) {
		o.GPUModels = []string{b.GPUModel}
		o.Deposit = lease.FromMicroUSD(0)
		o.Deposit.Amount = b.PricePerBlock.Amount.MulInt64(10)
	})
	_ = o2
	l := accept(t, m, tenant, bids2[0], 1)[0]
	rate := l.Escrow.Rate.Amount
	m.AdvanceBlocks(5)
	select {
	case e := <-ev:
		t.Fatalf("event %+v with 5 blocks of escrow left", e)
	default:
	}
	m.AdvanceBlocks(1)
	e := next(t, ev)
	if e.Kind != lease.EventEscrowLow || e.LeaseID != l.ID || !e.Balance.Amount.Equal(l.Escrow.Deposit.Amount.Sub(rate.MulInt64(6))) {
		t.Fatalf("event %+v, want escrow-low for %s", e, l.ID)
	}
	m.AdvanceBlocks(2)
	before := m.Account(tenant.Address())
	m.AdvanceBlocks(int(l.Escrow.Deposit.Amount.Quo(rate).TruncateInt64()) - 8 + 1)
	e = next(t, ev)
	got, _ := m.Lease(t.Context(), l.ID)
	if e.Kind != lease.EventLeaseClosed || got.CloseReason != "escrow exhausted" || got.Escrow.Balance.IsNegative() {
		t.Fatalf("event %+v, lease %q balance %s; want closed for exhausted escrow", e, got.CloseReason, got.Escrow.Balance)
	}
	if after := m.Account(tenant.Address()); !after.Amount.Equal(before.Amount.Add(got.Escrow.Balance.Amount)) {
		t.Errorf("tenant account %s → %s, want the escrow's remainder %s back", before, after, got.Escrow.Balance)
	}
	if paid := m.Account(l.Provider); !paid.Amount.Equal(got.Escrow.Drawn.Amount) {
		t.Errorf("provider earned %s, escrow drew %s", paid, got.Escrow.Drawn)
	}
}

func TestSubmitBid(t *testing.T) {
	m := newTestMarket(t, nil)
	tenant, stranger := signers(t)
	o, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.GPUModels = []string{"RTX3090"} })
	if len(bids) == 0 {
		t.Fatal("no RTX3090 bids")
	}
	b := bids[0]
	p := m.byName[b.ProviderName]
	own, err := lease.GenerateSigner(lease.NewKeyring(), "p", ProviderKeySeed(42, b.ProviderName))
	if err != nil || own.Address() != p.addr {
		t.Fatalf("ProviderKeySeed does not give %s's key: %v", b.ProviderName, err)
	}

	forged := b
	forged.Count = 1
	_ = lease.SignBid(stranger, &forged)
	if err := m.SubmitBid(forged); !errors.Is(err, lease.ErrUnauthorized) {
		t.Errorf("bid signed by a stranger in the provider's name: %v, want ErrUnauthorized", err)
	}
	tampered := b
	tampered.PricePerBlock.Amount = b.PricePerBlock.Amount.QuoInt64(2)
	if err := m.SubmitBid(tampered); !errors.Is(err, lease.ErrUnauthorized) {
		t.Errorf("bid changed after signing: %v, want ErrUnauthorized", err)
	}
	over := b
	over.PricePerBlock = lease.PerBlock(o.MaxPricePerGPUHour, 1, m.cfg.BlockTime)
	over.PricePerBlock.Amount = over.PricePerBlock.Amount.Add(over.PricePerBlock.Amount.QuoInt64(1000))
	_ = lease.SignBid(own, &over)
	if err := m.SubmitBid(over); !errors.Is(err, lease.ErrOverMaxPrice) {
		t.Errorf("bid above the order's max: %v, want ErrOverMaxPrice", err)
	}
	cheaper := b
	cheaper.ID = "external-1"
	cheaper.Count = 1
	cheaper.PricePerBlock.Amount = b.PricePerBlock.Amount.QuoInt64(2)
	_ = lease.SignBid(own, &cheaper)
	if err := m.SubmitBid(cheaper); err != nil {
		t.Fatalf("valid external bid: %v", err)
	}
	now, _ := m.Bids(t.Context(), o.ID)
	found := false
	for _, x := range now {
		if x.ID == b.ID {
			t.Errorf("bid %s was not replaced by the provider's new bid", b.ID)
		}
		found = found || x.ID == "external-1"
	}
	if !found {
		t.Errorf("external bid not listed: %+v", now)
	}
	l := accept(t, m, tenant, lease.Bid{ID: "external-1", OrderID: o.ID}, 1)[0]
	if !l.PricePerBlock.Amount.Equal(cheaper.PricePerBlock.Amount) {
		t.Errorf("lease at %s, bid was %s", l.PricePerBlock, cheaper.PricePerBlock)
	}
}

// TestNoGPULeasedTwice fills a provider from one order and checks its bid
// on another order shrinks and then lapses.
func TestNoGPULeasedTwice(t *testing.T) {
	m := newTestMarket(t, nil)
	tenant, _ := signers(t)
	only := func(o *lease.Order) { o.GPUModels = []string{"RTX4090"}; o.Region = "eu-central"; o.Workers = 2 } // gamer-rig-berlin: 2 GPUs
	_, a := openOrder(t, m, tenant, only)
	_, b := openOrder(t, m, tenant, only)
	if len(a) != 1 || len(b) != 1 || a[0].Count != 2 || b[0].Count != 2 {
		t.Fatalf("bids %+v / %+v, want one bid for 2 leases on each order", a, b)
	}
	accept(t, m, tenant, a[0], 1)
	if now, _ := m.Bids(t.Context(), b[0].OrderID); len(now) != 1 || now[0].Count != 1 ||
		lease.Verify(now[0].Provider, lease.BidSignBytes(now[0]), lease.Signed{PubKey: now[0].PubKey, Signature: now[0].Signature}) != nil {
		t.Fatalf("other order's bid after 1 of 2 GPUs leased: %+v, want count 1, re-signed", now)
	}
	req, _ := lease.SignAccept(tenant, lease.AcceptRequest{Tenant: tenant.Address(), OrderID: b[0].OrderID, BidID: b[0].ID, Count: 2})
	if _, err := m.Accept(t.Context(), req); !errors.Is(err, lease.ErrBidExhausted) {
		t.Fatalf("accepting 2 when 1 GPU is free: %v, want ErrBidExhausted", err)
	}
	accept(t, m, tenant, b[0], 1)
	if _, err := m.Accept(t.Context(), req); !errors.Is(err, lease.ErrBidExhausted) {
		t.Fatalf("accepting with no GPU free: %v, want ErrBidExhausted", err)
	}
	if st := m.Providers(); st[6].Name != "gamer-rig-berlin" || st[6].GPUs[0].Free != 0 {
		t.Errorf("provider status %+v", st[6])
	}
}

func TestSlowSubscriberIsDisconnected(t *testing.T) {
	m := newTestMarket(t, func(c *Config) { c.EventBuffer = 2; c.EscrowLowBlocks = 1_000_000 })
	tenant, _ := signers(t)
	release := make(chan struct{})
	errc := subscribe(t, m, func(lease.Event) error { <-release; return nil })
	_, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.Workers = 8; o.GPUModels = []string{"H100-SXM"} })
	accept(t, m, tenant, bids[0], 5)
	m.AdvanceBlocks(1) // 5 escrow-low events: more than the subscriber's buffer
	close(release)
	select {
	case err := <-errc:
		if !errors.Is(err, lease.ErrUnavailable) {
			t.Fatalf("slow subscriber: %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow subscriber was not disconnected")
	}
	if m.Subscribers() != 0 {
		t.Errorf("%d subscribers left", m.Subscribers())
	}
}

func TestFailUnknownProviderListsProviders(t *testing.T) {
	m := newTestMarket(t, nil)
	err := m.Fail("nobody")
	if !errors.Is(err, lease.ErrNotFound) || !strings.Contains(err.Error(), "hopper-east") {
		t.Errorf("Fail(nobody): %v, want ErrNotFound listing providers", err)
	}
}

func TestShutdown(t *testing.T) {
	m, err := New(Config{BlockTime: 5 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "blocks from the ticker", func() bool { return m.Height() >= 2 })
	errc := make(chan error, 1)
	go func() { errc <- m.Events(context.Background(), func(lease.Event) error { return nil }) }()
	waitFor(t, "the subscriber", func() bool { return m.Subscribers() == 1 })
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, lease.ErrUnavailable) {
		t.Errorf("Events after shutdown: %v", err)
	}
	if _, err := m.Bids(context.Background(), "x"); !errors.Is(err, lease.ErrUnavailable) {
		t.Errorf("Bids after shutdown: %v", err)
	}
}

// TestConcurrentAcceptsNeverOverfill races acceptances of one bid.
func TestConcurrentAcceptsNeverOverfill(t *testing.T) {
	m := newTestMarket(t, nil)
	tenant, _ := signers(t)
	_, bids := openOrder(t, m, tenant, func(o *lease.Order) { o.Workers = 8; o.GPUModels = []string{"RTX4090"}; o.Region = "eu-central" })
	b := bids[0] // gamer-rig-berlin: 2 GPUs
	req, _ := lease.SignAccept(tenant, lease.AcceptRequest{Tenant: tenant.Address(), OrderID: b.OrderID, BidID: b.ID, Count: 1})
	errs := make(chan error, 8)
	for range 8 {
		go func() { _, err := m.Accept(context.Background(), req); errs <- err }()
	}
	ok := 0
	for range 8 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, lease.ErrBidExhausted):
			t.Errorf("Accept: %v", err)
		}
	}
	if ok != b.Count {
		t.Errorf("%d acceptances of a bid for %d leases succeeded", ok, b.Count)
	}
}
