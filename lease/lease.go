// Package lease is megha's view of a decentralized GPU market that works
// like Akash: a tenant posts an order, providers bid in a reverse auction,
// the tenant accepts bids and leases start, paid from escrow by the block.
//
// The package holds the types, the Market interface every market
// implements (the embedded one in lease/sim, in-process or over gRPC;
// later Akash itself), money arithmetic on Cosmos SDK decimal coins,
// signing of tenant and provider actions with Cosmos SDK secp256k1 keys,
// and the bid selectors. It does no I/O of its own.
//
// Money. Amounts are sdk.DecCoin (exact 18-decimal fixed point from
// cosmossdk.io/math) in a denomination the market names (the embedded
// market uses micro-USDC, "uusdc", 1,000,000 per US dollar). Prices are
// quoted per block for one lease, as Akash quotes them; people see them per
// GPU-hour (see PerGPUHour).
package lease

import (
	"context"
	"errors"
	"time"

	sdk "github.com/cosmos/cosmos-sdk/types"
)

// DefaultDenom is the denomination of the embedded market: micro-USDC.
const DefaultDenom = "uusdc"

// Order asks providers for Workers leases, each of GPUsPerWorker GPUs of an
// acceptable model, at most MaxPricePerGPUHour.
type Order struct {
	ID     string
	Tenant string // bech32 address of the tenant's key
	// GPUModels are the acceptable catalog models (worker/gpu IDs such as
	// "H100-SXM"); empty accepts any.
	GPUModels     []string
	GPUsPerWorker int
	Workers       int // leases wanted
	MinVRAMGiB    int
	Region        string // "" accepts any
	// MaxPricePerGPUHour caps every bid: no provider bids above it.
	MaxPricePerGPUHour sdk.DecCoin
	// Deposit is put in escrow for each lease accepted from this order.
	Deposit   sdk.DecCoin
	CreatedAt time.Time
	Open      bool // false once closed (filled or withdrawn)
}

// Bid is a provider's offer on an order: up to Count leases of GPUs
// GPUModel GPUs each, at PricePerBlock per lease.
type Bid struct {
	ID       string
	OrderID  string
	Provider string // bech32 address of the provider's key
	// ProviderName is the provider's human-readable name.
	ProviderName  string
	GPUModel      string
	VRAMGiB       int
	GPUs          int // per lease (= the order's GPUsPerWorker)
	Count         int // leases offered at this price
	PricePerBlock sdk.DecCoin
	Region        string
	// Attributes are provider claims such as "audited": "true", "tier":
	// "datacenter" or "consumer".
	Attributes map[string]string
	// Reliability is the provider's observed uptime, 0..1, as the market
	// has recorded it.
	Reliability float64
	// LatencyMs is the provider's measured round trip from the tenant (0
	// when unknown); BandwidthMbps its link.
	LatencyMs     float64
	BandwidthMbps float64
	CreatedAt     time.Time
	// PubKey and Signature are the provider's secp256k1 public key
	// (compressed) and its signature over SignBytes.
	PubKey, Signature []byte
}

// LeaseState is a lease's place in its lifecycle: Active → Closed.
type LeaseState int

const (
	LeaseActive LeaseState = iota + 1
	LeaseClosed
)

func (s LeaseState) String() string {
	switch s {
	case LeaseActive:
		return "active"
	case LeaseClosed:
		return "closed"
	}
	return "unknown"
}

// Escrow is the money behind a lease: Deposit in, Drawn out per block at
// Rate, Balance = Deposit − Drawn, never negative. The lease closes when
// Balance cannot pay the next block.
type Escrow struct {
	Deposit, Drawn, Balance, Rate sdk.DecCoin
	// Blocks is the number of blocks paid for.
	Blocks int64
}

// Lease is an accepted bid: GPUs of one provider for one worker.
type Lease struct {
	ID       string
	OrderID  string
	BidID    string
	Provider string
	Tenant   string
	// ProviderName, GPUModel, GPUs, VRAMGiB and Region are copied from the
	// bid.
	ProviderName  string
	GPUModel      string
	GPUs          int
	VRAMGiB       int
	Region        string
	PricePerBlock sdk.DecCoin
	State         LeaseState
	Escrow        Escrow
	// Endpoints are where the lease's worker can be reached or what it was
	// started with (the embedded market: the worker process's pid and
	// advertise address).
	Endpoints   []string
	CreatedAt   time.Time
	ClosedAt    time.Time
	CloseReason string
}

// EventKind says what happened to a lease.
type EventKind int

