package lease

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"

	sdkmath "cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	"pgregory.net/rapid"
)

var propModels = []string{"H200", "H100-SXM", "A100-80GB", "L40S", "RTX4090", "T4", "NOT-IN-CATALOG"}

// propInput draws an order and a heterogeneous set of bids on it, some of
// which the order cannot take.
func propInput(t *rapid.T) SelectInput {
	gpw := rapid.IntRange(1, 4).Draw(t, "gpus_per_worker")
	// Blocks per hour with at most 12 decimals, so the exact check below
	// sees the same number as the selector.
	bph := rapid.SampledFrom([]float64{0, 600, 3600, 720.5}).Draw(t, "blocks_per_hour")
	perHour := bph
	if perHour == 0 {
		perHour = DefaultBlocksPerHour
	}
	o := Order{ID: "o-1", GPUsPerWorker: gpw, Workers: rapid.IntRange(0, 30).Draw(t, "workers"),
		MinVRAMGiB: rapid.SampledFrom([]int{0, 40, 80}).Draw(t, "min_vram")}
	if rapid.Bool().Draw(t, "restrict_models") {
		o.GPUModels = rapid.SliceOfNDistinct(rapid.SampledFrom(propModels), 1, 4, rapid.ID[string]).Draw(t, "models")
	}
	if rapid.IntRange(0, 3).Draw(t, "restrict_region") == 0 {
		o.Region = "us-east"
	}
	if rapid.IntRange(0, 4).Draw(t, "uncapped") > 0 {
		o.MaxPricePerGPUHour = sdk.NewDecCoinFromDec(DefaultDenom, sdkmath.LegacyNewDec(rapid.Int64Range(0, 400).Draw(t, "max_cents")*10_000))
	}
	in := SelectInput{Order: o, Want: rapid.IntRange(0, 35).Draw(t, "want"), BlocksPerHour: bph}
	if rapid.Bool().Draw(t, "region") {
		in.Region = "us-east"
	}
	if rapid.Bool().Draw(t, "measured") {
		in.Throughput = map[string]float64{"H100-SXM": 1000, "T4": 30}
	}
	nProv := rapid.IntRange(1, 8).Draw(t, "providers")
	n := rapid.IntRange(0, 20).Draw(t, "bids")
	for i := range n {
		gpus := gpw
		if rapid.IntRange(0, 5).Draw(t, "odd_gpus") == 0 {
			gpus = rapid.IntRange(1, 4).Draw(t, "gpus")
		}
		denom := DefaultDenom
		if rapid.IntRange(0, 9).Draw(t, "akt") == 0 {
			denom = "uakt"
		}
		// Price per GPU-hour in cents → per block per lease, exactly.
		cents := rapid.Int64Range(0, 500).Draw(t, "cents")
		perBlock := sdkmath.LegacyNewDec(cents * 10_000 * int64(gpus)).Quo(sdkmath.LegacyMustNewDecFromStr(fmt.Sprintf("%.1f", perHour)))
		p := rapid.IntRange(0, nProv-1).Draw(t, "provider")
		in.Bids = append(in.Bids, Bid{
			ID: fmt.Sprintf("b-%02d", i), OrderID: "o-1",
			Provider: fmt.Sprintf("akash1prov%d", p), ProviderName: fmt.Sprintf("prov-%d", p),
			GPUModel:      rapid.SampledFrom(propModels).Draw(t, "model"),
			VRAMGiB:       rapid.SampledFrom([]int{24, 48, 80, 141}).Draw(t, "vram"),
			GPUs:          gpus,
			Count:         rapid.IntRange(0, 6).Draw(t, "count"),
			PricePerBlock: sdk.NewDecCoinFromDec(denom, perBlock),
			Region:        rapid.SampledFrom([]string{"us-east", "us-west", "eu-west", ""}).Draw(t, "bid_region"),
			Reliability:   float64(rapid.IntRange(800, 1000).Draw(t, "reliability")) / 1000,
			LatencyMs:     rapid.SampledFrom([]float64{0, 8, 40, 120}).Draw(t, "latency"),
		})
	}
	return in
}

