package grpcmarket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/lease"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// DefaultCallTimeout bounds a unary call whose context has no deadline, so
// that a market that stops answering never hangs its caller.
const DefaultCallTimeout = 30 * time.Second

// Client is a remote market: it implements lease.Market (and the Operator
// calls) over MarketService. It is safe for concurrent use.
type Client struct {
	addr string
	conn *grpc.ClientConn
	rpc  meghav1.MarketServiceClient
}

var (
	_ lease.Market = (*Client)(nil)
	_ Operator     = (*Client)(nil)
)

// Dial connects to the market at addr ("host:port") and checks that it
// answers: one Params call within ctx. Without opts the connection is
// plaintext (the embedded market listens on loopback); opts come after
// the defaults and so override them.
func Dial(ctx context.Context, addr string, opts ...grpc.DialOption) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("%w: no market address", lease.ErrInvalid)
	}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Pings find a market that vanished without closing its
		// connections (a frozen process, a dropped host) under an idle
		// event stream.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}, opts...)
	conn, err := grpc.NewClient(addr, all...)
	if err != nil {
		return nil, fmt.Errorf("%w: market address %q: %v", lease.ErrInvalid, addr, err)
	}
	c := &Client{addr: addr, conn: conn, rpc: meghav1.NewMarketServiceClient(conn)}
	if _, err := c.Params(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Addr is the market's address as dialed.
func (c *Client) Addr() string { return c.addr }

// CloseConn closes the connection to the market. (Close is
// lease.Market's: it closes a lease.)
func (c *Client) CloseConn() error { return c.conn.Close() }

// call runs one unary call with DefaultCallTimeout if ctx has no deadline,
// and maps its error back to a lease error.
func call[Req, Resp any](c *Client, ctx context.Context, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	resp, err := f(ctx, req)
	if err != nil {
		var zero Resp
		return zero, fromStatus(ctx, c.addr, err)
	}
	return resp, nil
}

// Params implements lease.Market.
func (c *Client) Params(ctx context.Context) (lease.Params, error) {
	resp, err := call(c, ctx, c.rpc.Params, &meghav1.MarketParamsRequest{})
	if err != nil {
		return lease.Params{}, err
	}
	return fromParams(resp), nil
}

// CreateOrder implements lease.Market.
func (c *Client) CreateOrder(ctx context.Context, req lease.OrderRequest) (lease.Order, error) {
	resp, err := call(c, ctx, c.rpc.CreateOrder, &meghav1.CreateOrderRequest{Order: toOrder(req.Order), Signed: toSigned(req.Signed)})
	if err != nil {
		return lease.Order{}, err
	}
	return fromOrder(resp.GetOrder())
}

// Bids implements lease.Market.
func (c *Client) Bids(ctx context.Context, orderID string) ([]lease.Bid, error) {
	resp, err := call(c, ctx, c.rpc.Bids, &meghav1.BidsRequest{OrderId: orderID})
	if err != nil {
		return nil, err
	}
	if len(resp.GetBids()) == 0 {
		return nil, nil
	}
	out := make([]lease.Bid, len(resp.GetBids()))
	for i, b := range resp.GetBids() {
		if out[i], err = fromBid(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Accept implements lease.Market.
func (c *Client) Accept(ctx context.Context, req lease.AcceptRequest) ([]lease.Lease, error) {
	resp, err := call(c, ctx, c.rpc.Accept, &meghav1.AcceptBidRequest{Tenant: req.Tenant, OrderId: req.OrderID,
		BidId: req.BidID, Count: int64(req.Count), Signed: toSigned(req.Signed)})
	if err != nil {
		return nil, err
	}
	return fromLeases(resp.GetLeases())
}

func toClose(req lease.CloseRequest) *meghav1.CloseMarketLeaseRequest {
	return &meghav1.CloseMarketLeaseRequest{Tenant: req.Tenant, LeaseId: req.LeaseID, Reason: req.Reason, Signed: toSigned(req.Signed)}
}

// CloseOrder implements lease.Market.
func (c *Client) CloseOrder(ctx context.Context, req lease.CloseRequest) error {
	_, err := call(c, ctx, c.rpc.CloseOrder, toClose(req))
	return err
}

// Close implements lease.Market (CloseConn closes the connection).
func (c *Client) Close(ctx context.Context, req lease.CloseRequest) (lease.Lease, error) {
	resp, err := call(c, ctx, c.rpc.Close, toClose(req))
	if err != nil {
		return lease.Lease{}, err
	}
	return fromLease(resp.GetLease())
}

// Deposit implements lease.Market.
func (c *Client) Deposit(ctx context.Context, req lease.DepositRequest) (lease.Lease, error) {
	resp, err := call(c, ctx, c.rpc.Deposit, &meghav1.DepositRequest{Tenant: req.Tenant, LeaseId: req.LeaseID,
		Amount: toCoin(req.Amount), Signed: toSigned(req.Signed)})
	if err != nil {
		return lease.Lease{}, err
	}
	return fromLease(resp.GetLease())
}

// Lease implements lease.Market.
func (c *Client) Lease(ctx context.Context, id string) (lease.Lease, error) {
	resp, err := call(c, ctx, c.rpc.GetLease, &meghav1.GetMarketLeaseRequest{Id: id})
	if err != nil {
		return lease.Lease{}, err
	}
	return fromLease(resp.GetLease())
}

// Leases implements lease.Market.
func (c *Client) Leases(ctx context.Context, f lease.LeaseFilter) ([]lease.Lease, error) {
	resp, err := call(c, ctx, c.rpc.ListLeases, toFilter(f))
	if err != nil {
		return nil, err
	}
	return fromLeases(resp.GetLeases())
}

// Events implements lease.Market: it streams the market's events to fn
// until ctx ends (ctx.Err() is returned), fn fails (its error is
// returned) or the stream ends (an error wrapping lease.ErrUnavailable:
// the market stopped or cannot be reached; call again to resubscribe,
// knowing that events in between are not replayed).
func (c *Client) Events(ctx context.Context, fn func(lease.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Events(ctx, &meghav1.MarketEventsRequest{})
	if err != nil {
		return c.streamErr(ctx, err)
	}
	for {
		pe, err := stream.Recv()
		if err != nil {
			return c.streamErr(ctx, err)
		}
		e, err := fromEvent(pe)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func (c *Client) streamErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: market at %s ended the event stream", lease.ErrUnavailable, c.addr)
	}
	return fromStatus(ctx, c.addr, err)
}

// Providers lists the market's providers (an operator call; ErrNoOperator
// from a market without one).
func (c *Client) Providers(ctx context.Context) ([]ProviderInfo, error) {
	resp, err := call(c, ctx, c.rpc.ListProviders, &meghav1.ListProvidersRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]ProviderInfo, len(resp.GetProviders()))
	for i, p := range resp.GetProviders() {
		out[i] = fromProvider(p)
	}
	return out, nil
}

// Fail makes the provider name fail now (an operator call).
func (c *Client) Fail(ctx context.Context, name string) error {
	_, err := call(c, ctx, c.rpc.FailProvider, &meghav1.FailProviderRequest{Name: name})
	return err
}
