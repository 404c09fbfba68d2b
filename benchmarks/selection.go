package benchmarks

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	sdkmath "cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"

	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/worker/gpu"
)

// Bid selection (lease.Selector), in process, on generated bid sets:
//
//	selection-quality  throughput per dollar of the throughput-per-dollar
//	                   selector's choice ÷ the optimum found by exhaustive
//	                   search, over many small random heterogeneous instances
//	selection-scale    seconds to choose 10,000 GPUs from 1,000 providers'
//	                   bids, for the slowest selector

// SelectionBenchmarks returns selection-quality and selection-scale.
func SelectionBenchmarks() map[string]func(context.Context, Config) (*Result, error) {
	return map[string]func(context.Context, Config) (*Result, error){
		"selection-quality": RunSelectionQuality,
		"selection-scale":   RunSelectionScale,
	}
}

const (
	selQualityGoal = 0.95
	selScaleGoal   = 1.0 // seconds
	selBPH         = lease.DefaultBlocksPerHour
)

// selBid is a bid of count leases of gpus GPUs at dollars per GPU-hour.
func selBid(id, provider, model string, gpus, count int, dollars float64) lease.Bid {
	// micro-USD per block per lease = dollars × 1e6 × gpus ÷ blocks per hour.
	micro := sdkmath.LegacyMustNewDecFromStr(fmt.Sprintf("%.6f", dollars)).MulInt64(1_000_000 * int64(gpus))
	perBlock := micro.Quo(sdkmath.LegacyNewDec(int64(selBPH)))
	m, _ := gpu.Lookup(model)
	return lease.Bid{
		ID: id, OrderID: "o-1", Provider: provider, ProviderName: provider, GPUModel: model, VRAMGiB: m.MemoryGiB,
		GPUs: gpus, Count: count, PricePerBlock: sdk.NewDecCoinFromDec(lease.DefaultDenom, perBlock),
	}
}

func selMaxPrice(dollars float64) sdk.DecCoin {
	return sdk.NewDecCoinFromDec(lease.DefaultDenom, sdkmath.LegacyMustNewDecFromStr(fmt.Sprintf("%.6f", dollars*1e6)))
}

// selPrice draws a price per GPU-hour in the catalog's indicative range
// for m, ±25%, in whole cents.
func selPrice(r *rand.Rand, m gpu.Model) float64 {
	p := m.PriceLowUSD + r.Float64()*(m.PriceHighUSD-m.PriceLowUSD)
	p *= 0.8 + 0.45*r.Float64()
	return math.Max(0.01, math.Round(p*100)/100)
}

// selInstance is one small random order with its bids.
func selInstance(r *rand.Rand) lease.SelectInput {
	models := gpu.Models()
	gpw := []int{1, 1, 2, 4, 8}[r.IntN(5)]
	want := 2 + r.IntN(7)
	// Max price on a half cent, so that no bid (whole cents) sits on it.
	o := lease.Order{ID: "o-1", GPUsPerWorker: gpw, Workers: want, MaxPricePerGPUHour: selMaxPrice(float64(100+r.IntN(300))/100 + 0.005)}
	if r.IntN(3) == 0 {
		for _, m := range models {
			if r.IntN(2) == 0 {
				o.GPUModels = append(o.GPUModels, m.ID)
			}
		}
	}
	in := lease.SelectInput{Order: o, Want: want, BlocksPerHour: selBPH}
	// Half the instances use "measured" throughput: each model at 35–100%
	// of its catalog peak, so throughput is no longer proportional to
	// the catalog and the ranking has more to get wrong.
	if r.IntN(2) == 0 {
		in.Throughput = map[string]float64{}
		for _, m := range models {
			in.Throughput[m.ID] = gpu.EstimateThroughput(m) * (0.35 + 0.65*r.Float64())
		}
	}
	n := 3 + r.IntN(6)
	providers := 1 + r.IntN(n)
	for i := range n {
		m := models[r.IntN(len(models))]
		gpus := gpw
		if r.IntN(8) == 0 {
			gpus = 1 + r.IntN(8) // sometimes the wrong shape
		}
		in.Bids = append(in.Bids, selBid(fmt.Sprintf("b-%d", i), fmt.Sprintf("p-%d", r.IntN(providers)), m.ID, gpus, 1+r.IntN(3), selPrice(r, m)))
	}
	return in
}

// selItem is an eligible bid as the exhaustive search sees it: per lease.
type selItem struct {
	t, p  float64
	count int
}