// propSelector draws a selector name or a mix.
func propSelector(t *rapid.T) Selector {
	names := SelectorNames()
	spec := rapid.SampledFrom(names).Draw(t, "selector")
	if rapid.Bool().Draw(t, "mix") {
		var parts []string
		for _, n := range rapid.SliceOfNDistinct(rapid.SampledFrom(names), 2, 5, rapid.ID[string]).Draw(t, "mix_names") {
			parts = append(parts, fmt.Sprintf("%s:%d", n, rapid.IntRange(0, 4).Draw(t, "weight")))
		}
		if spec = strings.Join(parts, ","); !strings.ContainsAny(spec, "1234") {
			spec = strings.Replace(spec, ":0", ":1", 1) // keep one weight positive
		}
	}
	s, err := ParseSelector(spec)
	if err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return s
}

// propEligible is the filter, written out independently of selPrepare;
// the price check is exact (big.Rat).
func propEligible(in SelectInput, b Bid) bool {
	o := in.Order
	denom := o.MaxPricePerGPUHour.Denom
	if denom == "" && len(in.Bids) > 0 {
		denom = in.Bids[0].PricePerBlock.Denom
	}
	if b.OrderID != o.ID || b.Count <= 0 || b.GPUs != o.GPUsPerWorker || b.VRAMGiB < o.MinVRAMGiB ||
		(len(o.GPUModels) > 0 && !slices.Contains(o.GPUModels, b.GPUModel)) ||
		(o.Region != "" && b.Region != o.Region) || b.PricePerBlock.Denom != denom {
		return false
	}
	if o.MaxPricePerGPUHour.Amount.IsNil() {
		return true
	}
	bph := in.BlocksPerHour
	if bph == 0 {
		bph = DefaultBlocksPerHour
	}
	price, _ := new(big.Rat).SetString(b.PricePerBlock.Amount.String())
	price.Mul(price, new(big.Rat).SetFloat64(bph))
	price.Quo(price, big.NewRat(int64(b.GPUs), 1))
	limit, _ := new(big.Rat).SetString(o.MaxPricePerGPUHour.Amount.String())
	return price.Cmp(limit) <= 0
}

func propWant(in SelectInput) int {
	w := in.Want
	if w <= 0 {
		w = in.Order.Workers
	}
	if in.Order.Workers > 0 {
		w = min(w, in.Order.Workers)
	}
	return max(w, 0)
}

func TestSelectProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := propInput(t)
		sel := propSelector(t)
		s := sel.Select(in)

		capacity := 0
		for _, b := range in.Bids {
			if propEligible(in, b) {
				capacity += b.Count
			}
		}
		want := propWant(in)
		chosen := map[string]int{}
		for _, p := range s.Picks {
			if !propEligible(in, p.Bid) {
				t.Fatalf("%s picked ineligible bid %+v", sel.Name(), p.Bid)
			}
			if p.Count < 1 || p.Count > p.Bid.Count {
				t.Fatalf("%s took %d slots of %s, which offers %d", sel.Name(), p.Count, p.Bid.ID, p.Bid.Count)
			}
			if _, dup := chosen[p.Bid.ID]; dup {
				t.Fatalf("%s picked %s twice", sel.Name(), p.Bid.ID)
			}
			chosen[p.Bid.ID] = p.Count
		}
		if got := s.Leases(); got != min(want, capacity) {
			t.Fatalf("%s chose %d leases; want %d of %d offered", sel.Name(), got, want, capacity)
		}
		if len(s.Explanations) != len(in.Bids) {
			t.Fatalf("%d explanations for %d bids", len(s.Explanations), len(in.Bids))
		}
		for i, e := range s.Explanations {
			b := in.Bids[i]
			if e.BidID != b.ID || e.Chosen != chosen[b.ID] || !(e.Score >= 0 && e.Score <= 1) ||
				!strings.HasPrefix(e.Line, "bid "+b.ID+" (") || strings.Contains(e.Line, "\n") ||
				strings.Contains(e.Line, ": chosen") != (e.Chosen > 0) {
				t.Fatalf("%s: explanation %d: %+v for %+v", sel.Name(), i, e, b)
			}
		}

		// Deterministic, and the name parses back to the same selector.
		if again := sel.Select(in); !reflect.DeepEqual(again, s) {
			t.Fatalf("%s: two selections differ", sel.Name())
		}
		if again := mustParse(t, sel.Name()).Select(in); !reflect.DeepEqual(again, s) {
			t.Fatalf("%s: the reparsed selector differs", sel.Name())
		}
	})
}

