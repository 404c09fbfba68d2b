package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/megha-ml/megha/coordinator"
	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/grpcmarket"
	"github.com/megha-ml/megha/lease/sim"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
)

// marketFlags connect a coordinator to a GPU market.
type marketFlags struct {
	market, keyFile, catalog, workerToken string
	bidWindow, blockTime                  time.Duration
	seed                                  uint64
}

func (m *marketFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&m.market, "market", "", "`MARKET` to lease workers from: embedded (the simulated market in this process, which starts a worker process per lease) or the address of megha market serve; empty leases nothing")
	fl.StringVar(&m.keyFile, "market-key-file", "", "seed `FILE` of the tenant key that signs orders (default DATA_DIR/market.key, created if missing; every node of a cluster needs the same file)")
	fl.DurationVar(&m.bidWindow, "bid-window", 2*time.Second, "how long an order collects bids before the lease manager chooses")
	fl.StringVar(&m.catalog, "market-catalog", "", "with --market embedded: provider catalog `FILE` (default: the built-in catalog)")
	fl.Uint64Var(&m.seed, "market-seed", 1, "with --market embedded: seed of prices, provider keys and failures")
	fl.DurationVar(&m.blockTime, "market-block-time", sim.DefaultBlockTime, "with --market embedded: time between blocks")
	fl.StringVar(&m.workerToken, "market-worker-token", "", "with --market embedded: token the launched workers use (default: the generated admin token; required with --tokens)")
}

// deferredLauncher holds launches until the coordinator knows its own
// address (a port chosen by the OS is known only once it serves).
type deferredLauncher struct {
	mu sync.Mutex
	l  *sim.ExecLauncher
}

func (d *deferredLauncher) set(l *sim.ExecLauncher) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.l = l
}

func (d *deferredLauncher) get() (*sim.ExecLauncher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.l == nil {
		return nil, errors.New("the coordinator is not serving yet")
	}
	return d.l, nil
}

func (d *deferredLauncher) Start(l lease.Lease) ([]string, error) {
	x, err := d.get()
	if err != nil {
		return nil, err
	}
	return x.Start(l)
}

func (d *deferredLauncher) Stop(id string) error {
	x, err := d.get()
	if err != nil {
		return nil
	}
	return x.Stop(id)
}

// marketSetup is what runCoordinator needs to finish wiring the market
// once its server is up.
type marketSetup struct {
	cfg      coordinator.MarketConfig
	launcher *deferredLauncher
	embedded *sim.Market
	client   *grpcmarket.Client
	dataDir  string
	token    string
}

// setupMarket builds the market connection from the flags. It returns a
// zero MarketConfig without --market.
func setupMarket(m *marketFlags, dataDir string, tokensFile bool, logger *slog.Logger) (*marketSetup, error) {
	s := &marketSetup{dataDir: dataDir}
	if m.market == "" {
		return s, nil
	}
	if m.bidWindow <= 0 {
		return nil, fmt.Errorf("--bid-window %v: must be positive", m.bidWindow)
	}
	keyFile := m.keyFile
	if keyFile == "" {
		keyFile = filepath.Join(dataDir, "market.key")
	}
	seed, err := ensureKeySeed(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--market-key-file: %w", err)
	}
	tenant, err := lease.GenerateSigner(lease.NewKeyring(), "tenant", seed)
	if err != nil {
		return nil, err
	}
	s.cfg = coordinator.MarketConfig{Tenant: tenant, BidWindow: m.bidWindow}
	if m.market == "embedded" {
		if tokensFile && m.workerToken == "" {
			return nil, errors.New("--market embedded with --tokens needs --market-worker-token: a worker or admin token from the file for the launched workers")
		}
		cfg := sim.Config{Seed: m.seed, BlockTime: m.blockTime, Logger: logger.With("component", "market")}
		if m.catalog != "" {
			if cfg.Catalog, err = sim.LoadCatalog(m.catalog); err != nil {
				return nil, fmt.Errorf("--market-catalog: %w", err)
			}
		}
		s.launcher = &deferredLauncher{}
		cfg.Launcher = s.launcher
		if s.embedded, err = sim.New(cfg); err != nil {
			return nil, fmt.Errorf("--market embedded: %w", err)
		}
		s.cfg.Market, s.token = s.embedded, m.workerToken
		logger.Info("embedded market", "seed", m.seed, "block_time", m.blockTime, "tenant", tenant.Address())
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.client, err = grpcmarket.Dial(ctx, m.market); err != nil {
		return nil, fmt.Errorf("--market %s: %w (start one with `megha market serve`, or use --market embedded)", m.market, err)
	}
	s.cfg.Market = s.client
	logger.Info("market", "addr", m.market, "tenant", tenant.Address())
	return s, nil
}

// services serves the embedded market's API (admin-only) beside the
// coordinator's, so that `megha market --market COORDINATOR ...` can list
// providers, see bids and fail a provider.
func (s *marketSetup) services() func(*grpc.Server) {
	if s.embedded == nil {
		return nil
	}
	return func(gs *grpc.Server) { grpcmarket.NewServer(s.embedded, simOperator{s.embedded}).Register(gs) }
}

// serving tells the embedded market's launcher where the coordinator is.
func (s *marketSetup) serving(addr, adminTokenFile string) error {
	if s.launcher == nil {
		return nil
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	tok := s.token
	if tok == "" {
		b, err := os.ReadFile(adminTokenFile)
		if err != nil {
			return fmt.Errorf("--market embedded: admin token for launched workers: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	dir, err := filepath.Abs(filepath.Join(s.dataDir, "market-workers"))
	if err != nil {
		return err
	}
	s.launcher.set(&sim.ExecLauncher{Bin: bin, Coordinator: addr, Token: tok, DataDir: dir})
	return nil
}

func (s *marketSetup) close() {
	if s.embedded != nil {
		_ = s.embedded.Shutdown()
	}
	if s.client != nil {
		_ = s.client.CloseConn()
	}
}

// ensureKeySeed reads a hex seed from path, creating a random one (mode
// 0600) if the file does not exist.
func ensureKeySeed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return seed, nil
	}
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) < 16 {
		return nil, fmt.Errorf("%s: want at least 16 bytes of hex (for example `openssl rand -hex 32`)", path)
	}
	return seed, nil
}