// selItems lists the bids the order can take (the benchmark's own filter:
// shape, model, price ≤ max) with throughput and price per lease.
func selItems(in lease.SelectInput) []selItem {
	maxUSD, _ := in.Order.MaxPricePerGPUHour.Amount.Float64()
	maxUSD /= 1e6
	var out []selItem
	for _, b := range in.Bids {
		price := lease.PricePerGPUHour(b, selBPH)
		if b.GPUs != in.Order.GPUsPerWorker || price > maxUSD ||
			(len(in.Order.GPUModels) > 0 && !slices.Contains(in.Order.GPUModels, b.GPUModel)) {
			continue
		}
		out = append(out, selItem{t: selTput(in, b.GPUModel) * float64(b.GPUs), p: price * float64(b.GPUs), count: b.Count})
	}
	return out
}

func selTput(in lease.SelectInput, model string) float64 {
	if v, ok := in.Throughput[model]; ok {
		return v
	}
	m, _ := gpu.Lookup(model)
	return gpu.EstimateThroughput(m)
}

// selOptimum is the best Σt/Σp over every way to take exactly k slots.
func selOptimum(items []selItem, k int) float64 {
	best := 0.0
	var walk func(i, left int, t, p float64)
	walk = func(i, left int, t, p float64) {
		if left == 0 {
			best = max(best, t/p)
			return
		}
		if i == len(items) {
			return
		}
		for c := min(items[i].count, left); c >= 0; c-- {
			walk(i+1, left-c, t+float64(c)*items[i].t, p+float64(c)*items[i].p)
		}
	}
	walk(0, k, 0, 0)
	return best
}

