// Package leasetest is the conformance suite every lease.Market passes:
// the embedded market in-process (lease/sim) and over gRPC
// (lease/grpcmarket), and any later backend.
//
// The suite uses only the lease.Market interface, plus two hooks a
// harness provides: Advance (make blocks) and Fail (fail a provider by
// name). Subtests that need a hook missing from the harness are skipped.
// Each subtest calls setup for a fresh market, which must:
//
//   - make blocks only through Advance (no ticker), so escrow figures are
//     exact;
//   - not fail providers on its own (no random failures);
//   - fund Tenant with at least $1,000 worth of the market's denomination;
//   - have providers that bid on an order for 1 GPU of any model at up to
//     $5 per GPU-hour, at least one offering 2 leases, and none whose floor
//     is below $0.000001 per GPU-hour.
package leasetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	"github.com/megha-ml/megha/lease"
)

// Harness is one market under test.
type Harness struct {
	Market lease.Market
	// Tenant signs the suite's requests; Stranger is another key, for
	// forgeries.
	Tenant, Stranger *lease.Signer
	// Advance makes blocks; nil skips the escrow subtests.
	Advance func(t *testing.T, blocks int)
	// Fail fails the named provider now; nil skips the failure subtest.
	Fail func(t *testing.T, provider string)
}

// Run runs the suite; setup returns a fresh market for each subtest.
func Run(t *testing.T, setup func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"Params", testParams},
		{"ImpossibleOrder", testImpossibleOrder},
		{"ForgedOrder", testForgedOrder},
		{"Bids", testBids},
		{"NoBidsBelowFloor", testNoBidsBelowFloor},
		{"Accept", testAccept},
		{"AcceptBeyondCount", testAcceptBeyondCount},
		{"ForgedAccept", testForgedAccept},
		{"CloseOrder", testCloseOrder},
		{"Close", testClose},
		{"EscrowDrawnUntilDry", testEscrowDry},
		{"DepositExtends", testDeposit},
		{"ProviderFailure", testProviderFailure},
		{"Events", testEvents},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			p, err := h.Market.Params(ctx)
			if err != nil {
				t.Fatalf("Params: %v", err)
			}
			tc.fn(t, &suite{h: h, ctx: ctx, p: p})
		})
	}
}

type suite struct {
	h   Harness
	ctx context.Context
	p   lease.Params
}

// usd is dollars in the market's denomination (micro-units).
func (s *suite) usd(t *testing.T, dollars string) sdk.DecCoin {
	t.Helper()
	d, err := math.LegacyNewDecFromStr(dollars)
	if err != nil {
		t.Fatal(err)
	}
	return sdk.NewDecCoinFromDec(s.p.Denom, d.MulInt64(lease.MicrosPerUnit))
}

// order builds the suite's default order: 1 GPU of any model, 2 workers,
// up to $5 per GPU-hour, $10 deposit; edit adjusts it.
func (s *suite) order(t *testing.T, edit func(*lease.Order)) lease.Order {
	o := lease.Order{Tenant: s.h.Tenant.Address(), GPUsPerWorker: 1, Workers: 2,
		MaxPricePerGPUHour: s.usd(t, "5"), Deposit: s.usd(t, "10")}
	if edit != nil {
		edit(&o)
	}
	return o
}

func (s *suite) create(t *testing.T, o lease.Order) (lease.Order, error) {
	t.Helper()
	req, err := lease.SignOrder(s.h.Tenant, o)
	if err != nil {
		t.Fatal(err)
	}
	return s.h.Market.CreateOrder(s.ctx, req)
}

// open creates an order and returns it with its bids (at least one).
func (s *suite) open(t *testing.T, edit func(*lease.Order)) (lease.Order, []lease.Bid) {
	t.Helper()
	o, err := s.create(t, s.order(t, edit))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	bids := s.bids(t, o.ID)
	if len(bids) == 0 {
		t.Fatalf("order %s got no bids", o.ID)
	}
	return o, bids
}

