package sim

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/worker/gpu"
)

// maxWorkersPerOrder bounds one order (and so the bids and leases it makes).
const maxWorkersPerOrder = 1000

type orderState struct {
	order    lease.Order
	accepted int // leases accepted from it
	bids     []*bidState
}

type bidState struct {
	bid   lease.Bid
	prov  *provider
	order *orderState
}

// CreateOrder verifies the tenant's signature, validates the order, opens
// it, and lets every provider that can serve it bid.
func (m *Market) CreateOrder(_ context.Context, req lease.OrderRequest) (lease.Order, error) {
	o := req.Order
	if err := verifyTenant(o.Tenant, lease.OrderSignBytes(o), req.Signed); err != nil {
		return lease.Order{}, err
	}
	if err := m.lock(); err != nil {
		return lease.Order{}, err
	}
	defer m.mu.Unlock()
	if err := m.validateOrder(o); err != nil {
		return lease.Order{}, err
	}
	m.account(o.Tenant)
	m.nextOrder++
	o.ID = fmt.Sprintf("order-%06d", m.nextOrder)
	o.CreatedAt = m.now()
	o.Open = true
	o.GPUModels = slices.Clone(o.GPUModels)
	os := &orderState{order: o}
	m.orders[o.ID] = os
	m.open = append(m.open, os)
	for _, p := range m.providers {
		m.offer(os, p)
	}
	m.log.Info("order opened", "order_id", o.ID, "tenant", o.Tenant, "workers", o.Workers, "bids", len(os.bids))
	return cloneOrder(o), nil
}

// validateOrder refuses orders no provider of this market could ever
// serve, saying why.
func (m *Market) validateOrder(o lease.Order) error {
	if o.Workers < 1 || o.Workers > maxWorkersPerOrder {
		return fmt.Errorf("%w: workers %d: want 1..%d leases", lease.ErrInvalid, o.Workers, maxWorkersPerOrder)
	}
	if o.GPUsPerWorker < 1 || o.GPUsPerWorker > maxGPUsPerProvider {
		return fmt.Errorf("%w: gpus per worker %d: want 1..%d", lease.ErrInvalid, o.GPUsPerWorker, maxGPUsPerProvider)
	}
	for i, id := range o.GPUModels {
		if _, ok := gpu.Lookup(id); ok {
			continue
		}
		hint := ""
		if mod, ok := gpu.Normalize(id); ok {
			hint = fmt.Sprintf(" (did you mean %s?)", mod.ID)
		}
		return fmt.Errorf("%w: gpu model %q (gpu_models[%d])%s; known models: %s",
			lease.ErrNoSuchGPUType, id, i, hint, strings.Join(gpu.ModelIDs(), ", "))
	}
	if o.MinVRAMGiB < 0 {
		return fmt.Errorf("%w: min VRAM %d GiB is negative", lease.ErrInvalid, o.MinVRAMGiB)
	}
	if err := m.checkAmount("max price per GPU-hour", o.MaxPricePerGPUHour); err != nil {
		return err
	}
	if err := m.checkAmount("deposit", o.Deposit); err != nil {
		return err
	}
	if o.Region != "" && !slices.ContainsFunc(m.providers, func(p *provider) bool { return p.spec.Region == o.Region }) {
		return fmt.Errorf("%w: region %q: no provider there; regions: %s", lease.ErrInvalid, o.Region, strings.Join(m.regions(), ", "))
	}
	// Could any provider host one lease, ignoring price and load?
	for _, p := range m.providers {
		for _, g := range p.spec.GPUs {
			if acceptable(o, p, g) {
				return nil
			}
		}
	}
	what := "any GPU model"
	if len(o.GPUModels) > 0 {
		what = strings.Join(o.GPUModels, " or ")
	}
	where := ""
	if o.Region != "" {
		where = " in region " + o.Region
	}
	return fmt.Errorf("%w: no provider%s has %d × %s with at least %d GiB each on one machine; relax gpu models, gpus per worker, min VRAM or region",
		lease.ErrInvalid, where, o.GPUsPerWorker, what, o.MinVRAMGiB)
}

func (m *Market) regions() []string {
	var rs []string
	for _, p := range m.providers {
		if !slices.Contains(rs, p.spec.Region) {
			rs = append(rs, p.spec.Region)
		}
	}
	slices.Sort(rs)
	return rs
}

// acceptable reports whether provider p's GPUs g could host a lease of o.
func acceptable(o lease.Order, p *provider, g GPUSpec) bool {
	if len(o.GPUModels) > 0 && !slices.Contains(o.GPUModels, g.Model) {
		return false
	}
	if o.Region != "" && o.Region != p.spec.Region {
		return false
	}
	mod, _ := gpu.Lookup(g.Model)
	return mod.MemoryGiB >= o.MinVRAMGiB && g.Count >= o.GPUsPerWorker
}