// selGreedy ranks bids by their own throughput per dollar and fills k
// slots: the obvious algorithm, for comparison.
func selGreedy(items []selItem, k int) float64 {
	s := slices.Clone(items)
	slices.SortStableFunc(s, func(a, b selItem) int { return -cmpFloat(a.t/a.p, b.t/b.p) })
	var t, p float64
	for _, it := range s {
		c := min(it.count, k)
		t, p, k = t+float64(c)*it.t, p+float64(c)*it.p, k-c
	}
	return t / p
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// selChosen is the throughput per dollar of a selection.
func selChosen(in lease.SelectInput, s lease.Selection) float64 {
	var t, p float64
	for _, pk := range s.Picks {
		t += float64(pk.Count*pk.Bid.GPUs) * selTput(in, pk.Bid.GPUModel)
		p += float64(pk.Count*pk.Bid.GPUs) * lease.PricePerGPUHour(pk.Bid, selBPH)
	}
	return t / p
}

// RunSelectionQuality measures the throughput-per-dollar selector against
// the exhaustive optimum on random small instances.
func RunSelectionQuality(ctx context.Context, cfg Config) (*Result, error) {
	instances := 3000
	if cfg.Quick {
		instances = 200
	}
	tpd, err := lease.ParseSelector(lease.SelectThroughputPerDollar)
	if err != nil {
		return nil, err
	}
	cheapest, _ := lease.ParseSelector(lease.SelectCheapest)
	r := rand.New(rand.NewPCG(2026, 11))
	var ratios, greedy, cheap []float64
	skipped := 0
	for len(ratios) < instances {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in := selInstance(r)
		items := selItems(in)
		slots := 0
		for _, it := range items {
			slots += it.count
		}
		k := min(in.Want, slots)
		if k == 0 {
			skipped++
			continue
		}
		opt := selOptimum(items, k)
		s := tpd.Select(in)
		if s.Leases() != k {
			return nil, fmt.Errorf("instance %d: %d leases chosen, %d possible", len(ratios), s.Leases(), k)
		}
		ratios = append(ratios, selChosen(in, s)/opt)
		greedy = append(greedy, selGreedy(items, k)/opt)
		cheap = append(cheap, selChosen(in, cheapest.Select(in))/opt)
	}
	below := func(xs []float64) float64 {
		n := 0
		for _, x := range xs {
			if x < selQualityGoal {
				n++
			}
		}
		return 100 * float64(n) / float64(len(xs))
	}
	figure := slices.Min(ratios)
	notes := fmt.Sprintf("Throughput per dollar (Σ throughput ÷ Σ price of the chosen slots) of the throughput-per-dollar "+
		"selector (Dinkelbach iteration) ÷ the optimum by exhaustive search over every way to take the same number of slots; "+
		"figure = the minimum over %d random instances (median %.4f, p5 %.4f). Instances: 3–8 bids of 1–3 leases each "+
		"from up to 8 providers, catalog GPU models at catalog price ranges ±25%%, 1–8 GPUs per lease (1 bid in 8 of the wrong shape), "+
		"max price $1.005–3.995/GPU-h, a third restrict the GPU models, 2–8 leases wanted; half use catalog TFLOPS, half a "+
		"\"measured\" throughput of 35–100%% of catalog per model; %d drawn instances with no eligible bid skipped. "+
		"For comparison, ranking bids by their own throughput per dollar: min %.3f, median %.4f, %.1f%% of instances below %.2f; "+
		"cheapest: min %.3f, median %.3f.",
		len(ratios), Median(ratios), Percentile(ratios, 5), skipped,
		slices.Min(greedy), Median(greedy), below(greedy), selQualityGoal, slices.Min(cheap), Median(cheap))
	return &Result{
		Name: "selection-quality", Figure: round(figure, 4), Unit: "× optimum",
		Baseline: nil, BaselineName: "exhaustive optimum (ratio = figure)",
		Ratio: round(figure, 4), Goal: selQualityGoal, Better: Higher, Runs: len(ratios),
		Machine: ThisMachine(), Date: Today(), Notes: notes,
	}, nil
}

// selMarket is 1,000 providers' bids for single-GPU leases, 1–5 bids a
// provider of 4–16 leases each.
func selMarket(r *rand.Rand, providers int) []lease.Bid {
	models := gpu.Models()
	regions := []string{"us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-east"}
	var bids []lease.Bid
	for p := range providers {
		prov := fmt.Sprintf("akash1provider%04d", p)
		rel := 0.9 + 0.0999*r.Float64()
		region := regions[r.IntN(len(regions))]
		lat := 5 + 195*r.Float64()
		for range 1 + r.IntN(5) {
			m := models[r.IntN(len(models))]
			b := selBid(fmt.Sprintf("b-%d", len(bids)), prov, m.ID, 1, 4+r.IntN(13), selPrice(r, m))
			b.Reliability, b.Region, b.LatencyMs = rel, region, lat
			bids = append(bids, b)
		}
	}
	return bids
}

// RunSelectionScale times every selector (and two mixes) choosing 10,000
// single-GPU leases from 1,000 providers' bids; the figure is the slowest
// selector's median.
func RunSelectionScale(ctx context.Context, cfg Config) (*Result, error) {
	const providers, want = 1000, 10_000
	runs := 7
	if cfg.Quick {
		runs = 1
	}
	bids := selMarket(rand.New(rand.NewPCG(7, 1000)), providers)
	slots := 0
	for _, b := range bids {
		slots += b.Count
	}
	in := lease.SelectInput{
		Order: lease.Order{ID: "o-1", GPUsPerWorker: 1, Workers: want, MaxPricePerGPUHour: selMaxPrice(3.5)},
		Bids:  bids, Want: want, BlocksPerHour: selBPH, Region: "eu-west",
	}
	specs := append(lease.SelectorNames(), "throughput-per-dollar:0.4,reliable:0.3,spread:0.3", "cheapest:0.5,nearest:0.5")
	var parts []string
	var slowest []float64
	slowestName := ""
	for _, spec := range specs {
		sel, err := lease.ParseSelector(spec)
		if err != nil {
			return nil, err
		}
		var secs []float64
		for range runs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			start := time.Now()
			s := sel.Select(in)
			secs = append(secs, time.Since(start).Seconds())
			if s.Leases() != want || len(s.Explanations) != len(bids) {
				return nil, fmt.Errorf("%s chose %d leases (want %d), %d explanations for %d bids",
					spec, s.Leases(), want, len(s.Explanations), len(bids))
			}
		}
		med := Median(secs)
		cfg.logf("selection-scale: %s: median %.1f ms", spec, med*1000)
		parts = append(parts, fmt.Sprintf("%s %.1f ms", spec, med*1000))
		if med > Median(slowest) || slowest == nil {
			slowest, slowestName = secs, spec
		}
	}
	figure := Median(slowest)
	notes := fmt.Sprintf("Seconds for Selector.Select (filter, rank, fill, and one explanation line per bid) to choose %d single-GPU leases "+
		"from %d bids (%d slots) of %d providers (1–5 bids each of 4–16 leases, catalog models at catalog prices ±25%%, "+
		"max price $3.50/GPU-h); figure = the slowest selector's median (%s) of %d runs; medians: %s.",
		want, len(bids), slots, providers, slowestName, runs, strings.Join(parts, ", "))
	return &Result{
		Name: "selection-scale", Figure: round(figure, 4), Unit: "s",
		Baseline: nil, BaselineName: "none (absolute bound)",
		Ratio: round(figure, 4), Goal: selScaleGoal, Better: Lower, Runs: runs,
		Machine: ThisMachine(), Date: Today(), Notes: notes, Samples: slowest,
	}, nil
}