const (
	// EventLeaseClosed: the lease ended (closed by the tenant, the
	// provider failed or left, or the escrow ran dry); Reason says which.
	EventLeaseClosed EventKind = iota + 1
	// EventReclaimNotice: the provider will take the GPUs back at
	// Deadline (a spot-style reclaim); checkpoint and replace before then.
	EventReclaimNotice
	// EventEscrowLow: the escrow pays for fewer than the market's warning
	// threshold of blocks; Balance is what is left.
	EventEscrowLow
)

func (k EventKind) String() string {
	switch k {
	case EventLeaseClosed:
		return "lease-closed"
	case EventReclaimNotice:
		return "reclaim-notice"
	case EventEscrowLow:
		return "escrow-low"
	}
	return "unknown"
}

// Event is news about a lease from the market.
type Event struct {
	Kind     EventKind
	LeaseID  string
	Provider string
	Reason   string
	Deadline time.Time   // EventReclaimNotice
	Balance  sdk.DecCoin // EventEscrowLow
	At       time.Time
}

// Signed carries a signature over an action's SignBytes by the key whose
// address the action names (the tenant for orders, acceptances, closes
// and deposits; the provider for bids).
type Signed struct {
	PubKey    []byte // secp256k1, compressed (33 bytes)
	Signature []byte
}

// OrderRequest posts an order.
type OrderRequest struct {
	Order Order // ID, CreatedAt and Open are set by the market
	Signed
}

// AcceptRequest accepts Count leases from a bid.
type AcceptRequest struct {
	Tenant  string
	OrderID string
	BidID   string
	Count   int
	Signed
}

// CloseRequest closes a lease (by its tenant); unspent escrow is returned.
type CloseRequest struct {
	Tenant  string
	LeaseID string
	Reason  string
	Signed
}

// DepositRequest adds to a lease's escrow.
type DepositRequest struct {
	Tenant  string
	LeaseID string
	Amount  sdk.DecCoin
	Signed
}

// LeaseFilter selects leases; zero values match everything.
type LeaseFilter struct {
	Tenant  string
	OrderID string
	State   LeaseState
}

// Params are a market's constants.
type Params struct {
	Denom     string
	BlockTime time.Duration // Akash: about 6 s
}

// Market is a GPU market. Every method is safe for concurrent use; every
// state-changing request is signed and verified.
type Market interface {
	Params(ctx context.Context) (Params, error)
	// CreateOrder opens an order; providers start bidding on it.
	CreateOrder(ctx context.Context, req OrderRequest) (Order, error)
	// Bids returns the order's current bids (providers keep bidding while
	// the order is open; a bid window is the caller's business).
	Bids(ctx context.Context, orderID string) ([]Bid, error)
	// Accept turns Count slots of a bid into Count active leases, each
	// with the order's deposit in escrow. A bid is never accepted beyond
	// its Count, and a provider's GPUs are never in two leases.
	Accept(ctx context.Context, req AcceptRequest) ([]Lease, error)
	// CloseOrder withdraws an open order (its remaining bids lapse).
	CloseOrder(ctx context.Context, req CloseRequest) error
	// Close ends a lease and returns its unspent escrow.
	Close(ctx context.Context, req CloseRequest) (Lease, error)
	// Deposit adds to a lease's escrow.
	Deposit(ctx context.Context, req DepositRequest) (Lease, error)
	Lease(ctx context.Context, id string) (Lease, error)
	Leases(ctx context.Context, f LeaseFilter) ([]Lease, error)
	// Events streams lease news to fn until ctx ends or fn returns an
	// error. Events from before the call are not replayed.
	Events(ctx context.Context, fn func(Event) error) error
}

// Errors every Market returns (wrapped, with details) for the same
// conditions, so callers can tell them apart with errors.Is.
var (
	ErrNotFound      = errors.New("lease: not found")
	ErrInvalid       = errors.New("lease: invalid request")
	ErrUnauthorized  = errors.New("lease: signature does not match the named key")
	ErrOrderClosed   = errors.New("lease: order is closed")
	ErrBidExhausted  = errors.New("lease: bid has no slots left")
	ErrOverMaxPrice  = errors.New("lease: price above the order's maximum")
	ErrLeaseClosed   = errors.New("lease: lease is closed")
	ErrInsufficient  = errors.New("lease: insufficient funds")
	ErrUnavailable   = errors.New("lease: market unavailable")
	ErrNoSuchGPUType = errors.New("lease: no GPU model known by that name")
)