// offer makes p bid on os for every acceptable model it has free GPUs of
// and no live bid for.
func (m *Market) offer(os *orderState, p *provider) {
	o := os.order
	if !o.Open || p.state != stateUp {
		return
	}
	for _, g := range p.spec.GPUs {
		if !acceptable(o, p, g) || m.liveBid(os, p, g.Model) {
			continue
		}
		n := min(p.free(g.Model)/o.GPUsPerWorker, o.Workers-os.accepted)
		if n < 1 {
			continue
		}
		micro, ok := p.price(g, maxFloat(o))
		if !ok {
			continue
		}
		mod, _ := gpu.Lookup(g.Model)
		m.nextBid++
		b := lease.Bid{
			ID: fmt.Sprintf("bid-%06d", m.nextBid), OrderID: o.ID, Provider: p.addr, ProviderName: p.spec.Name,
			GPUModel: g.Model, VRAMGiB: mod.MemoryGiB, GPUs: o.GPUsPerWorker, Count: n,
			PricePerBlock: lease.PerBlock(lease.FromMicroUSD(micro), o.GPUsPerWorker, m.cfg.BlockTime),
			Region:        p.spec.Region, Attributes: cloneMap(p.spec.Attributes),
		}
		b.PricePerBlock.Denom = m.denom
		if err := lease.SignBid(p.signer, &b); err != nil {
			m.log.Error("provider cannot sign its bid", "provider", p.spec.Name, "error", err)
			continue
		}
		m.list(os, p, b)
	}
}

// list records a signed bid, filling the fields the market vouches for.
func (m *Market) list(os *orderState, p *provider, b lease.Bid) {
	b.ProviderName = p.spec.Name
	b.Reliability = p.reliability()
	b.LatencyMs, b.BandwidthMbps = p.spec.LatencyMs, p.spec.BandwidthMbps
	b.CreatedAt = m.now()
	bs := &bidState{bid: b, prov: p, order: os}
	os.bids = append(os.bids, bs)
	m.bids[b.ID] = bs
}

func (m *Market) liveBid(os *orderState, p *provider, model string) bool {
	for _, bs := range os.bids {
		if bs.prov == p && bs.bid.GPUModel == model && m.refresh(bs) > 0 {
			return true
		}
	}
	return false
}

// refresh shrinks a bid to what its provider can still serve (re-signing
// it) and returns its count.
func (m *Market) refresh(bs *bidState) int {
	b := &bs.bid
	n := b.Count
	if !bs.order.order.Open || bs.prov.state != stateUp {
		n = 0
	}
	n = min(n, bs.prov.free(b.GPUModel)/b.GPUs, bs.order.order.Workers-bs.order.accepted)
	if n < b.Count {
		b.Count = n
		if n > 0 {
			if err := lease.SignBid(bs.prov.signer, b); err != nil {
				m.log.Error("provider cannot re-sign its bid", "provider", bs.prov.spec.Name, "error", err)
				b.Count = 0
			}
		}
	}
	return b.Count
}

// Bids lists the order's live bids, oldest first (none once it closed).
func (m *Market) Bids(_ context.Context, orderID string) ([]lease.Bid, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	os, ok := m.orders[orderID]
	if !ok {
		return nil, fmt.Errorf("%w: order %q", lease.ErrNotFound, orderID)
	}
	var out []lease.Bid
	for _, bs := range os.bids {
		if m.refresh(bs) > 0 {
			out = append(out, cloneBid(bs.bid))
		}
	}
	return out, nil
}

