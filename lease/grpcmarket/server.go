// Package grpcmarket serves a lease.Market over gRPC (megha.v1.MarketService)
// and is the client that makes a remote market a lease.Market again, so the
// coordinator uses the embedded market in its own process exactly as it
// would an external one.
//
// Handlers are thin: decode, call the Market, map the error. Errors cross
// the wire with their message and a google.rpc.ErrorInfo naming the lease
// sentinel, so errors.Is(err, lease.ErrBidExhausted) holds on the client as
// it does on the server. A market that does not answer within the caller's
// deadline, or cannot be reached, is lease.ErrUnavailable.
package grpcmarket

import (
	"context"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/lease"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// ProviderInfo is a provider of the market as its operator sees it.
type ProviderInfo struct {
	Name    string
	Address string // bech32 address of the provider's key
	Region  string
	GPUs    []GPUCount // per model
	// State is "up", "reclaiming" (a failure is announced for FailsAt) or
	// "down" (back at UpAt).
	State         string
	FailsAt, UpAt time.Time
	Reliability   float64 // observed uptime, 0..1
	Attributes    map[string]string
	BandwidthMbps float64
	LatencyMs     float64
}

// GPUCount counts one model's GPUs at a provider.
type GPUCount struct {
	Model       string
	Total, Free int
}

// Operator is what the operator of an embedded market can do beyond
// lease.Market: list its providers and make one fail.
type Operator interface {
	Providers(ctx context.Context) ([]ProviderInfo, error)
	// Fail makes the provider name fail now (its leases close).
	Fail(ctx context.Context, name string) error
}

// Server is a MarketService backed by a lease.Market.
type Server struct {
	meghav1.UnimplementedMarketServiceServer
	m   lease.Market
	ops Operator
}

// NewServer serves m; ops answers the operator calls, and may be nil (they
// are then Unimplemented).
func NewServer(m lease.Market, ops Operator) *Server {
	return &Server{m: m, ops: ops}
}

// Register adds the service to s.
func (s *Server) Register(g *grpc.Server) {
	meghav1.RegisterMarketServiceServer(g, s)
}

// ServerOptions are the options a market's grpc.Server should have:
// keepalive pings from clients (see Dial) are allowed, so that an idle
// event stream is not cut for "too many pings".
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 5 * time.Second, PermitWithoutStream: true})}
}

// Params implements MarketService.
func (s *Server) Params(ctx context.Context, _ *meghav1.MarketParamsRequest) (*meghav1.MarketParams, error) {
	p, err := s.m.Params(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return toParams(p), nil
}

// CreateOrder implements MarketService.
func (s *Server) CreateOrder(ctx context.Context, req *meghav1.CreateOrderRequest) (*meghav1.CreateOrderResponse, error) {
	o, err := fromOrder(req.GetOrder())
	if err != nil {
		return nil, toStatus(err)
	}
	o, err = s.m.CreateOrder(ctx, lease.OrderRequest{Order: o, Signed: fromSigned(req.GetSigned())})
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.CreateOrderResponse{Order: toOrder(o)}, nil
}

// Bids implements MarketService.
func (s *Server) Bids(ctx context.Context, req *meghav1.BidsRequest) (*meghav1.BidsResponse, error) {
	bids, err := s.m.Bids(ctx, req.GetOrderId())
	if err != nil {
		return nil, toStatus(err)
	}
	out := make([]*meghav1.MarketBid, len(bids))
	for i, b := range bids {
		out[i] = toBid(b)
	}
	return &meghav1.BidsResponse{Bids: out}, nil
}

// Accept implements MarketService.
func (s *Server) Accept(ctx context.Context, req *meghav1.AcceptBidRequest) (*meghav1.AcceptBidResponse, error) {
	ls, err := s.m.Accept(ctx, lease.AcceptRequest{Tenant: req.GetTenant(), OrderID: req.GetOrderId(),
		BidID: req.GetBidId(), Count: int(req.GetCount()), Signed: fromSigned(req.GetSigned())})
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.AcceptBidResponse{Leases: toLeases(ls)}, nil
}

func fromClose(req *meghav1.CloseMarketLeaseRequest) lease.CloseRequest {
	return lease.CloseRequest{Tenant: req.GetTenant(), LeaseID: req.GetLeaseId(), Reason: req.GetReason(),
		Signed: fromSigned(req.GetSigned())}
}

// CloseOrder implements MarketService.
func (s *Server) CloseOrder(ctx context.Context, req *meghav1.CloseMarketLeaseRequest) (*meghav1.CloseOrderResponse, error) {
	if err := s.m.CloseOrder(ctx, fromClose(req)); err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.CloseOrderResponse{}, nil
}

// Close implements MarketService.
func (s *Server) Close(ctx context.Context, req *meghav1.CloseMarketLeaseRequest) (*meghav1.CloseMarketLeaseResponse, error) {
	l, err := s.m.Close(ctx, fromClose(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.CloseMarketLeaseResponse{Lease: toLease(l)}, nil
}

// Deposit implements MarketService.
func (s *Server) Deposit(ctx context.Context, req *meghav1.DepositRequest) (*meghav1.DepositResponse, error) {
	amt, err := fromCoin(req.GetAmount())
	if err != nil {
		return nil, toStatus(err)
	}
	l, err := s.m.Deposit(ctx, lease.DepositRequest{Tenant: req.GetTenant(), LeaseID: req.GetLeaseId(),
		Amount: amt, Signed: fromSigned(req.GetSigned())})
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.DepositResponse{Lease: toLease(l)}, nil
}

// GetLease implements MarketService.
func (s *Server) GetLease(ctx context.Context, req *meghav1.GetMarketLeaseRequest) (*meghav1.GetMarketLeaseResponse, error) {
	l, err := s.m.Lease(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.GetMarketLeaseResponse{Lease: toLease(l)}, nil
}

// ListLeases implements MarketService.
func (s *Server) ListLeases(ctx context.Context, req *meghav1.ListMarketLeasesRequest) (*meghav1.ListMarketLeasesResponse, error) {
	ls, err := s.m.Leases(ctx, fromFilter(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.ListMarketLeasesResponse{Leases: toLeases(ls)}, nil
}

// Events implements MarketService: each stream is its own subscription to
// the Market's events, ended by the client going away or the server
// stopping.
func (s *Server) Events(_ *meghav1.MarketEventsRequest, stream grpc.ServerStreamingServer[meghav1.MarketEvent]) error {
	// Headers go out at once, so the client knows the stream is open even
	// while no event comes.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	err := s.m.Events(stream.Context(), func(e lease.Event) error { return stream.Send(toEvent(e)) })
	if stream.Context().Err() != nil {
		return nil
	}
	return toStatus(err)
}

// ListProviders implements MarketService.
func (s *Server) ListProviders(ctx context.Context, _ *meghav1.ListProvidersRequest) (*meghav1.ListProvidersResponse, error) {
	if s.ops == nil {
		return nil, toStatus(ErrNoOperator)
	}
	ps, err := s.ops.Providers(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := make([]*meghav1.MarketProvider, len(ps))
	for i, p := range ps {
		out[i] = toProvider(p)
	}
	return &meghav1.ListProvidersResponse{Providers: out}, nil
}

// FailProvider implements MarketService.
func (s *Server) FailProvider(ctx context.Context, req *meghav1.FailProviderRequest) (*meghav1.FailProviderResponse, error) {
	if s.ops == nil {
		return nil, toStatus(ErrNoOperator)
	}
	if req.GetName() == "" {
		return nil, toStatus(errNoName)
	}
	if err := s.ops.Fail(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &meghav1.FailProviderResponse{}, nil
}
