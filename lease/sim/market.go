// Package sim is megha's embedded GPU market: the default market, and a
// real service (lease/grpcmarket serves it; `megha market` runs it). It
// implements lease.Market with the same rules an Akash-like chain would
// enforce, over a catalog of simulated providers.
//
// Providers come from a YAML catalog (catalog.yaml is the default, embedded):
// name, region, GPUs by worker/gpu catalog model, a pricing rule, MTBF and
// MTTR, reclaim behaviour, link bandwidth and latency, attributes and an
// initial reliability. Each provider has a deterministic secp256k1 key
// derived from the market seed and its name (ProviderKeySeed), signs every
// bid it makes, and the market verifies every bid signature before listing
// it, whether the bid was made inside the market or sent with SubmitBid.
//
// Auction. When an order opens, every provider that is up bids at once:
// one bid per GPU model it has that the order accepts (a mixed provider
// bids once per model, so a cheap model never hides a fast one), offering
// as many leases as its free GPUs of that model can host. The price per
// GPU-hour is drawn from the provider's range with its own seeded RNG and
// capped at the order's maximum; a provider whose floor is above the
// maximum does not bid. While the order stays open, providers whose GPUs
// free up (or who come back after a failure) bid again. A bid's Count is
// what it still offers: accepting from it, or leasing its GPUs to another
// order, shrinks it (the provider re-signs the smaller bid; listing a bid
// never shows a count the provider cannot serve).
//
// Money. Each tenant address gets an account holding Config.TenantFunds the
// first time it signs a request. Accepting moves Deposit from the account
// into each lease's escrow; every block, each active lease pays Rate from
// its escrow to its provider's account. A lease whose escrow cannot pay the
// next block closes ("escrow exhausted") and the remainder goes back to the
// tenant, as does the balance of a lease the tenant closes or the provider
// fails. Amounts are exact Cosmos SDK decimals: accounts + escrows +
// providers' earnings are conserved to the last digit, and escrow never
// goes negative.
//
// Time. The market keeps a block height; time is genesis + height ×
// BlockTime. With ManualBlocks, nothing moves until AdvanceBlocks is
// called and genesis is fixed, so a market is a deterministic function of
// its seed, catalog and the sequence of calls (IDs are sequential too).
// Otherwise a ticker makes one block per BlockTime.
//
// Failures. Each block, each provider draws from its own seeded RNG: with
// probability BlockTime/MTBF it fails. With the catalog's reclaim
// probability, a failure is announced first (EventReclaimNotice for each
// of its leases, with the deadline) and happens at the deadline; else it
// is immediate. A failed provider's leases close ("provider NAME failed"),
// its workers are stopped, and it stays down (no bids) for its MTTR. Fail
// fails a provider on command, immediately.
//
// Workers. With a Launcher, every accepted lease starts a worker (for
// ExecLauncher, a real `megha worker` process with the lease's GPUs as an
// emulated profile) and every closed lease stops it. Start runs under the
// market lock and must only spawn; Stop runs in the background.
//
// Events fan out to every Events subscriber through a buffer of
// Config.EventBuffer events each. Blocks never wait for subscribers: one that
// falls a full buffer behind is disconnected (its Events call returns an
// error wrapping lease.ErrUnavailable) and must resubscribe and reconcile
// with Leases.
//
// Beyond lease.Market: AdvanceBlocks and Height (blocks), Fail and
// Providers (the provider side), SubmitBid (bids from outside), Account
// and Fund (money), Order, Subscribers, and Shutdown (the interface's
// Close closes a lease, so stopping the market has another name).
//
// Limits: signed requests carry no nonce (lease's sign bytes), so a
// replayed acceptance is a new acceptance of the same bid, bounded by the
// bid's count and the tenant's funds like any other.
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	"github.com/megha-ml/megha/lease"
)

// Defaults for Config.
const (
	DefaultBlockTime       = 6 * time.Second
	DefaultEscrowLowBlocks = 100
	// DefaultTenantFundsUSD is what a new tenant account starts with.
	DefaultTenantFundsUSD = 10_000
	// DefaultEventBuffer is how many events a subscriber may fall behind.
	DefaultEventBuffer = 1024
)