// SubmitBid lists a bid made outside the market by one of its providers
// (a test, or an external process acting for the provider). The bid must
// be signed by the provider it names, fit the order, stay within the
// provider's free GPUs and never exceed the order's maximum price. It
// replaces the provider's bid for the same model on that order.
func (m *Market) SubmitBid(b lease.Bid) error {
	if err := lease.Verify(b.Provider, lease.BidSignBytes(b), lease.Signed{PubKey: b.PubKey, Signature: b.Signature}); err != nil {
		return fmt.Errorf("bid %q: %w", b.ID, err)
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	p, ok := m.byAddr[b.Provider]
	if !ok {
		return fmt.Errorf("%w: bid %q: %s is not a provider of this market", lease.ErrUnauthorized, b.ID, b.Provider)
	}
	os, ok := m.orders[b.OrderID]
	if !ok {
		return fmt.Errorf("%w: bid %q: order %q", lease.ErrNotFound, b.ID, b.OrderID)
	}
	o := os.order
	if !o.Open {
		return fmt.Errorf("%w: bid %q: order %s", lease.ErrOrderClosed, b.ID, o.ID)
	}
	if b.ID == "" {
		return fmt.Errorf("%w: bid has no ID", lease.ErrInvalid)
	}
	if old, ok := m.bids[b.ID]; ok && (old.prov != p || old.order != os) {
		return fmt.Errorf("%w: bid ID %q is taken", lease.ErrInvalid, b.ID)
	}
	i := slices.IndexFunc(p.spec.GPUs, func(g GPUSpec) bool { return g.Model == b.GPUModel })
	if i < 0 || !acceptable(o, p, p.spec.GPUs[i]) {
		return fmt.Errorf("%w: bid %q: provider %s offers no %q GPUs that fit order %s", lease.ErrInvalid, b.ID, p.spec.Name, b.GPUModel, o.ID)
	}
	mod, _ := gpu.Lookup(b.GPUModel)
	switch {
	case b.GPUs != o.GPUsPerWorker:
		return fmt.Errorf("%w: bid %q: %d GPUs per lease, order wants %d", lease.ErrInvalid, b.ID, b.GPUs, o.GPUsPerWorker)
	case b.VRAMGiB != mod.MemoryGiB:
		return fmt.Errorf("%w: bid %q: VRAM %d GiB, a %s has %d", lease.ErrInvalid, b.ID, b.VRAMGiB, b.GPUModel, mod.MemoryGiB)
	case b.Region != p.spec.Region:
		return fmt.Errorf("%w: bid %q: region %q, provider %s is in %q", lease.ErrInvalid, b.ID, b.Region, p.spec.Name, p.spec.Region)
	case p.state != stateUp:
		return fmt.Errorf("%w: bid %q: provider %s is %s", lease.ErrUnavailable, b.ID, p.spec.Name, p.state)
	}
	if n := min(p.free(b.GPUModel)/b.GPUs, o.Workers-os.accepted); b.Count < 1 || b.Count > n {
		return fmt.Errorf("%w: bid %q: count %d: provider %s can host 1..%d more leases for this order", lease.ErrInvalid, b.ID, b.Count, p.spec.Name, n)
	}
	if err := m.checkAmount("bid price per block", b.PricePerBlock); err != nil {
		return fmt.Errorf("bid %q: %w", b.ID, err)
	}
	if maxBlock := lease.PerBlock(o.MaxPricePerGPUHour, b.GPUs, m.cfg.BlockTime); b.PricePerBlock.Amount.GT(maxBlock.Amount) {
		return fmt.Errorf("%w: bid %q: %s per GPU-hour, order %s allows %s", lease.ErrOverMaxPrice, b.ID,
			lease.Format(lease.PerGPUHour(b.PricePerBlock, b.GPUs, m.cfg.BlockTime)), o.ID, lease.Format(o.MaxPricePerGPUHour))
	}
	// Replace the provider's bids for this model on the order.
	os.bids = slices.DeleteFunc(os.bids, func(bs *bidState) bool {
		if bs.prov == p && bs.bid.GPUModel == b.GPUModel {
			delete(m.bids, bs.bid.ID)
			return true
		}
		return false
	})
	b.Attributes = cloneMap(b.Attributes)
	m.list(os, p, b)
	return nil
}

// CloseOrder withdraws an open order; its bids lapse, its leases go on.
func (m *Market) CloseOrder(_ context.Context, req lease.CloseRequest) error {
	if err := verifyTenant(req.Tenant, lease.CloseSignBytes(req, true), req.Signed); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	os, ok := m.orders[req.LeaseID]
	if !ok {
		return fmt.Errorf("%w: order %q", lease.ErrNotFound, req.LeaseID)
	}
	if os.order.Tenant != req.Tenant {
		return fmt.Errorf("%w: order %s belongs to another tenant", lease.ErrUnauthorized, os.order.ID)
	}
	if !os.order.Open {
		return fmt.Errorf("%w: order %s", lease.ErrOrderClosed, os.order.ID)
	}
	m.closeOrder(os)
	return nil
}

// closeOrder closes an order (filled or withdrawn) and forgets its bids.
func (m *Market) closeOrder(os *orderState) {
	os.order.Open = false
	for _, bs := range os.bids {
		delete(m.bids, bs.bid.ID)
	}
	os.bids = nil
	m.open = slices.DeleteFunc(m.open, func(x *orderState) bool { return x == os })
}

// Order returns an order.
func (m *Market) Order(id string) (lease.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	os, ok := m.orders[id]
	if !ok {
		return lease.Order{}, fmt.Errorf("%w: order %q", lease.ErrNotFound, id)
	}
	return cloneOrder(os.order), nil
}

func cloneOrder(o lease.Order) lease.Order {
	o.GPUModels = slices.Clone(o.GPUModels)
	return o
}

func cloneBid(b lease.Bid) lease.Bid {
	b.Attributes = cloneMap(b.Attributes)
	b.PubKey = slices.Clone(b.PubKey)
	b.Signature = slices.Clone(b.Signature)
	return b
}

// maxFloat is the order's maximum per GPU-hour in micro-units, as a float
// (prices are drawn in floats, then capped in integers below it).
func maxFloat(o lease.Order) float64 {
	f, err := o.MaxPricePerGPUHour.Amount.Float64()
	if err != nil {
		return 0
	}
	return f
}
