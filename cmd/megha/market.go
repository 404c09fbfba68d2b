package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	sdkmath "cosmossdk.io/math"
	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/grpcmarket"
	"github.com/megha-ml/megha/lease/sim"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// defaultMarketAddr is where `megha market serve` listens and the market
// commands look by default.
const defaultMarketAddr = "127.0.0.1:7100"

func newMarketCmd(g *globals) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "market",
		Short: "Run the embedded GPU market, or inspect and drive one",
		Long: `The embedded market is megha's default GPU market: simulated providers from a
catalog bid on orders, leases are paid from escrow block by block, and
providers fail now and then, as they do on Akash. ` + "`megha market serve`" + ` runs it as
its own process with a gRPC API; the other commands talk to it at --market
(or MEGHA_MARKET).`,
		Example: `  megha market serve
  megha market providers
  megha market bids o-1 --selector cheapest
  megha market fail lambda-east`,
	}
	cmd.PersistentFlags().StringVar(&addr, "market", envOr("MEGHA_MARKET", defaultMarketAddr), "market gRPC address [$MEGHA_MARKET]")
	cmd.AddCommand(newMarketServeCmd(g), newMarketProvidersCmd(g, &addr), newMarketBidsCmd(g, &addr), newMarketFailCmd(g, &addr))
	return cmd
}

// dialMarket connects to the market at addr, bounding the command by
// timeout; done closes both.
func dialMarket(cmd *cobra.Command, g *globals, addr string, timeout time.Duration) (*grpcmarket.Client, context.Context, func(), error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	var opts []grpc.DialOption
	if tok := g.tokenValue(); tok != "" {
		// A coordinator serving its embedded market (--market embedded)
		// wants an admin token; a standalone market ignores it.
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(tok)))
	}
	c, err := grpcmarket.Dial(ctx, addr, opts...)
	if err != nil {
		cancel()
		if errors.Is(err, lease.ErrUnavailable) {
			return nil, nil, nil, fmt.Errorf("%w\nhint: is a market running at %s? start one with `megha market serve`, or point --market / MEGHA_MARKET at it", err, addr)
		}
		return nil, nil, nil, err
	}
	return c, ctx, func() { cancel(); c.CloseConn() }, nil
}

// bearerToken sends a coordinator token with market calls (plaintext is
// allowed: the coordinator's own API may run without TLS on loopback).
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

func checkOutput(g *globals) error {
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("--output %q: use table or json", g.output)
	}
	return nil
}

func printJSONValue(cmd *cobra.Command, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return err
}

// ----------------------------------------------------------------- serve --

type marketServeFlags struct {
	catalog, listen, readyFile string
	seed                       uint64
	blockTime                  time.Duration
	launch                     bool
	dataDir                    string
	logLevel, logFormat        string
}