// Config configures a Market.
type Config struct {
	Catalog   *Catalog // nil: the default catalog
	Seed      uint64
	BlockTime time.Duration // default 6 s, as on Akash
	// ManualBlocks stops the block ticker: blocks advance only through
	// AdvanceBlocks, and genesis is a fixed time (deterministic tests).
	ManualBlocks bool
	// Genesis is the time of block 0 (default: now, or 2025-01-01 UTC with
	// ManualBlocks).
	Genesis time.Time
	// Launcher starts and stops a worker per lease; nil starts none.
	Launcher Launcher
	// TenantFunds is what each new tenant account starts with (default
	// 10,000 USD in uusdc). Its denomination is the market's.
	TenantFunds sdk.DecCoin
	// EscrowLowBlocks: EventEscrowLow when a lease's escrow pays for fewer
	// blocks than this (default 100).
	EscrowLowBlocks int64
	// NoRandomFailures turns off failures drawn from the seed; Fail still
	// works.
	NoRandomFailures bool
	// EventBuffer is how many events an Events subscriber may fall behind
	// before it is disconnected (default 1024).
	EventBuffer int
	Logger      *slog.Logger
}

// Market is the embedded market. Its methods are safe for concurrent use.
type Market struct {
	cfg     Config
	denom   string
	genesis time.Time
	log     *slog.Logger

	mu        sync.Mutex
	closed    bool
	height    int64
	providers []*provider
	byName    map[string]*provider
	byAddr    map[string]*provider
	orders    map[string]*orderState
	open      []*orderState // open orders, oldest first
	bids      map[string]*bidState
	leases    map[string]*leaseState
	leaseList []*leaseState // every lease, oldest first
	active    []*leaseState // active leases, oldest first
	accounts  map[string]math.LegacyDec
	nextOrder int
	nextBid   int
	nextLease int
	rebid     bool // capacity freed since the last bid pass
	subs      map[*subscriber]struct{}

	done    chan struct{}
	bg      sync.WaitGroup // ticker and worker stops
	dropped int64          // subscribers disconnected for lagging
}

var _ lease.Market = (*Market)(nil)

// ProviderKeySeed is the seed of provider name's key in a market with the
// given seed: anyone who knows both can act as the provider (the embedded
// providers are simulations, not custodians of secrets).
func ProviderKeySeed(seed uint64, name string) []byte {
	return fmt.Appendf(nil, "megha-sim/%d/%s", seed, name)
}

// New starts a market.
func New(cfg Config) (*Market, error) {
	if cfg.Catalog == nil {
		cfg.Catalog = DefaultCatalog()
	}
	cat := &Catalog{Providers: append([]ProviderSpec(nil), cfg.Catalog.Providers...)}
	if err := cat.validate(); err != nil {
		return nil, err
	}
	if cfg.BlockTime == 0 {
		cfg.BlockTime = DefaultBlockTime
	}
	if cfg.BlockTime < time.Millisecond {
		return nil, fmt.Errorf("sim: block time %v: want at least 1ms", cfg.BlockTime)
	}
	if cfg.EscrowLowBlocks == 0 {
		cfg.EscrowLowBlocks = DefaultEscrowLowBlocks
	}
	if cfg.TenantFunds.Denom == "" {
		cfg.TenantFunds = lease.FromMicroUSD(DefaultTenantFundsUSD * lease.MicrosPerUnit)
	}
	if cfg.TenantFunds.Amount.IsNil() || cfg.TenantFunds.Amount.IsNegative() {
		return nil, errors.New("sim: tenant funds must not be negative")
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = DefaultEventBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Market{
		cfg:      cfg,
		denom:    cfg.TenantFunds.Denom,
		genesis:  cfg.Genesis,
		log:      cfg.Logger.With("component", "market"),
		byName:   make(map[string]*provider),
		byAddr:   make(map[string]*provider),
		orders:   make(map[string]*orderState),
		bids:     make(map[string]*bidState),
		leases:   make(map[string]*leaseState),
		accounts: make(map[string]math.LegacyDec),
		subs:     make(map[*subscriber]struct{}),
		done:     make(chan struct{}),
	}
	if m.genesis.IsZero() {
		if cfg.ManualBlocks {
			m.genesis = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		} else {
			m.genesis = time.Now().UTC()
		}
	}
	for _, spec := range cat.Providers {
		p, err := newProvider(spec, cfg.Seed)
		if err != nil {
			return nil, err
		}
		m.providers = append(m.providers, p)
		m.byName[p.spec.Name] = p
		m.byAddr[p.addr] = p
	}
	if !cfg.ManualBlocks {
		m.bg.Add(1)
		go m.tick()
	}
	return m, nil
}

// providerKeys caches provider signers by key seed: deriving a key
// (BIP-39 seed stretching) costs milliseconds, and tests make many
// markets. Each key has its own keyring, written once and then only read.
var providerKeys struct {
	sync.Mutex
	m map[string]*lease.Signer
}

func providerSigner(seed []byte) (*lease.Signer, error) {
	providerKeys.Lock()
	defer providerKeys.Unlock()
	if s, ok := providerKeys.m[string(seed)]; ok {
		return s, nil
	}
	s, err := lease.GenerateSigner(lease.NewKeyring(), "provider", seed)
	if err != nil {
		return nil, err
	}
	if providerKeys.m == nil {
		providerKeys.m = make(map[string]*lease.Signer)
	}
	providerKeys.m[string(seed)] = s
	return s, nil
}

func newProvider(spec ProviderSpec, seed uint64) (*provider, error) {
	s, err := providerSigner(ProviderKeySeed(seed, spec.Name))
	if err != nil {
		return nil, fmt.Errorf("sim: provider %s: key: %w", spec.Name, err)
	}
	h := fnv.New64a()
	h.Write([]byte(spec.Name))
	nameHash := h.Sum64()
	p := &provider{
		spec:     spec,
		signer:   s,
		addr:     s.Address(),
		slots:    make(map[string][]string, len(spec.GPUs)),
		priceRNG: rand.New(rand.NewPCG(seed, nameHash)),
		failRNG:  rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, nameHash)),
	}
	for _, g := range spec.GPUs {
		p.slots[g.Model] = make([]string, g.Count)
	}
	return p, nil
}

