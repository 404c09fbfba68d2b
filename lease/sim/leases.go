package sim

import (
	"context"
	"fmt"
	"slices"

	"cosmossdk.io/math"
	"github.com/megha-ml/megha/lease"
)

type leaseState struct {
	lease   lease.Lease
	prov    *provider
	gpus    []int // the provider's GPU indices of lease.GPUModel
	lowSent bool  // EventEscrowLow sent since the last deposit
}

// Accept turns Count slots of a bid into leases: it checks the tenant's
// signature, the order, the bid's remaining count and the provider's free
// GPUs, moves Count × Deposit from the tenant's account into escrow, and
// starts a worker per lease. All or nothing.
func (m *Market) Accept(_ context.Context, req lease.AcceptRequest) ([]lease.Lease, error) {
	if err := verifyTenant(req.Tenant, lease.AcceptSignBytes(req), req.Signed); err != nil {
		return nil, err
	}
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if req.Count < 1 || req.Count > maxWorkersPerOrder {
		return nil, fmt.Errorf("%w: count %d: want 1..%d leases", lease.ErrInvalid, req.Count, maxWorkersPerOrder)
	}
	os, ok := m.orders[req.OrderID]
	if !ok {
		return nil, fmt.Errorf("%w: order %q", lease.ErrNotFound, req.OrderID)
	}
	o := os.order
	if o.Tenant != req.Tenant {
		return nil, fmt.Errorf("%w: order %s belongs to another tenant", lease.ErrUnauthorized, o.ID)
	}
	if !o.Open {
		return nil, fmt.Errorf("%w: order %s", lease.ErrOrderClosed, o.ID)
	}
	bs, ok := m.bids[req.BidID]
	if !ok {
		return nil, fmt.Errorf("%w: bid %q", lease.ErrNotFound, req.BidID)
	}
	if bs.order != os {
		return nil, fmt.Errorf("%w: bid %s is for order %s, not %s", lease.ErrInvalid, req.BidID, bs.bid.OrderID, o.ID)
	}
	if left := m.refresh(bs); req.Count > left {
		return nil, fmt.Errorf("%w: bid %s from %s offers %d more leases, asked for %d", lease.ErrBidExhausted, bs.bid.ID, bs.prov.spec.Name, left, req.Count)
	}
	need := o.Deposit.Amount.MulInt64(int64(req.Count))
	if have := m.account(req.Tenant); have.LT(need) {
		return nil, fmt.Errorf("%w: %d × deposit %s = %s, account has %s", lease.ErrInsufficient, req.Count,
			lease.Format(o.Deposit), lease.Format(m.coin(need)), lease.Format(m.coin(have)))
	}

	b := bs.bid
	p := bs.prov
	made := make([]*leaseState, 0, req.Count)
	for range req.Count {
		m.nextLease++
		id := fmt.Sprintf("lease-%06d", m.nextLease)
		ls := &leaseState{prov: p, gpus: p.reserve(b.GPUModel, b.GPUs, id)}
		ls.lease = lease.Lease{
			ID: id, OrderID: o.ID, BidID: b.ID, Provider: p.addr, Tenant: o.Tenant,
			ProviderName: p.spec.Name, GPUModel: b.GPUModel, GPUs: b.GPUs, VRAMGiB: b.VRAMGiB, Region: b.Region,
			PricePerBlock: b.PricePerBlock, State: lease.LeaseActive, CreatedAt: m.now(),
			Escrow: lease.Escrow{Deposit: o.Deposit, Drawn: lease.Zero(m.denom), Balance: o.Deposit, Rate: b.PricePerBlock},
		}
		made = append(made, ls)
		if m.cfg.Launcher == nil {
			continue
		}
		eps, err := m.cfg.Launcher.Start(ls.lease)
		if err != nil {
			for _, done := range made {
				p.release(b.GPUModel, done.gpus, done.lease.ID)
				if done != ls {
					m.stopWorker(done.lease.ID)
				}
			}
			return nil, fmt.Errorf("%w: provider %s cannot start a worker for %s: %v", lease.ErrUnavailable, p.spec.Name, id, err)
		}
		ls.lease.Endpoints = eps
	}

	m.accounts[req.Tenant] = m.account(req.Tenant).Sub(need)
	out := make([]lease.Lease, len(made))
	for i, ls := range made {
		m.leases[ls.lease.ID] = ls
		m.leaseList = append(m.leaseList, ls)
		m.active = append(m.active, ls)
		out[i] = cloneLease(ls.lease)
	}
	os.accepted += req.Count
	// The bid offers what is left of it: its count less what was just
	// accepted (a provider with more free GPUs than it bid must not be
	// taken for more), and no more than the GPUs it still has free.
	bs.bid.Count -= req.Count
	if bs.bid.Count > 0 {
		if err := lease.SignBid(bs.prov.signer, &bs.bid); err != nil {
			m.log.Error("provider cannot re-sign its bid", "provider", bs.prov.spec.Name, "error", err)
			bs.bid.Count = 0
		}
	}
	m.refresh(bs)
	if os.accepted >= o.Workers {
		m.closeOrder(os)
	}
	m.log.Info("bid accepted", "order_id", o.ID, "bid_id", b.ID, "provider", p.spec.Name, "leases", req.Count)
	return out, nil
}

