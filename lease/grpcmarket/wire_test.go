package grpcmarket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
	"google.golang.org/grpc"
)

// fakeMarket records what it was asked and answers with err (if set) or
// with what it was given. Events are fed through the events channel.
type fakeMarket struct {
	mu     sync.Mutex
	err    error
	orders []lease.OrderRequest
	bids   []lease.Bid
	leases []lease.Lease
	events chan lease.Event
	// subscribed gets a value each time Events starts listening.
	subscribed chan struct{}
}

func newFakeMarket() *fakeMarket {
	return &fakeMarket{events: make(chan lease.Event), subscribed: make(chan struct{}, 8)}
}

func (f *fakeMarket) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeMarket) Params(context.Context) (lease.Params, error) {
	return lease.Params{Denom: lease.DefaultDenom, BlockTime: 6 * time.Second}, nil
}

func (f *fakeMarket) CreateOrder(_ context.Context, req lease.OrderRequest) (lease.Order, error) {
	if err := f.fail(); err != nil {
		return lease.Order{}, err
	}
	if err := lease.Verify(req.Order.Tenant, lease.OrderSignBytes(req.Order), req.Signed); err != nil {
		return lease.Order{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orders = append(f.orders, req)
	o := req.Order
	o.ID, o.Open, o.CreatedAt = fmt.Sprintf("o-%d", len(f.orders)), true, time.Unix(1700000000, 0).UTC()
	return o, nil
}

func (f *fakeMarket) Bids(context.Context, string) ([]lease.Bid, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.bids, nil
}

func (f *fakeMarket) Accept(context.Context, lease.AcceptRequest) ([]lease.Lease, error) {
	return f.leases, f.fail()
}

func (f *fakeMarket) CloseOrder(context.Context, lease.CloseRequest) error { return f.fail() }

func (f *fakeMarket) Close(_ context.Context, req lease.CloseRequest) (lease.Lease, error) {
	return lease.Lease{ID: req.LeaseID, State: lease.LeaseClosed, CloseReason: req.Reason}, f.fail()
}

func (f *fakeMarket) Deposit(_ context.Context, req lease.DepositRequest) (lease.Lease, error) {
	return lease.Lease{ID: req.LeaseID, Escrow: lease.Escrow{Deposit: req.Amount}}, f.fail()
}

func (f *fakeMarket) Lease(ctx context.Context, id string) (lease.Lease, error) {
	if err := f.fail(); err != nil {
		return lease.Lease{}, err
	}
	if id == "hang" { // a market that never answers
		<-ctx.Done()
		return lease.Lease{}, ctx.Err()
	}
	return lease.Lease{ID: id}, nil
}

func (f *fakeMarket) Leases(context.Context, lease.LeaseFilter) ([]lease.Lease, error) {
	return f.leases, f.fail()
}

func (f *fakeMarket) Events(ctx context.Context, fn func(lease.Event) error) error {
	f.subscribed <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-f.events:
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// fakeOps is an Operator that records failures.
type fakeOps struct {
	mu     sync.Mutex
	failed []string
}

func (o *fakeOps) Providers(context.Context) ([]ProviderInfo, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	state := "up"
	if len(o.failed) > 0 {
		state = "down"
	}
	return []ProviderInfo{{Name: "p1", Region: "us-east", GPUs: []GPUCount{{Model: "H100-SXM", Total: 8, Free: 8}},
		State: state, Reliability: 0.99}}, nil
}

func (o *fakeOps) Fail(_ context.Context, name string) error {
	if name != "p1" {
		return fmt.Errorf("%w: no provider %q", lease.ErrNotFound, name)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed = append(o.failed, name)
	return nil
}

// serve runs m (and ops) on a real gRPC server on 127.0.0.1:0 and returns
// a client dialed to it and a function that stops the server.
func serve(t *testing.T, m lease.Market, ops Operator) (*Client, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions()...)
	NewServer(m, ops).Register(g)
	go g.Serve(lis)
	var once sync.Once
	stop := func() { once.Do(g.Stop) }
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseConn() })
	return c, stop
}

func testSigner(t *testing.T, uid string) *lease.Signer {
	t.Helper()
	s, err := lease.GenerateSigner(lease.NewKeyring(), uid, []byte(uid))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignedRequestCrossesIntact(t *testing.T) {
	m := newFakeMarket()
	c, _ := serve(t, m, nil)
	tenant := testSigner(t, "tenant")
	ctx := context.Background()
	o := lease.Order{Tenant: tenant.Address(), GPUModels: []string{"H100-SXM"}, GPUsPerWorker: 1, Workers: 2,
		MaxPricePerGPUHour: coin(t, "2.100000000000000001", "uusdc"), Deposit: coin(t, "1000000", "uusdc")}
	req, err := lease.SignOrder(tenant, o)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.CreateOrder(ctx, req) // the fake verifies the signature on its side
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "o-1" || !got.Open || !got.MaxPricePerGPUHour.Amount.Equal(o.MaxPricePerGPUHour.Amount) {
		t.Fatalf("order back: %+v", got)
	}
	// A tampered order is refused by the market, and the refusal is
	// ErrUnauthorized on this side.
	req.Order.Workers = 3
	if _, err := c.CreateOrder(ctx, req); !errors.Is(err, lease.ErrUnauthorized) {
		t.Fatalf("tampered order: %v", err)
	}
	p, err := c.Params(ctx)
	if err != nil || p.Denom != lease.DefaultDenom || p.BlockTime != 6*time.Second {
		t.Fatalf("params: %+v %v", p, err)
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	m := newFakeMarket()
	c, _ := serve(t, m, nil)
	ctx := context.Background()
	for _, s := range sentinels {
		want := fmt.Errorf("%w: bid b-7 of order o-3 (detail)", s.err)
		m.mu.Lock()
		m.err = want
		m.mu.Unlock()
		_, err := c.Lease(ctx, "l-1")
		if !errors.Is(err, s.err) {
			t.Errorf("%s: got %v, not errors.Is the sentinel", s.reason, err)
		}
		if err == nil || err.Error() != want.Error() {
			t.Errorf("%s: message %q, want the server's %q", s.reason, err, want)
		}
	}
	// An error wrapping two sentinels keeps both.
	m.mu.Lock()
	m.err = fmt.Errorf("%w: %w: model %q", lease.ErrInvalid, lease.ErrNoSuchGPUType, "H200")
	m.mu.Unlock()
	if _, err := c.Bids(ctx, "o-1"); !errors.Is(err, lease.ErrInvalid) || !errors.Is(err, lease.ErrNoSuchGPUType) {
		t.Fatalf("two sentinels: %v", err)
	}
	// An error the market did not name is passed on with its message, and
	// is none of the sentinels.
	m.mu.Lock()
	m.err = errors.New("disk on fire")
	m.mu.Unlock()
	_, err := c.Leases(ctx, lease.LeaseFilter{})
	if err == nil || errors.Is(err, lease.ErrUnavailable) || errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("unnamed error: %v", err)
	}
	if want := "disk on fire"; !strings.Contains(err.Error(), want) {
		t.Fatalf("unnamed error %q lost %q", err, want)
	}
}

func TestStoppedMarketIsUnavailable(t *testing.T) {
	c, stop := serve(t, newFakeMarket(), nil)
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Lease(ctx, "l-1")
	if !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("call to a stopped market: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second+500*time.Millisecond {
		t.Fatalf("took %v, past the deadline", d)
	}
	// Dialing a market that is not there fails the same way.
	dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer dcancel()
	if _, err := Dial(dctx, c.Addr()); !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("dial a stopped market: %v", err)
	}
}

func TestSilentMarketIsUnavailableAtTheDeadline(t *testing.T) {
	// A market that hangs in a handler...
	c, _ := serve(t, newFakeMarket(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Lease(ctx, "hang")
	if !errors.Is(err, lease.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung market: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}

	// ...and a frozen process that accepts connections and never speaks.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start = time.Now()
	if _, err := Dial(ctx2, lis.Addr().String()); !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("frozen market: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestEventsStream(t *testing.T) {
	m := newFakeMarket()
	c, stop := serve(t, m, nil)
	got := make(chan lease.Event, 4)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- c.Events(ctx, func(e lease.Event) error { got <- e; return nil }) }()
	waitSubscribed(t, m)
	want := lease.Event{Kind: lease.EventEscrowLow, LeaseID: "l-1", Balance: coin(t, "0.5", "uusdc"), At: time.Unix(1700000000, 0).UTC()}
	m.events <- want
	select {
	case e := <-got:
		if e.Kind != want.Kind || e.LeaseID != "l-1" || !e.Balance.Amount.Equal(want.Balance.Amount) || !e.At.Equal(want.At) {
			t.Fatalf("event: %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// The caller's cancel ends the stream with its error.
	cancel()
	if err := waitDone(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}

	// fn's error ends the stream with that error.
	boom := errors.New("boom")
	go func() { done <- c.Events(context.Background(), func(lease.Event) error { return boom }) }()
	waitSubscribed(t, m)
	m.events <- want
	if err := waitDone(t, done); !errors.Is(err, boom) {
		t.Fatalf("after fn error: %v", err)
	}

	// The market going away ends the stream with ErrUnavailable.
	go func() { done <- c.Events(context.Background(), func(lease.Event) error { return nil }) }()
	waitSubscribed(t, m)
	stop()
	if err := waitDone(t, done); !errors.Is(err, lease.ErrUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
}

func waitSubscribed(t *testing.T, m *fakeMarket) {
	t.Helper()
	select {
	case <-m.subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("Events never subscribed")
	}
}

func waitDone(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Events did not return")
		return nil
	}
}

func TestOperatorCalls(t *testing.T) {
	ctx := context.Background()
	none, _ := serve(t, newFakeMarket(), nil)
	if _, err := none.Providers(ctx); !errors.Is(err, ErrNoOperator) {
		t.Fatalf("providers without operator: %v", err)
	}
	if err := none.Fail(ctx, "p1"); !errors.Is(err, ErrNoOperator) {
		t.Fatalf("fail without operator: %v", err)
	}

	ops := &fakeOps{}
	c, _ := serve(t, newFakeMarket(), ops)
	ps, err := c.Providers(ctx)
	if err != nil || len(ps) != 1 || ps[0].State != "up" || ps[0].GPUs[0].Total != 8 {
		t.Fatalf("providers: %+v %v", ps, err)
	}
	if err := c.Fail(ctx, "nope"); !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("fail unknown: %v", err)
	}
	if err := c.Fail(ctx, ""); !errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("fail no name: %v", err)
	}
	if err := c.Fail(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if ps, _ := c.Providers(ctx); ps[0].State != "down" {
		t.Fatalf("p1 still up: %+v", ps)
	}
}