func (s *suite) bids(t *testing.T, orderID string) []lease.Bid {
	t.Helper()
	bids, err := s.h.Market.Bids(s.ctx, orderID)
	if err != nil {
		t.Fatalf("Bids(%s): %v", orderID, err)
	}
	return bids
}

func (s *suite) accept(t *testing.T, signer *lease.Signer, orderID, bidID string, count int) ([]lease.Lease, error) {
	t.Helper()
	req, err := lease.SignAccept(signer, lease.AcceptRequest{Tenant: s.h.Tenant.Address(), OrderID: orderID, BidID: bidID, Count: count})
	if err != nil {
		t.Fatal(err)
	}
	return s.h.Market.Accept(s.ctx, req)
}

// lease1 opens an order (edit applies) and accepts one lease from the
// priciest bid (the fewest blocks per deposit).
func (s *suite) lease1(t *testing.T, edit func(*lease.Order)) (lease.Order, lease.Lease) {
	t.Helper()
	o, bids := s.open(t, edit)
	b := bids[0]
	for _, x := range bids[1:] {
		if x.PricePerBlock.Amount.GT(b.PricePerBlock.Amount) {
			b = x
		}
	}
	ls, err := s.accept(t, s.h.Tenant, o.ID, b.ID, 1)
	if err != nil {
		t.Fatalf("Accept(%s, 1): %v", b.ID, err)
	}
	if len(ls) != 1 {
		t.Fatalf("Accept(%s, 1) made %d leases", b.ID, len(ls))
	}
	return o, ls[0]
}

func (s *suite) close(t *testing.T, signer *lease.Signer, id string) (lease.Lease, error) {
	t.Helper()
	req, err := lease.SignClose(signer, lease.CloseRequest{Tenant: s.h.Tenant.Address(), LeaseID: id, Reason: "conformance"}, false)
	if err != nil {
		t.Fatal(err)
	}
	return s.h.Market.Close(s.ctx, req)
}

func (s *suite) get(t *testing.T, id string) lease.Lease {
	t.Helper()
	l, err := s.h.Market.Lease(s.ctx, id)
	if err != nil {
		t.Fatalf("Lease(%s): %v", id, err)
	}
	return l
}