// Close ends a lease for its tenant and returns the unspent escrow.
func (m *Market) Close(_ context.Context, req lease.CloseRequest) (lease.Lease, error) {
	if err := verifyTenant(req.Tenant, lease.CloseSignBytes(req, false), req.Signed); err != nil {
		return lease.Lease{}, err
	}
	if err := m.lock(); err != nil {
		return lease.Lease{}, err
	}
	defer m.mu.Unlock()
	ls, err := m.tenantLease(req.Tenant, req.LeaseID)
	if err != nil {
		return lease.Lease{}, err
	}
	reason := "closed by tenant"
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	m.closeLease(ls, reason)
	return cloneLease(ls.lease), nil
}

// Deposit moves Amount from the tenant's account into a lease's escrow.
func (m *Market) Deposit(_ context.Context, req lease.DepositRequest) (lease.Lease, error) {
	if err := verifyTenant(req.Tenant, lease.DepositSignBytes(req), req.Signed); err != nil {
		return lease.Lease{}, err
	}
	if err := m.lock(); err != nil {
		return lease.Lease{}, err
	}
	defer m.mu.Unlock()
	if err := m.checkAmount("deposit amount", req.Amount); err != nil {
		return lease.Lease{}, err
	}
	ls, err := m.tenantLease(req.Tenant, req.LeaseID)
	if err != nil {
		return lease.Lease{}, err
	}
	if have := m.account(req.Tenant); have.LT(req.Amount.Amount) {
		return lease.Lease{}, fmt.Errorf("%w: deposit %s, account has %s", lease.ErrInsufficient, lease.Format(req.Amount), lease.Format(m.coin(have)))
	}
	m.accounts[req.Tenant] = m.account(req.Tenant).Sub(req.Amount.Amount)
	e := &ls.lease.Escrow
	e.Deposit = m.coin(e.Deposit.Amount.Add(req.Amount.Amount))
	e.Balance = m.coin(e.Balance.Amount.Add(req.Amount.Amount))
	if !m.escrowLow(e) {
		ls.lowSent = false
	}
	return cloneLease(ls.lease), nil
}

// tenantLease finds an active lease of tenant.
func (m *Market) tenantLease(tenant, id string) (*leaseState, error) {
	ls, ok := m.leases[id]
	if !ok {
		return nil, fmt.Errorf("%w: lease %q", lease.ErrNotFound, id)
	}
	if ls.lease.Tenant != tenant {
		return nil, fmt.Errorf("%w: lease %s belongs to another tenant", lease.ErrUnauthorized, id)
	}
	if ls.lease.State != lease.LeaseActive {
		return nil, fmt.Errorf("%w: lease %s closed at %s (%s)", lease.ErrLeaseClosed, id, ls.lease.ClosedAt.Format("15:04:05"), ls.lease.CloseReason)
	}
	return ls, nil
}