func (m *Market) tick() {
	defer m.bg.Done()
	t := time.NewTicker(m.cfg.BlockTime)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.AdvanceBlocks(1)
		}
	}
}

// Shutdown stops the market: the block ticker, every subscriber, and
// every lease's worker, and waits for them. (Close is lease.Market's
// lease close.) Methods called afterwards return lease.ErrUnavailable.
func (m *Market) Shutdown() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	for _, l := range m.active {
		m.stopWorker(l.lease.ID)
	}
	m.mu.Unlock()
	m.bg.Wait()
	return nil
}

var errClosed = fmt.Errorf("%w: market is closed", lease.ErrUnavailable)

// lock takes the market lock, failing once the market is closed.
func (m *Market) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	return nil
}

// Params returns the market's denomination and block time.
func (m *Market) Params(context.Context) (lease.Params, error) {
	return lease.Params{Denom: m.denom, BlockTime: m.cfg.BlockTime}, nil
}

// Height is the current block height.
func (m *Market) Height() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.height
}

func (m *Market) now() time.Time {
	return m.genesis.Add(time.Duration(m.height) * m.cfg.BlockTime)
}

// blocksFor is how many blocks cover d (at least 1).
func (m *Market) blocksFor(d time.Duration) int64 {
	n := int64((d + m.cfg.BlockTime - 1) / m.cfg.BlockTime)
	return max(n, 1)
}

func (m *Market) coin(d math.LegacyDec) sdk.DecCoin { return sdk.NewDecCoinFromDec(m.denom, d) }

// account returns addr's balance, opening the account with TenantFunds.
func (m *Market) account(addr string) math.LegacyDec {
	b, ok := m.accounts[addr]
	if !ok {
		b = m.cfg.TenantFunds.Amount
		m.accounts[addr] = b
	}
	return b
}

// Account returns the balance of addr's account (a tenant's funds, or a
// provider's earnings); zero for an address never seen.
func (m *Market) Account(addr string) sdk.DecCoin {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.accounts[addr]
	if !ok {
		return lease.Zero(m.denom)
	}
	return m.coin(b)
}

// Fund adds amount to addr's account (a faucet, for operators and tests).
func (m *Market) Fund(addr string, amount sdk.DecCoin) error {
	if err := lease.ValidAddress(addr); err != nil {
		return err
	}
	if err := m.checkAmount("amount", amount); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.accounts[addr] = m.account(addr).Add(amount.Amount)
	return nil
}

// checkAmount requires a positive amount in the market's denomination.
func (m *Market) checkAmount(field string, c sdk.DecCoin) error {
	if c.Denom != m.denom {
		return fmt.Errorf("%w: %s denomination %q: this market uses %q", lease.ErrInvalid, field, c.Denom, m.denom)
	}
	if c.Amount.IsNil() || !c.Amount.IsPositive() {
		return fmt.Errorf("%w: %s must be positive", lease.ErrInvalid, field)
	}
	return nil
}

// verifyTenant checks that a request naming tenant was signed by its key.
func verifyTenant(tenant string, msg []byte, s lease.Signed) error {
	if err := lease.ValidAddress(tenant); err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	return lease.Verify(tenant, msg, s)
}
