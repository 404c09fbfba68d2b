package grpcmarket

import (
	"fmt"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/lease"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversions between package lease and the wire. Every lease type goes
// out with a to* function and comes back with a from* function; a round
// trip gives back an equal value, with three representational exceptions:
// times come back in UTC (the same instant), an empty map or slice comes
// back nil, and an unset coin (sdk.DecCoin{}) stays unset. Decoding fails
// only on an amount that is not a decimal (lease.ErrInvalid).

// toCoin renders c exactly: its Amount.String() (18 decimals).
func toCoin(c sdk.DecCoin) *meghav1.DecCoin {
	if c.Denom == "" && c.Amount.IsNil() {
		return nil
	}
	out := &meghav1.DecCoin{Denom: c.Denom}
	if !c.Amount.IsNil() {
		out.Amount = c.Amount.String()
	}
	return out
}

// fromCoin parses a wire coin exactly. The denomination is not validated
// here: that is the market's business, and it answers with a lease error.
func fromCoin(c *meghav1.DecCoin) (sdk.DecCoin, error) {
	if c == nil {
		return sdk.DecCoin{}, nil
	}
	out := sdk.DecCoin{Denom: c.Denom}
	if c.Amount == "" {
		return out, nil
	}
	d, err := math.LegacyNewDecFromStr(c.Amount)
	if err != nil {
		return sdk.DecCoin{}, fmt.Errorf("%w: amount %q: %v", lease.ErrInvalid, c.Amount, err)
	}
	out.Amount = d
	return out, nil
}

func toTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func toSigned(s lease.Signed) *meghav1.Signed {
	if s.PubKey == nil && s.Signature == nil {
		return nil
	}
	return &meghav1.Signed{PubKey: s.PubKey, Signature: s.Signature}
}

func fromSigned(s *meghav1.Signed) lease.Signed {
	return lease.Signed{PubKey: s.GetPubKey(), Signature: s.GetSignature()}
}

func toParams(p lease.Params) *meghav1.MarketParams {
	return &meghav1.MarketParams{Denom: p.Denom, BlockTime: durationpb.New(p.BlockTime)}
}

func fromParams(p *meghav1.MarketParams) lease.Params {
	out := lease.Params{Denom: p.GetDenom()}
	if p.GetBlockTime() != nil {
		out.BlockTime = p.GetBlockTime().AsDuration()
	}
	return out
}

func toOrder(o lease.Order) *meghav1.MarketOrder {
	return &meghav1.MarketOrder{
		Id: o.ID, Tenant: o.Tenant, GpuModels: o.GPUModels, GpusPerWorker: int64(o.GPUsPerWorker),
		Workers: int64(o.Workers), MinVramGib: int64(o.MinVRAMGiB), Region: o.Region,
		MaxPricePerGpuHour: toCoin(o.MaxPricePerGPUHour), Deposit: toCoin(o.Deposit),
		CreatedAt: toTime(o.CreatedAt), Open: o.Open,
	}
}

func fromOrder(o *meghav1.MarketOrder) (lease.Order, error) {
	maxPrice, err := fromCoin(o.GetMaxPricePerGpuHour())
	if err != nil {
		return lease.Order{}, fmt.Errorf("max_price_per_gpu_hour: %w", err)
	}
	deposit, err := fromCoin(o.GetDeposit())
	if err != nil {
		return lease.Order{}, fmt.Errorf("deposit: %w", err)
	}
	return lease.Order{
		ID: o.GetId(), Tenant: o.GetTenant(), GPUModels: nilIfEmpty(o.GetGpuModels()),
		GPUsPerWorker: int(o.GetGpusPerWorker()), Workers: int(o.GetWorkers()), MinVRAMGiB: int(o.GetMinVramGib()),
		Region: o.GetRegion(), MaxPricePerGPUHour: maxPrice, Deposit: deposit,
		CreatedAt: fromTime(o.GetCreatedAt()), Open: o.GetOpen(),
	}, nil
}

func toBid(b lease.Bid) *meghav1.MarketBid {
	return &meghav1.MarketBid{
		Id: b.ID, OrderId: b.OrderID, Provider: b.Provider, ProviderName: b.ProviderName,
		GpuModel: b.GPUModel, VramGib: int64(b.VRAMGiB), Gpus: int64(b.GPUs), Count: int64(b.Count),
		PricePerBlock: toCoin(b.PricePerBlock), Region: b.Region, Attributes: b.Attributes,
		Reliability: b.Reliability, LatencyMs: b.LatencyMs, BandwidthMbps: b.BandwidthMbps,
		CreatedAt: toTime(b.CreatedAt), Signed: toSigned(lease.Signed{PubKey: b.PubKey, Signature: b.Signature}),
	}
}

func fromBid(b *meghav1.MarketBid) (lease.Bid, error) {
	price, err := fromCoin(b.GetPricePerBlock())
	if err != nil {
		return lease.Bid{}, fmt.Errorf("bid %s: price_per_block: %w", b.GetId(), err)
	}
	var attrs map[string]string
	if len(b.GetAttributes()) > 0 {
		attrs = b.GetAttributes()
	}
	return lease.Bid{
		ID: b.GetId(), OrderID: b.GetOrderId(), Provider: b.GetProvider(), ProviderName: b.GetProviderName(),
		GPUModel: b.GetGpuModel(), VRAMGiB: int(b.GetVramGib()), GPUs: int(b.GetGpus()), Count: int(b.GetCount()),
		PricePerBlock: price, Region: b.GetRegion(), Attributes: attrs,
		Reliability: b.GetReliability(), LatencyMs: b.GetLatencyMs(), BandwidthMbps: b.GetBandwidthMbps(),
		CreatedAt: fromTime(b.GetCreatedAt()), PubKey: b.GetSigned().GetPubKey(), Signature: b.GetSigned().GetSignature(),
	}, nil
}

func toEscrow(e lease.Escrow) *meghav1.Escrow {
	return &meghav1.Escrow{Deposit: toCoin(e.Deposit), Drawn: toCoin(e.Drawn), Balance: toCoin(e.Balance),
		Rate: toCoin(e.Rate), Blocks: e.Blocks}
}

func fromEscrow(e *meghav1.Escrow) (lease.Escrow, error) {
	var out lease.Escrow
	for _, f := range []struct {
		name string
		in   *meghav1.DecCoin
		out  *sdk.DecCoin
	}{{"deposit", e.GetDeposit(), &out.Deposit}, {"drawn", e.GetDrawn(), &out.Drawn},
		{"balance", e.GetBalance(), &out.Balance}, {"rate", e.GetRate(), &out.Rate}} {
		c, err := fromCoin(f.in)
		if err != nil {
			return lease.Escrow{}, fmt.Errorf("escrow %s: %w", f.name, err)
		}
		*f.out = c
	}
	out.Blocks = e.GetBlocks()
	return out, nil
}

func toLease(l lease.Lease) *meghav1.MarketLease {
	return &meghav1.MarketLease{
		Id: l.ID, OrderId: l.OrderID, BidId: l.BidID, Provider: l.Provider, Tenant: l.Tenant,
		ProviderName: l.ProviderName, GpuModel: l.GPUModel, Gpus: int64(l.GPUs), VramGib: int64(l.VRAMGiB),
		Region: l.Region, PricePerBlock: toCoin(l.PricePerBlock), State: meghav1.MarketLeaseState(l.State),
		Escrow: toEscrow(l.Escrow), Endpoints: l.Endpoints, CreatedAt: toTime(l.CreatedAt),
		ClosedAt: toTime(l.ClosedAt), CloseReason: l.CloseReason,
	}
}

func fromLease(l *meghav1.MarketLease) (lease.Lease, error) {
	price, err := fromCoin(l.GetPricePerBlock())
	if err != nil {
		return lease.Lease{}, fmt.Errorf("lease %s: price_per_block: %w", l.GetId(), err)
	}
	esc, err := fromEscrow(l.GetEscrow())
	if err != nil {
		return lease.Lease{}, fmt.Errorf("lease %s: %w", l.GetId(), err)
	}
	return lease.Lease{
		ID: l.GetId(), OrderID: l.GetOrderId(), BidID: l.GetBidId(), Provider: l.GetProvider(), Tenant: l.GetTenant(),
		ProviderName: l.GetProviderName(), GPUModel: l.GetGpuModel(), GPUs: int(l.GetGpus()), VRAMGiB: int(l.GetVramGib()),
		Region: l.GetRegion(), PricePerBlock: price, State: lease.LeaseState(l.GetState()), Escrow: esc,
		Endpoints: nilIfEmpty(l.GetEndpoints()), CreatedAt: fromTime(l.GetCreatedAt()),
		ClosedAt: fromTime(l.GetClosedAt()), CloseReason: l.GetCloseReason(),
	}, nil
}

func toLeases(ls []lease.Lease) []*meghav1.MarketLease {
	out := make([]*meghav1.MarketLease, len(ls))
	for i, l := range ls {
		out[i] = toLease(l)
	}
	return out
}

func fromLeases(ls []*meghav1.MarketLease) ([]lease.Lease, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	out := make([]lease.Lease, len(ls))
	for i, l := range ls {
		var err error
		if out[i], err = fromLease(l); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func toEvent(e lease.Event) *meghav1.MarketEvent {
	return &meghav1.MarketEvent{Kind: meghav1.MarketEventKind(e.Kind), LeaseId: e.LeaseID, Provider: e.Provider,
		Reason: e.Reason, Deadline: toTime(e.Deadline), Balance: toCoin(e.Balance), At: toTime(e.At)}
}

func fromEvent(e *meghav1.MarketEvent) (lease.Event, error) {
	bal, err := fromCoin(e.GetBalance())
	if err != nil {
		return lease.Event{}, fmt.Errorf("event balance: %w", err)
	}
	return lease.Event{Kind: lease.EventKind(e.GetKind()), LeaseID: e.GetLeaseId(), Provider: e.GetProvider(),
		Reason: e.GetReason(), Deadline: fromTime(e.GetDeadline()), Balance: bal, At: fromTime(e.GetAt())}, nil
}

func toFilter(f lease.LeaseFilter) *meghav1.ListMarketLeasesRequest {
	return &meghav1.ListMarketLeasesRequest{Tenant: f.Tenant, OrderId: f.OrderID, State: meghav1.MarketLeaseState(f.State)}
}

func fromFilter(r *meghav1.ListMarketLeasesRequest) lease.LeaseFilter {
	return lease.LeaseFilter{Tenant: r.GetTenant(), OrderID: r.GetOrderId(), State: lease.LeaseState(r.GetState())}
}

func toProvider(p ProviderInfo) *meghav1.MarketProvider {
	out := &meghav1.MarketProvider{Name: p.Name, Address: p.Address, Region: p.Region, State: p.State,
		FailsAt: toTime(p.FailsAt), UpAt: toTime(p.UpAt), Reliability: p.Reliability, Attributes: p.Attributes,
		BandwidthMbps: p.BandwidthMbps, LatencyMs: p.LatencyMs}
	for _, g := range p.GPUs {
		out.Gpus = append(out.Gpus, &meghav1.ProviderGPUs{Model: g.Model, Total: int64(g.Total), Free: int64(g.Free)})
	}
	return out
}

func fromProvider(p *meghav1.MarketProvider) ProviderInfo {
	out := ProviderInfo{Name: p.GetName(), Address: p.GetAddress(), Region: p.GetRegion(), State: p.GetState(),
		FailsAt: fromTime(p.GetFailsAt()), UpAt: fromTime(p.GetUpAt()), Reliability: p.GetReliability(),
		BandwidthMbps: p.GetBandwidthMbps(), LatencyMs: p.GetLatencyMs()}
	if len(p.GetAttributes()) > 0 {
		out.Attributes = p.GetAttributes()
	}
	for _, g := range p.GetGpus() {
		out.GPUs = append(out.GPUs, GPUCount{Model: g.GetModel(), Total: int(g.GetTotal()), Free: int(g.GetFree())})
	}
	return out
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