func (m *Market) escrowLow(e *lease.Escrow) bool {
	return e.Balance.Amount.LT(e.Rate.Amount.MulInt64(m.cfg.EscrowLowBlocks))
}

// closeLease ends an active lease: the escrow's balance goes back to the
// tenant (Escrow keeps its figures as they were at close), the GPUs are
// freed, the worker stopped, and subscribers told.
func (m *Market) closeLease(ls *leaseState, reason string) {
	l := &ls.lease
	l.State = lease.LeaseClosed
	l.ClosedAt = m.now()
	l.CloseReason = reason
	m.accounts[l.Tenant] = m.account(l.Tenant).Add(l.Escrow.Balance.Amount)
	ls.prov.release(l.GPUModel, ls.gpus, l.ID)
	m.active = slices.DeleteFunc(m.active, func(x *leaseState) bool { return x == ls })
	m.rebid = true
	m.stopWorker(l.ID)
	m.publish(lease.Event{Kind: lease.EventLeaseClosed, LeaseID: l.ID, Provider: l.Provider, Reason: reason, At: l.ClosedAt})
	m.log.Info("lease closed", "lease_id", l.ID, "provider", l.ProviderName, "reason", reason, "refund", lease.Format(l.Escrow.Balance))
}

// stopWorker stops a lease's worker in the background (Stop may wait for
// a process to exit; the market lock is held here).
func (m *Market) stopWorker(id string) {
	if m.cfg.Launcher == nil {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		if err := m.cfg.Launcher.Stop(id); err != nil {
			m.log.Warn("cannot stop lease worker", "lease_id", id, "error", err)
		}
	}()
}

// Lease returns a lease.
func (m *Market) Lease(_ context.Context, id string) (lease.Lease, error) {
	if err := m.lock(); err != nil {
		return lease.Lease{}, err
	}
	defer m.mu.Unlock()
	ls, ok := m.leases[id]
	if !ok {
		return lease.Lease{}, fmt.Errorf("%w: lease %q", lease.ErrNotFound, id)
	}
	return cloneLease(ls.lease), nil
}

// Leases lists the leases f selects, oldest first.
func (m *Market) Leases(_ context.Context, f lease.LeaseFilter) ([]lease.Lease, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	src := m.leaseList
	if f.State == lease.LeaseActive {
		src = m.active
	}
	var out []lease.Lease
	for _, ls := range src {
		l := &ls.lease
		if (f.Tenant == "" || l.Tenant == f.Tenant) && (f.OrderID == "" || l.OrderID == f.OrderID) && (f.State == 0 || l.State == f.State) {
			out = append(out, cloneLease(*l))
		}
	}
	return out, nil
}

func cloneLease(l lease.Lease) lease.Lease {
	l.Endpoints = slices.Clone(l.Endpoints)
	return l
}

// draw pays one block of a lease from its escrow to its provider, or
// closes it when the escrow cannot pay.
func (m *Market) draw(ls *leaseState) {
	e := &ls.lease.Escrow
	if e.Balance.Amount.LT(e.Rate.Amount) {
		m.closeLease(ls, "escrow exhausted")
		return
	}
	e.Balance = m.coin(e.Balance.Amount.Sub(e.Rate.Amount))
	e.Drawn = m.coin(e.Drawn.Amount.Add(e.Rate.Amount))
	e.Blocks++
	p := ls.prov
	earned, ok := m.accounts[p.addr]
	if !ok {
		earned = math.LegacyZeroDec()
	}
	m.accounts[p.addr] = earned.Add(e.Rate.Amount)
	if !ls.lowSent && m.escrowLow(e) {
		ls.lowSent = true
		m.publish(lease.Event{Kind: lease.EventEscrowLow, LeaseID: ls.lease.ID, Provider: p.addr,
			Reason: fmt.Sprintf("escrow pays for fewer than %d blocks", m.cfg.EscrowLowBlocks), Balance: e.Balance, At: m.now()})
	}
}