func newMarketServeCmd(g *globals) *cobra.Command {
	f := &marketServeFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the embedded market with its gRPC API",
		Long: `Run the embedded market as its own process. Providers come from --catalog (a
YAML file; the built-in catalog otherwise); prices and failures are drawn from
--seed, so the same seed and catalog give the same market. One block is made
every --block-time; escrow is drawn per block.

With --launch-workers, every accepted lease starts a real ` + "`megha worker`" + ` on this
machine with the lease's GPUs emulated, pointed at --coordinator with --token,
and every closed lease stops it. SIGTERM or SIGINT stops the market cleanly.`,
		Example: `  megha market serve
  megha market serve --listen 127.0.0.1:7100 --seed 7 --block-time 1s
  megha market serve --catalog providers.yaml --ready-file /tmp/market.json
  megha market serve --launch-workers --coordinator 127.0.0.1:7000 --token $WORKER_TOKEN`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMarketServe(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.catalog, "catalog", "", "provider catalog `FILE` (YAML; default: the built-in catalog)")
	fl.StringVar(&f.listen, "listen", defaultMarketAddr, "address to serve the market's gRPC API on (port 0 picks one)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of prices, provider keys and failures")
	fl.DurationVar(&f.blockTime, "block-time", sim.DefaultBlockTime, "time between blocks (Akash: about 6s)")
	fl.StringVar(&f.readyFile, "ready-file", "", "once serving, write {grpc_addr, pid} as JSON to this file (for scripts and tests)")
	fl.BoolVar(&f.launch, "launch-workers", false, "start a `megha worker` process per lease on this machine")
	fl.StringVar(&f.dataDir, "data-dir", "", "where launched workers keep their files (default ./megha-data/market)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	return cmd
}

func runMarketServe(cmd *cobra.Command, g *globals, f *marketServeFlags) error {
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.blockTime < time.Millisecond {
		return fmt.Errorf("--block-time %v: use at least 1ms (Akash makes a block about every 6s)", f.blockTime)
	}
	cfg := sim.Config{Seed: f.seed, BlockTime: f.blockTime, Logger: logger}
	catalogName := "built-in"
	if f.catalog != "" {
		if cfg.Catalog, err = sim.LoadCatalog(f.catalog); err != nil {
			return fmt.Errorf("--catalog: %w", err)
		}
		catalogName = f.catalog
	}
	if f.launch {
		bin, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--launch-workers: cannot find the megha binary: %w", err)
		}
		if f.dataDir == "" {
			f.dataDir = filepath.Join("megha-data", "market")
		}
		dir, err := filepath.Abs(f.dataDir)
		if err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		tok := g.token
		if tok == "" && g.tokenFile != "" {
			b, err := os.ReadFile(g.tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			tok = strings.TrimSpace(string(b))
		}
		cfg.Launcher = &sim.ExecLauncher{Bin: bin, Coordinator: g.coordinator, Token: tok, DataDir: dir}
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w (is another market running there? pick another address with --listen)", f.listen, err)
	}
	m, err := sim.New(cfg)
	if err != nil {
		lis.Close()
		return err
	}
	gs := grpc.NewServer(grpcmarket.ServerOptions()...)
	grpcmarket.NewServer(m, simOperator{m}).Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	logger.Info("market serving", "component", "market", "grpc_addr", lis.Addr().String(), "catalog", catalogName,
		"providers", len(m.Providers()), "seed", f.seed, "block_time", f.blockTime, "launch_workers", f.launch)

	if f.readyFile != "" {
		if err := writeMarketReady(f.readyFile, lis.Addr().String()); err != nil {
			gs.Stop()
			_ = m.Shutdown()
			return err
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		err = nil
	case err = <-served:
	}
	logger.Info("shutting down", "component", "market")
	// The market closes first: that ends every event stream, which a
	// graceful stop would otherwise wait on forever; unary calls in
	// flight are given a moment to finish.
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	if serr := m.Shutdown(); err == nil {
		err = serr
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	return err
}

func writeMarketReady(path, addr string) error {
	return writeJSONFile(path, map[string]any{"grpc_addr": addr, "pid": os.Getpid()})
}

// simOperator answers the operator calls for the embedded market.
type simOperator struct{ m *sim.Market }

func (o simOperator) Providers(context.Context) ([]grpcmarket.ProviderInfo, error) {
	ps := o.m.Providers()
	out := make([]grpcmarket.ProviderInfo, len(ps))
	for i, p := range ps {
		gpus := make([]grpcmarket.GPUCount, len(p.GPUs))
		for j, g := range p.GPUs {
			gpus[j] = grpcmarket.GPUCount{Model: g.Model, Total: g.Total, Free: g.Free}
		}
		out[i] = grpcmarket.ProviderInfo{Name: p.Name, Address: p.Address, Region: p.Region, GPUs: gpus,
			State: p.State, FailsAt: p.FailsAt, UpAt: p.UpAt, Reliability: p.Reliability, Attributes: p.Attributes,
			BandwidthMbps: p.BandwidthMbps, LatencyMs: p.LatencyMs}
	}
	return out, nil
}

// Fail fails a provider named by name or by address.
func (o simOperator) Fail(_ context.Context, name string) error {
	for _, p := range o.m.Providers() {
		if p.Address == name {
			name = p.Name
		}
	}
	return o.m.Fail(name)
}

// ------------------------------------------------------------- providers --

func newMarketProvidersCmd(g *globals, addr *string) *cobra.Command {
	return &cobra.Command{
		Use:   "providers",
		Short: "List the market's providers: GPUs free/total, state, reliability",
		Example: `  megha market providers
  megha market providers --market 127.0.0.1:7100 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(g); err != nil {
				return err
			}
			c, ctx, done, err := dialMarket(cmd, g, *addr, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			ps, err := c.Providers(ctx)
			if err != nil {
				if errors.Is(err, grpcmarket.ErrNoOperator) {
					return fmt.Errorf("%w\nhint: only the embedded market (`megha market serve`) lists its providers", err)
				}
				return err
			}
			if g.output == "json" {
				return printJSONValue(cmd, providersJSON(ps))
			}
			if len(ps) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No providers.")
				return nil
			}
			rows := make([][]string, 0, len(ps))
			for _, p := range ps {
				rows = append(rows, []string{p.Name, orDash(p.Region), providerGPUs(p.GPUs), providerState(p),
					fmt.Sprintf("%.1f%%", 100*p.Reliability), p.Address})
			}
			return table(cmd.OutOrStdout(), []string{"NAME", "REGION", "GPUS (FREE/TOTAL)", "STATE", "RELIABILITY", "ADDRESS"}, rows)
		},
	}
}

// providerGPUs renders "6/8 H100-SXM, 4/4 A100-80G".
func providerGPUs(gs []grpcmarket.GPUCount) string {
	if len(gs) == 0 {
		return "none"
	}
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf("%d/%d %s", g.Free, g.Total, g.Model)
	}
	return strings.Join(parts, ", ")
}

func providerState(p grpcmarket.ProviderInfo) string {
	switch {
	case p.State == "reclaiming" && !p.FailsAt.IsZero():
		return "reclaiming (fails " + p.FailsAt.Local().Format(time.TimeOnly) + ")"
	case p.State == "down" && !p.UpAt.IsZero():
		return "down (back " + p.UpAt.Local().Format(time.TimeOnly) + ")"
	}
	return p.State
}

type providerJSON struct {
	Name          string            `json:"name"`
	Address       string            `json:"address"`
	Region        string            `json:"region"`
	GPUs          []gpuCountJSON    `json:"gpus"`
	State         string            `json:"state"`
	FailsAt       *time.Time        `json:"fails_at,omitempty"`
	UpAt          *time.Time        `json:"up_at,omitempty"`
	Reliability   float64           `json:"reliability"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	BandwidthMbps float64           `json:"bandwidth_mbps"`
	LatencyMs     float64           `json:"latency_ms"`
}

type gpuCountJSON struct {
	Model string `json:"model"`
	Total int    `json:"total"`
	Free  int    `json:"free"`
}

func providersJSON(ps []grpcmarket.ProviderInfo) []providerJSON {
	out := make([]providerJSON, len(ps))
	for i, p := range ps {
		j := providerJSON{Name: p.Name, Address: p.Address, Region: p.Region, GPUs: []gpuCountJSON{}, State: p.State,
			Reliability: p.Reliability, Attributes: p.Attributes, BandwidthMbps: p.BandwidthMbps, LatencyMs: p.LatencyMs}
		for _, g := range p.GPUs {
			j.GPUs = append(j.GPUs, gpuCountJSON{Model: g.Model, Total: g.Total, Free: g.Free})
		}
		if !p.FailsAt.IsZero() {
			j.FailsAt = &p.FailsAt
		}
		if !p.UpAt.IsZero() {
			j.UpAt = &p.UpAt
		}
		out[i] = j
	}
	return out
}

// ------------------------------------------------------------------ fail --

func newMarketFailCmd(g *globals, addr *string) *cobra.Command {
	return &cobra.Command{
		Use:   "fail PROVIDER",
		Short: "Make a provider of the embedded market fail now (drills and tests)",
		Long: `Make a provider fail now, as if its machines went away: its leases close
(tenants see a lease-closed event), their workers stop, and the provider is down
for its catalog MTTR. PROVIDER is a name from ` + "`megha market providers`" + ` or an address.`,
		Example: `  megha market fail lambda-east`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := dialMarket(cmd, g, *addr, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			if err := c.Fail(ctx, args[0]); err != nil {
				if errors.Is(err, lease.ErrNotFound) {
					return fmt.Errorf("%w\nhint: `megha market providers` lists the providers", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Provider %s failed: its leases are closed and it is down for its MTTR.\n", args[0])
			return nil
		},
	}
}

// ------------------------------------------------------------------ bids --

func newMarketBidsCmd(g *globals, addr *string) *cobra.Command {
	var selSpec, region string
	var want int
	cmd := &cobra.Command{
		Use:   "bids ORDER",
		Short: "List an order's bids and what a bid selector makes of each",
		Long: `List the bids on ORDER, prices per GPU-hour, then one line per bid from a bid
selector: whether it would be chosen for --want leases, and why. Selectors: ` +
			strings.Join(lease.SelectorNames(), ", ") + `, or a weighted mix such as
"cheapest:0.5,reliable:0.5".`,
		Example: `  megha market bids o-1
  megha market bids o-1 --selector cheapest --want 4
  megha market bids o-1 --selector nearest --region us-east -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(g); err != nil {
				return err
			}
			sel, err := lease.ParseSelector(selSpec)
			if err != nil {
				return fmt.Errorf("--selector: %w", err)
			}
			if want < 1 {
				return fmt.Errorf("--want %d: ask for at least 1 lease", want)
			}
			c, ctx, done, err := dialMarket(cmd, g, *addr, 30*time.Second)
			if err != nil {
				return err
			}
			defer done()
			p, err := c.Params(ctx)
			if err != nil {
				return err
			}
			bids, err := c.Bids(ctx, args[0])
			if err != nil {
				if errors.Is(err, lease.ErrNotFound) {
					return fmt.Errorf("%w\nhint: order IDs come from the tenant that posted the order (the coordinator's `megha status JOB`)", err)
				}
				return err
			}
			bph, _ := lease.BlocksPerHour(p.BlockTime).Float64()
			// The market lists only bids that fit the order, so the
			// selector needs no more of it than its ID.
			selection := sel.Select(lease.SelectInput{Order: lease.Order{ID: args[0]}, Bids: bids, Want: want,
				BlocksPerHour: bph, Region: region})
			if g.output == "json" {
				return printJSONValue(cmd, bidsJSON(bids, selection, p.BlockTime))
			}
			out := cmd.OutOrStdout()
			if len(bids) == 0 {
				fmt.Fprintf(out, "No bids on order %s. Providers bid when an order opens and when their GPUs free up.\n", args[0])
				return nil
			}
			rows := make([][]string, 0, len(bids))
			for _, b := range bids {
				rows = append(rows, []string{b.ID, orDash(b.ProviderName), fmt.Sprintf("%d× %s", b.GPUs, b.GPUModel),
					fmt.Sprint(b.Count), gpuHourPrice(b, p.BlockTime),
					orDash(b.Region), fmt.Sprintf("%.1f%%", 100*b.Reliability)})
			}
			if err := table(out, []string{"BID", "PROVIDER", "GPUS/LEASE", "LEASES", "PRICE/GPU-HOUR", "REGION", "RELIABILITY"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nSelector %s, %d lease(s) wanted:\n", sel.Name(), want)
			for _, e := range selection.Explanations {
				fmt.Fprintln(out, "  "+e.Line)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&selSpec, "selector", lease.SelectThroughputPerDollar, "bid selector: "+strings.Join(lease.SelectorNames(), ", ")+", or a weighted mix")
	fl.IntVar(&want, "want", 1, "leases wanted, for the selector's choice")
	fl.StringVar(&region, "region", "", "your region, for the nearest selector")
	return cmd
}

// gpuHourPrice renders a bid's price per GPU-hour to the whole micro-unit
// ($0.000001): a price per block is a rounded 18-decimal quotient, and
// turning it back into an hourly price shows the rounding in its last
// digits ("$0.329650999999999999").
func gpuHourPrice(b lease.Bid, blockTime time.Duration) string {
	h := lease.PerGPUHour(b.PricePerBlock, b.GPUs, blockTime)
	if h.Amount.IsNil() {
		return "-"
	}
	h.Amount = sdkmath.LegacyNewDecFromInt(h.Amount.RoundInt())
	return lease.Format(h)
}

type bidJSON struct {
	ID              string            `json:"id"`
	OrderID         string            `json:"order_id"`
	Provider        string            `json:"provider"`
	ProviderName    string            `json:"provider_name"`
	GPUModel        string            `json:"gpu_model"`
	GPUs            int               `json:"gpus"`
	VRAMGiB         int               `json:"vram_gib"`
	Count           int               `json:"count"`
	PricePerBlock   string            `json:"price_per_block"`
	PricePerGPUHour string            `json:"price_per_gpu_hour"`
	Region          string            `json:"region"`
	Reliability     float64           `json:"reliability"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	Chosen          int               `json:"chosen"`
	Score           float64           `json:"score"`
	Explanation     string            `json:"explanation"`
}

func bidsJSON(bids []lease.Bid, s lease.Selection, blockTime time.Duration) []bidJSON {
	expl := make(map[string]lease.Explanation, len(s.Explanations))
	for _, e := range s.Explanations {
		expl[e.BidID] = e
	}
	out := make([]bidJSON, len(bids))
	for i, b := range bids {
		e := expl[b.ID]
		out[i] = bidJSON{ID: b.ID, OrderID: b.OrderID, Provider: b.Provider, ProviderName: b.ProviderName,
			GPUModel: b.GPUModel, GPUs: b.GPUs, VRAMGiB: b.VRAMGiB, Count: b.Count, PricePerBlock: b.PricePerBlock.String(),
			PricePerGPUHour: lease.PerGPUHour(b.PricePerBlock, b.GPUs, blockTime).String(), Region: b.Region,
			Reliability: b.Reliability, Attributes: b.Attributes, Chosen: e.Chosen, Score: e.Score, Explanation: e.Line}
	}
	return out
}