func mustParse(t *rapid.T, spec string) Selector {
	s, err := ParseSelector(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpreadProperties: no provider holds more than the least possible
// maximum, hence at most ceil(k/providers) when every provider can take
// that many.
func TestSpreadProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := propInput(t)
		// Leases the job already holds: drawn for some runs, so that the
		// property covers a replacement's choice too.
		prior := map[string]int{}
		if rapid.Bool().Draw(t, "replacement") {
			for _, b := range in.Bids {
				if _, ok := prior[b.Provider]; !ok {
					prior[b.Provider] = rapid.IntRange(0, 3).Draw(t, "held")
				}
			}
			in.Held = prior
		}
		s := selSpread{}.Select(in)
		caps := map[string]int{}
		for _, b := range in.Bids {
			if propEligible(in, b) {
				caps[b.Provider] += b.Count
			}
		}
		held := map[string]int{}
		most := 0
		for _, p := range s.Picks {
			held[p.Bid.Provider] += p.Count
			most = max(most, prior[p.Bid.Provider]+held[p.Bid.Provider])
		}
		k := s.Leases()
		var cs, hs []int
		for prov, c := range caps {
			cs, hs = append(cs, c), append(hs, prior[prov])
		}
		if level := selWaterLevel(cs, hs, k); k > 0 && most != level {
			t.Fatalf("most on one provider %d; the least possible is %d (caps %v, held %v, %d leases)", most, level, caps, prior, k)
		}
		if k == 0 || len(prior) > 0 {
			return
		}
		share := (k + len(caps) - 1) / len(caps)
		enough := true
		for _, c := range caps {
			enough = enough && c >= share
		}
		if enough && most > share {
			t.Fatalf("%d on one provider; ceil(%d/%d) = %d", most, k, len(caps), share)
		}
	})
}

// TestMixOfOneIsTheSelector: a weighted mix with one weight is that
// selector, line for line.
func TestMixOfOneIsTheSelector(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := propInput(t)
		name := rapid.SampledFrom(SelectorNames()).Draw(t, "name")
		w := rapid.Float64Range(0.01, 100).Draw(t, "weight")
		other := rapid.SampledFrom(SelectorNames()).Filter(func(s string) bool { return s != name }).Draw(t, "other")
		spec := fmt.Sprintf("%s:%g", name, w)
		if rapid.Bool().Draw(t, "with_zero") {
			spec += "," + other + ":0"
		}
		base, _ := selBase(name)
		if got, want := mustParse(t, spec).Select(in), base.Select(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s differs from %s", spec, name)
		}
	})
}

// TestThroughputPerDollarIsOptimal compares with exhaustive search over
// every way to take the same number of slots.
func TestThroughputPerDollarIsOptimal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := propInput(t)
		s := selTPD{}.Select(in)
		tputOf, _ := selThroughputFunc(in.Throughput)
		type item struct{ t, p float64 }
		var items []item
		var counts []int
		slots := 0
		for _, b := range in.Bids {
			if propEligible(in, b) {
				items = append(items, item{tputOf(b.GPUModel) * float64(b.GPUs), PricePerGPUHour(b, in.BlocksPerHour) * float64(b.GPUs)})
				counts = append(counts, b.Count)
				slots += b.Count
			}
		}
		k := s.Leases()
		if k == 0 || len(items) > 9 {
			return
		}
		ratio := func(t, p float64) float64 {
			switch {
			case p > 0:
				return t / p
			case t > 0:
				return math.Inf(1)
			}
			return 0
		}
		best := math.Inf(-1)
		var walk func(i, left int, t, p float64)
		walk = func(i, left int, t, p float64) {
			if i == len(items) {
				if left == 0 {
					best = max(best, ratio(t, p))
				}
				return
			}
			for c := 0; c <= min(counts[i], left); c++ {
				walk(i+1, left-c, t+float64(c)*items[i].t, p+float64(c)*items[i].p)
			}
		}
		walk(0, k, 0, 0)
		var gt, gp float64
		for _, p := range s.Picks {
			gt += float64(p.Count) * tputOf(p.Bid.GPUModel) * float64(p.Bid.GPUs)
			gp += float64(p.Count) * PricePerGPUHour(p.Bid, in.BlocksPerHour) * float64(p.Bid.GPUs)
		}
		got := ratio(gt, gp)
		if !(got >= best*(1-1e-9)) && !(math.IsInf(best, 1) && math.IsInf(got, 1)) {
			t.Fatalf("throughput per dollar %v; the best of %d slots is %v", got, k, best)
		}
	})
}