func (s *suite) leaseCount(t *testing.T, f lease.LeaseFilter) int {
	t.Helper()
	ls, err := s.h.Market.Leases(s.ctx, f)
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	return len(ls)
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func eqCoin(t *testing.T, what string, got, want sdk.DecCoin) {
	t.Helper()
	if got.Denom != want.Denom || !got.Amount.Equal(want.Amount) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func testParams(t *testing.T, s *suite) {
	if s.p.Denom == "" || sdk.ValidateDenom(s.p.Denom) != nil {
		t.Errorf("denom %q is not a valid denomination", s.p.Denom)
	}
	if s.p.BlockTime <= 0 {
		t.Errorf("block time %v, want > 0", s.p.BlockTime)
	}
}

func testImpossibleOrder(t *testing.T, s *suite) {
	before := s.leaseCount(t, lease.LeaseFilter{})
	_, err := s.create(t, s.order(t, func(o *lease.Order) { o.GPUModels = []string{"H100-SXM", "GTX-9999"} }))
	wantErr(t, "order for an unknown GPU model", err, lease.ErrNoSuchGPUType)
	if !strings.Contains(err.Error(), "GTX-9999") {
		t.Errorf("error %q does not name the unknown model", err)
	}
	_, err = s.create(t, s.order(t, func(o *lease.Order) { o.Workers = 0 }))
	wantErr(t, "order for zero workers", err, lease.ErrInvalid)
	_, err = s.create(t, s.order(t, func(o *lease.Order) { o.GPUsPerWorker = 0 }))
	wantErr(t, "order for zero GPUs per worker", err, lease.ErrInvalid)
	_, err = s.create(t, s.order(t, func(o *lease.Order) { o.Deposit = lease.Zero(s.p.Denom) }))
	wantErr(t, "order with no deposit", err, lease.ErrInvalid)
	_, err = s.create(t, s.order(t, func(o *lease.Order) { o.MaxPricePerGPUHour = sdk.NewDecCoinFromDec("notourcoin", math.LegacyNewDec(1)) }))
	wantErr(t, "order priced in another denomination", err, lease.ErrInvalid)
	if after := s.leaseCount(t, lease.LeaseFilter{}); after != before {
		t.Errorf("refused orders changed the lease count from %d to %d", before, after)
	}
}

func testForgedOrder(t *testing.T, s *suite) {
	o := s.order(t, nil)
	req, err := lease.SignOrder(s.h.Stranger, o) // names Tenant, signed by Stranger
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.h.Market.CreateOrder(s.ctx, req)
	wantErr(t, "order signed by another key", err, lease.ErrUnauthorized)
	req, _ = lease.SignOrder(s.h.Tenant, o)
	req.Order.Workers = 3 // tampered after signing
	_, err = s.h.Market.CreateOrder(s.ctx, req)
	wantErr(t, "order changed after signing", err, lease.ErrUnauthorized)
}

func testBids(t *testing.T, s *suite) {
	for _, max := range []string{"5", "0.5"} {
		o, err := s.create(t, s.order(t, func(o *lease.Order) { o.MaxPricePerGPUHour = s.usd(t, max) }))
		if err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}
		if !o.Open || o.ID == "" || o.Tenant != s.h.Tenant.Address() {
			t.Errorf("order = %+v, want open with an ID, for the tenant", o)
		}
		bids := s.bids(t, o.ID)
		if len(bids) == 0 {
			t.Fatalf("no bids at up to $%s per GPU-hour", max)
		}
		cap := lease.PerBlock(o.MaxPricePerGPUHour, o.GPUsPerWorker, s.p.BlockTime)
		for _, b := range bids {
			if b.OrderID != o.ID || b.GPUs != o.GPUsPerWorker || b.Count < 1 || b.Count > o.Workers {
				t.Errorf("bid %s: order %s, %d GPUs, count %d; want order %s, %d GPUs, count 1..%d",
					b.ID, b.OrderID, b.GPUs, b.Count, o.ID, o.GPUsPerWorker, o.Workers)
			}
			if b.PricePerBlock.Denom != s.p.Denom || !b.PricePerBlock.Amount.IsPositive() || b.PricePerBlock.Amount.GT(cap.Amount) {
				t.Errorf("bid %s from %s: %s per block, want positive and at most %s (the order's max)", b.ID, b.ProviderName, b.PricePerBlock, cap)
			}
			if err := lease.Verify(b.Provider, lease.BidSignBytes(b), lease.Signed{PubKey: b.PubKey, Signature: b.Signature}); err != nil {
				t.Errorf("bid %s from %s: signature: %v", b.ID, b.ProviderName, err)
			}
		}
	}
}

func testNoBidsBelowFloor(t *testing.T, s *suite) {
	o, err := s.create(t, s.order(t, func(o *lease.Order) {
		o.MaxPricePerGPUHour = sdk.NewDecCoinFromDec(s.p.Denom, math.LegacyNewDecWithPrec(1, 2)) // 0.01 micro-unit
	}))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	if bids := s.bids(t, o.ID); len(bids) != 0 {
		t.Errorf("got %d bids at a max below every floor, e.g. %s at %s", len(bids), bids[0].ProviderName, bids[0].PricePerBlock)
	}
}

func testAccept(t *testing.T, s *suite) {
	o, bids := s.open(t, nil)
	b := bids[0]
	ls, err := s.accept(t, s.h.Tenant, o.ID, b.ID, 1)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if len(ls) != 1 {
		t.Fatalf("Accept(1) made %d leases", len(ls))
	}
	l := ls[0]
	if l.ID == "" || l.OrderID != o.ID || l.BidID != b.ID || l.Provider != b.Provider || l.Tenant != o.Tenant ||
		l.GPUModel != b.GPUModel || l.GPUs != b.GPUs || l.State != lease.LeaseActive {
		t.Errorf("lease = %+v\ndoes not match order %s and bid %+v", l, o.ID, b)
	}
	eqCoin(t, "price", l.PricePerBlock, b.PricePerBlock)
	eqCoin(t, "escrow deposit", l.Escrow.Deposit, o.Deposit)
	eqCoin(t, "escrow balance", l.Escrow.Balance, o.Deposit)
	eqCoin(t, "escrow rate", l.Escrow.Rate, b.PricePerBlock)
	if !l.Escrow.Drawn.Amount.IsZero() || l.Escrow.Blocks != 0 {
		t.Errorf("new escrow drew %s over %d blocks", l.Escrow.Drawn, l.Escrow.Blocks)
	}
	got := s.get(t, l.ID)
	if got.ID != l.ID || got.State != lease.LeaseActive {
		t.Errorf("Lease(%s) = %+v", l.ID, got)
	}
	if n := s.leaseCount(t, lease.LeaseFilter{OrderID: o.ID, State: lease.LeaseActive}); n != 1 {
		t.Errorf("%d active leases for the order, want 1", n)
	}
	_, err = s.h.Market.Lease(s.ctx, "no-such-lease")
	wantErr(t, "Lease of an unknown ID", err, lease.ErrNotFound)
}

func testAcceptBeyondCount(t *testing.T, s *suite) {
	o, bids := s.open(t, nil)
	b := bids[0]
	for _, x := range bids {
		if x.Count > b.Count {
			b = x
		}
	}
	_, err := s.accept(t, s.h.Tenant, o.ID, b.ID, b.Count+1)
	wantErr(t, "accepting more than the bid offers", err, lease.ErrBidExhausted)
	if n := s.leaseCount(t, lease.LeaseFilter{OrderID: o.ID}); n != 0 {
		t.Fatalf("refused acceptance left %d leases", n)
	}
	for _, x := range s.bids(t, o.ID) {
		if x.ID == b.ID && x.Count != b.Count {
			t.Errorf("refused acceptance changed the bid's count from %d to %d", b.Count, x.Count)
		}
	}
	if _, err := s.accept(t, s.h.Tenant, o.ID, b.ID, b.Count); err != nil {
		t.Fatalf("accepting the bid's full count %d: %v", b.Count, err)
	}
	_, err = s.accept(t, s.h.Tenant, o.ID, b.ID, 1)
	if !errors.Is(err, lease.ErrBidExhausted) && !errors.Is(err, lease.ErrOrderClosed) {
		t.Errorf("accepting a used-up bid again: got %v, want ErrBidExhausted or ErrOrderClosed", err)
	}
	if n := s.leaseCount(t, lease.LeaseFilter{OrderID: o.ID}); n != b.Count {
		t.Errorf("%d leases for the order, want %d", n, b.Count)
	}
}

func testForgedAccept(t *testing.T, s *suite) {
	o, bids := s.open(t, nil)
	_, err := s.accept(t, s.h.Stranger, o.ID, bids[0].ID, 1)
	wantErr(t, "acceptance signed by another key", err, lease.ErrUnauthorized)
	req, _ := lease.SignAccept(s.h.Tenant, lease.AcceptRequest{Tenant: s.h.Tenant.Address(), OrderID: o.ID, BidID: bids[0].ID, Count: 1})
	req.Count = 2 // tampered
	_, err = s.h.Market.Accept(s.ctx, req)
	wantErr(t, "acceptance changed after signing", err, lease.ErrUnauthorized)
	if n := s.leaseCount(t, lease.LeaseFilter{OrderID: o.ID}); n != 0 {
		t.Errorf("forged acceptances made %d leases", n)
	}
}

func testCloseOrder(t *testing.T, s *suite) {
	o, bids := s.open(t, nil)
	req := lease.CloseRequest{Tenant: s.h.Tenant.Address(), LeaseID: o.ID, Reason: "conformance"}
	forged, _ := lease.SignClose(s.h.Stranger, req, true)
	wantErr(t, "order withdrawal signed by another key", s.h.Market.CloseOrder(s.ctx, forged), lease.ErrUnauthorized)
	signed, _ := lease.SignClose(s.h.Tenant, req, true)
	if err := s.h.Market.CloseOrder(s.ctx, signed); err != nil {
		t.Fatalf("CloseOrder: %v", err)
	}
	wantErr(t, "withdrawing a closed order", s.h.Market.CloseOrder(s.ctx, signed), lease.ErrOrderClosed)
	_, err := s.accept(t, s.h.Tenant, o.ID, bids[0].ID, 1)
	wantErr(t, "accepting a bid of a withdrawn order", err, lease.ErrOrderClosed)
}

func testClose(t *testing.T, s *suite) {
	_, l := s.lease1(t, nil)
	_, err := s.close(t, s.h.Stranger, l.ID)
	wantErr(t, "close signed by another key", err, lease.ErrUnauthorized)
	c, err := s.close(t, s.h.Tenant, l.ID)
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c.State != lease.LeaseClosed || c.CloseReason == "" {
		t.Errorf("closed lease: state %v, reason %q; want closed with a reason", c.State, c.CloseReason)
	}
	eqCoin(t, "refund (escrow balance at close)", c.Escrow.Balance, l.Escrow.Deposit)
	if got := s.get(t, l.ID); got.State != lease.LeaseClosed {
		t.Errorf("Lease after close: state %v", got.State)
	}
	_, err = s.close(t, s.h.Tenant, l.ID)
	wantErr(t, "closing a closed lease", err, lease.ErrLeaseClosed)
	if n := s.leaseCount(t, lease.LeaseFilter{State: lease.LeaseActive}); n != 0 {
		t.Errorf("%d active leases after close", n)
	}
}

// blocksFor is how many whole blocks balance pays at rate.
func blocksFor(balance, rate sdk.DecCoin) int {
	return int(balance.Amount.Quo(rate.Amount).TruncateInt64())
}

func testEscrowDry(t *testing.T, s *suite) {
	if s.h.Advance == nil {
		t.Skip("harness has no Advance")
	}
	ev := s.subscribe(t)
	// A deposit of 20 blocks at the order's max: at most a few thousand
	// blocks at any bid.
	_, l := s.lease1(t, func(o *lease.Order) {
		o.Workers = 1
		o.Deposit = sdk.NewDecCoinFromDec(s.p.Denom, lease.PerBlock(o.MaxPricePerGPUHour, 1, s.p.BlockTime).Amount.MulInt64(20))
	})
	n := blocksFor(l.Escrow.Deposit, l.Escrow.Rate)
	if n < 1 {
		t.Fatalf("deposit %s does not pay one block at %s", l.Escrow.Deposit, l.Escrow.Rate)
	}
	s.h.Advance(t, n)
	got := s.get(t, l.ID)
	if got.State != lease.LeaseActive || got.Escrow.Blocks != int64(n) {
		t.Fatalf("after %d blocks: state %v, %d blocks paid; want active, %d", n, got.State, got.Escrow.Blocks, n)
	}
	drawn := l.Escrow.Rate.Amount.MulInt64(int64(n))
	eqCoin(t, "drawn", got.Escrow.Drawn, sdk.NewDecCoinFromDec(s.p.Denom, drawn))
	eqCoin(t, "balance", got.Escrow.Balance, sdk.NewDecCoinFromDec(s.p.Denom, l.Escrow.Deposit.Amount.Sub(drawn)))
	s.h.Advance(t, 1)
	got = s.get(t, l.ID)
	if got.State != lease.LeaseClosed {
		t.Fatalf("escrow of %s at %s per block: still %v after %d blocks", l.Escrow.Deposit, l.Escrow.Rate, got.State, n+1)
	}
	if got.Escrow.Balance.Amount.IsNegative() || got.Escrow.Blocks != int64(n) {
		t.Errorf("dry escrow: balance %s, %d blocks paid; want ≥ 0 and %d", got.Escrow.Balance, got.Escrow.Blocks, n)
	}
	e := waitEvent(t, ev, func(e lease.Event) bool { return e.Kind == lease.EventLeaseClosed && e.LeaseID == l.ID })
	if e.Reason == "" {
		t.Errorf("lease-closed event has no reason")
	}
}

func testDeposit(t *testing.T, s *suite) {
	if s.h.Advance == nil {
		t.Skip("harness has no Advance")
	}
	_, l := s.lease1(t, func(o *lease.Order) {
		o.Workers = 1
		o.Deposit = sdk.NewDecCoinFromDec(s.p.Denom, lease.PerBlock(o.MaxPricePerGPUHour, 1, s.p.BlockTime).Amount.MulInt64(10))
	})
	n := blocksFor(l.Escrow.Deposit, l.Escrow.Rate)
	req := lease.DepositRequest{Tenant: s.h.Tenant.Address(), LeaseID: l.ID, Amount: l.Escrow.Deposit}
	forged, _ := lease.SignDeposit(s.h.Stranger, req)
	_, err := s.h.Market.Deposit(s.ctx, forged)
	wantErr(t, "deposit signed by another key", err, lease.ErrUnauthorized)
	signed, _ := lease.SignDeposit(s.h.Tenant, req)
	got, err := s.h.Market.Deposit(s.ctx, signed)
	if err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	double := sdk.NewDecCoinFromDec(s.p.Denom, l.Escrow.Deposit.Amount.MulInt64(2))
	eqCoin(t, "deposit after topping up", got.Escrow.Deposit, double)
	eqCoin(t, "balance after topping up", got.Escrow.Balance, double)
	s.h.Advance(t, n+1)
	if got = s.get(t, l.ID); got.State != lease.LeaseActive || got.Escrow.Blocks != int64(n+1) {
		t.Fatalf("topped-up lease after %d blocks: %v, %d blocks paid; want active, %d", n+1, got.State, got.Escrow.Blocks, n+1)
	}
	if _, err := s.close(t, s.h.Tenant, l.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.h.Market.Deposit(s.ctx, signed)
	wantErr(t, "deposit to a closed lease", err, lease.ErrLeaseClosed)
}

func testProviderFailure(t *testing.T, s *suite) {
	if s.h.Fail == nil {
		t.Skip("harness has no Fail")
	}
	ev := s.subscribe(t)
	_, l := s.lease1(t, nil)
	s.h.Fail(t, l.ProviderName)
	got := s.get(t, l.ID)
	if got.State != lease.LeaseClosed || got.CloseReason == "" {
		t.Fatalf("lease of failed provider %s: state %v, reason %q; want closed with a reason", l.ProviderName, got.State, got.CloseReason)
	}
	waitEvent(t, ev, func(e lease.Event) bool { return e.Kind == lease.EventLeaseClosed && e.LeaseID == l.ID })
}

func testEvents(t *testing.T, s *suite) {
	ev := s.subscribe(t)
	_, l := s.lease1(t, nil)
	if _, err := s.close(t, s.h.Tenant, l.ID); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, ev, func(e lease.Event) bool { return e.LeaseID == l.ID })
	if e.Kind != lease.EventLeaseClosed || e.Provider != l.Provider || e.At.IsZero() {
		t.Errorf("event = %+v, want lease-closed for %s from %s with a time", e, l.ID, l.Provider)
	}
}
