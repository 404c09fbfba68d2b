package lease

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	sdkmath "cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	"github.com/megha-ml/megha/jobspec"
)

// usd is a uusdc amount of dollars.
func usd(dollars float64) sdk.DecCoin {
	return sdk.NewDecCoinFromDec(DefaultDenom, sdkmath.LegacyMustNewDecFromStr(strconv.FormatFloat(dollars*1e6, 'f', 9, 64)))
}

// testBid is a bid of count leases of gpus GPUs at dollars per GPU-hour
// (600 blocks an hour).
func testBid(id, provider, model string, gpus, count int, dollars float64) Bid {
	perBlock := usd(dollars * float64(gpus) / DefaultBlocksPerHour)
	return Bid{
		ID: id, OrderID: "o-1", Provider: provider, ProviderName: provider, GPUModel: model, VRAMGiB: 80,
		GPUs: gpus, Count: count, PricePerBlock: perBlock, Reliability: 0.99,
	}
}

func testOrder(workers int, maxDollars float64) Order {
	return Order{ID: "o-1", GPUsPerWorker: 1, Workers: workers, MaxPricePerGPUHour: usd(maxDollars), Open: true}
}

func mustSelector(t *testing.T, spec string) Selector {
	t.Helper()
	s, err := ParseSelector(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// picked maps bid ID → slots chosen.
func picked(s Selection) map[string]int {
	out := map[string]int{}
	for _, p := range s.Picks {
		out[p.Bid.ID] += p.Count
	}
	return out
}

func TestPricePerGPUHour(t *testing.T) {
	b := Bid{GPUs: 4, PricePerBlock: sdk.NewDecCoinFromDec(DefaultDenom, sdkmath.LegacyNewDec(14000))}
	// 14,000 uusdc a block × 600 blocks ÷ 4 GPUs = 2,100,000 uusdc = $2.10.
	if got := PricePerGPUHour(b, 600); math.Abs(got-2.10) > 1e-9 {
		t.Fatalf("got %v, want 2.10", got)
	}
	if got := PricePerGPUHour(b, 0); math.Abs(got-2.10) > 1e-9 {
		t.Fatalf("default blocks per hour: got %v", got)
	}
	b.PricePerBlock.Denom = "uakt"
	if got := PricePerGPUHour(b, 600); math.Abs(got-2.10) > 1e-9 {
		t.Fatalf("uakt: got %v, want 2.10 AKT", got)
	}
}

func TestParseSelector(t *testing.T) {
	for _, name := range SelectorNames() {
		s := mustSelector(t, " "+strings.ToUpper(name)+" ")
		if s.Name() != name {
			t.Fatalf("%s: name %q", name, s.Name())
		}
	}
	s := mustSelector(t, "cheapest:0.5, reliable:0.5,spread")
	if s.Name() != "cheapest:0.5,reliable:0.5,spread:1" {
		t.Fatalf("mix name %q", s.Name())
	}
	for spec, want := range map[string]string{
		"":                       "empty",
		"fastest":                `unknown selector "fastest"`,
		"cheapest:0.5,fast:0.5":  `unknown selector "fast"`,
		"cheapest:x":             `weight "x" of cheapest`,
		"cheapest:-1":            `weight "-1" of cheapest`,
		"cheapest:0,reliable:0":  "every weight is 0",
		"cheapest,,reliable":     "empty part",
		"cheapest:1,cheapest:2":  "cheapest named twice",
		"reliable:NaN,spread:1":  `weight "NaN" of reliable`,
		"nearest:+Inf,spread:1":  `weight "+Inf" of nearest`,
		"throughput-per-dollar:": `weight "" of throughput-per-dollar`,
	} {
		_, err := ParseSelector(spec)
		if !errors.Is(err, ErrBadSelector) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "throughput-per-dollar, reliable, nearest, spread") {
			t.Errorf("%q: %v; want %q and the valid names", spec, err, want)
		}
	}
}

func TestFiltersExplainEveryBid(t *testing.T) {
	o := testOrder(10, 3)
	o.GPUModels = []string{"H100-SXM", "A100-80GB"}
	o.MinVRAMGiB = 40
	o.Region = "us-east"
	ok := func(id string) Bid {
		b := testBid(id, "p-"+id, "H100-SXM", 1, 1, 2)
		b.Region = "us-east"
		return b
	}
	bids := []Bid{ok("good")}
	add := func(id string, f func(*Bid)) { b := ok(id); f(&b); bids = append(bids, b) }
	add("other-order", func(b *Bid) { b.OrderID = "o-2" })
	add("empty", func(b *Bid) { b.Count = 0 })
	add("two-gpus", func(b *Bid) { b.GPUs = 2 })
	add("a10", func(b *Bid) { b.GPUModel = "A10" })
	add("small", func(b *Bid) { b.VRAMGiB = 24 })
	add("eu", func(b *Bid) { b.Region = "eu-west" })
	add("akt", func(b *Bid) { b.PricePerBlock.Denom = "uakt" })
	add("dear", func(b *Bid) { b.PricePerBlock = usd(3.01 / 600) })
	add("at-max", func(b *Bid) { b.PricePerBlock = usd(3.0 / 600) })
	want := map[string]string{
		"other-order": "bid is for order o-2, not o-1",
		"empty":       "no slots left",
		"two-gpus":    "2 GPUs per lease, order wants 1",
		"a10":         "GPU model A10 not accepted (order takes H100-SXM, A100-80GB)",
		"small":       "24 GiB of VRAM, order needs 40 GiB",
		"eu":          `region "eu-west", order wants us-east`,
		"akt":         "priced in uakt, order pays in uusdc",
		"dear":        "above max price $3.00/GPU-h",
	}
	for _, name := range append(SelectorNames(), "cheapest:1,reliable:1,spread:1", "nearest:2,throughput-per-dollar:1") {
		s := mustSelector(t, name).Select(SelectInput{Order: o, Bids: bids, Region: "us-east"})
		if len(s.Explanations) != len(bids) {
			t.Fatalf("%s: %d explanations for %d bids", name, len(s.Explanations), len(bids))
		}
		got := picked(s)
		if len(got) != 2 || got["good"] != 1 || got["at-max"] != 1 {
			t.Fatalf("%s: picked %v, want good and at-max", name, got)
		}
		for i, e := range s.Explanations {
			if e.BidID != bids[i].ID || e.Chosen != got[e.BidID] || strings.Count(e.Line, "\n") != 0 {
				t.Fatalf("%s: explanation %d: %+v", name, i, e)
			}
			if w, ok := want[e.BidID]; ok && !strings.HasSuffix(e.Line, ": not chosen: "+w) {
				t.Errorf("%s: %q\nwant it to end %q", name, e.Line, w)
			}
		}
	}
}

func TestCheapest(t *testing.T) {
	bids := []Bid{
		testBid("b-1", "p1", "H100-SXM", 1, 2, 2.5),
		testBid("b-2", "p2", "H100-SXM", 1, 3, 1.5),
		testBid("b-3", "p3", "A100-80GB", 1, 1, 1.5),
		testBid("b-4", "p4", "A100-80GB", 1, 5, 2.9),
	}
	s := mustSelector(t, "cheapest").Select(SelectInput{Order: testOrder(10, 3), Bids: bids, Want: 5})
	if got := picked(s); !reflect.DeepEqual(got, map[string]int{"b-2": 3, "b-3": 1, "b-1": 1}) {
		t.Fatalf("picked %v", got)
	}
	if s.Picks[0].Bid.ID != "b-2" || s.Picks[1].Bid.ID != "b-3" { // equal price: lower ID first
		t.Fatalf("pick order %+v", s.Picks)
	}
	lines := []string{
		"bid b-1 (p1, 1× H100-SXM, $2.50/GPU-h, 99.0% up): chosen ×1 of 2 — 3rd cheapest of 4 eligible bids",
		"bid b-2 (p2, 1× H100-SXM, $1.50/GPU-h, 99.0% up): chosen ×3 — the cheapest of 4 eligible bids",
		"bid b-3 (p3, 1× A100-80GB, $1.50/GPU-h, 99.0% up): chosen ×1 — 2nd cheapest of 4 eligible bids",
		"bid b-4 (p4, 1× A100-80GB, $2.90/GPU-h, 99.0% up): not chosen: the order was filled by 3 cheaper bids",
	}
	for i, e := range s.Explanations {
		if e.Line != lines[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, e.Line, lines[i])
		}
	}
	if s.Explanations[1].Score != 1 || s.Explanations[3].Score != 0 {
		t.Fatalf("scores %+v", s.Explanations)
	}
}

// TestThroughputPerDollarBeatsGreedy is the case where ranking bids by
// their own ratio is wrong: A (10 per $) then B (5 per $) gives 110/21 ≈
// 5.2, but A with the slow, cheap C (2 per $) gives 11/1.5 ≈ 7.3.
func TestThroughputPerDollarBeatsGreedy(t *testing.T) {
	in := SelectInput{Order: testOrder(2, 100), Want: 2, Throughput: map[string]float64{"H100-SXM": 10, "H200": 100, "T4": 1},
		Bids: []Bid{
			testBid("a", "p1", "H100-SXM", 1, 1, 1),
			testBid("b", "p2", "H200", 1, 1, 20),
			testBid("c", "p3", "T4", 1, 1, 0.5),
		}}
	s := mustSelector(t, "throughput-per-dollar").Select(in)
	if got := picked(s); !reflect.DeepEqual(got, map[string]int{"a": 1, "c": 1}) {
		t.Fatalf("picked %v, want a and c", got)
	}
	if l := s.Explanations[1].Line; !strings.Contains(l, "not chosen: 5 per $/h (measured throughput); in place of a chosen lease it would not raise the set's 7.33") {
		t.Fatalf("b: %s", l)
	}
	if l := s.Explanations[0].Line; !strings.Contains(l, "chosen ×1 — best throughput per dollar: 10 per $/h") {
		t.Fatalf("a: %s", l)
	}
}

func TestThroughputFallsBackToScaledCatalog(t *testing.T) {
	// H100-SXM measured at 2× its catalog TFLOPS; the A100 is not
	// measured and so is scaled the same way: the ranking is the
	// catalog's.
	f, unit := selThroughputFunc(map[string]float64{"H100-SXM": 2 * 989})
	if unit != "measured" || math.Abs(f("A100-80GB")-2*312) > 1 || f("H100-SXM") != 2*989 || f("nope") != 0 {
		t.Fatalf("A100 %v, H100 %v, unknown %v, unit %s", f("A100-80GB"), f("H100-SXM"), f("nope"), unit)
	}
	g, unit := selThroughputFunc(nil)
	if unit != "TFLOPS" || g("H100-SXM") < 900 {
		t.Fatalf("catalog H100 %v %s", g("H100-SXM"), unit)
	}
}

func TestFreeBidsWinThroughputPerDollar(t *testing.T) {
	in := SelectInput{Order: testOrder(2, 5), Bids: []Bid{
		testBid("paid", "p1", "H100-SXM", 1, 2, 1),
		testBid("free", "p2", "T4", 1, 2, 0),
	}}
	s := mustSelector(t, "throughput-per-dollar").Select(in)
	if got := picked(s); !reflect.DeepEqual(got, map[string]int{"free": 2}) {
		t.Fatalf("picked %v", got)
	}
	if l := s.Explanations[0].Line; !strings.HasSuffix(l, "not chosen: the order was filled by 1 free bid") {
		t.Fatal(l)
	}
}

func TestReliableAndNearest(t *testing.T) {
	bids := []Bid{
		testBid("b-1", "p1", "H100-SXM", 1, 1, 2),
		testBid("b-2", "p2", "H100-SXM", 1, 1, 2),
		testBid("b-3", "p3", "H100-SXM", 1, 1, 2),
	}
	bids[0].Reliability, bids[1].Reliability, bids[2].Reliability = 0.95, 0.999, 0.97
	bids[0].Region, bids[1].Region, bids[2].Region = "eu-west", "us-east", "eu-west"
	bids[0].LatencyMs, bids[1].LatencyMs, bids[2].LatencyMs = 20, 90, 0
	in := SelectInput{Order: testOrder(1, 3), Bids: bids, Region: "us-east"}
	if got := picked(mustSelector(t, "reliable").Select(in)); got["b-2"] != 1 {
		t.Fatalf("reliable picked %v", got)
	}
	s := mustSelector(t, "nearest").Select(in)
	if got := picked(s); got["b-2"] != 1 {
		t.Fatalf("nearest (region) picked %v", got)
	}
	if l := s.Explanations[1].Line; !strings.HasSuffix(l, "chosen ×1 — in your region us-east, 90 ms away, the nearest of 3 eligible bids") {
		t.Fatal(l)
	}
	in.Region = ""
	s = mustSelector(t, "nearest").Select(in)
	if got := picked(s); got["b-1"] != 1 {
		t.Fatalf("nearest (latency) picked %v", got)
	}
	if l := s.Explanations[2].Line; !strings.HasSuffix(l, "not chosen: the order was filled by 1 nearer bid") {
		t.Fatal(l)
	}
}

func TestSpread(t *testing.T) {
	// p1 is cheapest with many slots; spread still takes one or two from
	// everyone: 7 leases over 3 providers is at most 3 each, and p3 can
	// offer only 1, so p1 and p2 take 3 each.
	bids := []Bid{
		testBid("p1-a", "p1", "H100-SXM", 1, 5, 1),
		testBid("p1-b", "p1", "H100-SXM", 1, 5, 1.1),
		testBid("p2-a", "p2", "H100-SXM", 1, 2, 2),
		testBid("p2-b", "p2", "H100-SXM", 1, 9, 1.9),
		testBid("p3-a", "p3", "H100-SXM", 1, 1, 2.5),
	}
	s := mustSelector(t, "spread").Select(SelectInput{Order: testOrder(7, 3), Bids: bids})
	if got := picked(s); !reflect.DeepEqual(got, map[string]int{"p1-a": 3, "p2-b": 3, "p3-a": 1}) {
		t.Fatalf("picked %v", got)
	}
	if l := s.Explanations[0].Line; !strings.HasSuffix(l, "chosen ×3 of 5 — provider p1 holds 3 of 7 leases, spread over 3 providers (at most 3 each)") {
		t.Fatal(l)
	}
	if l := s.Explanations[2].Line; !strings.HasSuffix(l, "not chosen: provider p2's share (3) went to its cheaper bids") {
		t.Fatal(l)
	}
	// Two leases, three providers: the two cheapest providers.
	s = mustSelector(t, "spread").Select(SelectInput{Order: testOrder(2, 3), Bids: bids})
	if got := picked(s); !reflect.DeepEqual(got, map[string]int{"p1-a": 1, "p2-b": 1}) {
		t.Fatalf("picked %v", got)
	}
	if l := s.Explanations[4].Line; !strings.HasSuffix(l, "not chosen: the order's 2 leases went to 2 providers with cheaper bids, one each") {
		t.Fatal(l)
	}
}

func TestMix(t *testing.T) {
	bids := []Bid{
		testBid("cheap-flaky", "p1", "H100-SXM", 1, 4, 1),
		testBid("dear-solid", "p2", "H100-SXM", 1, 4, 2),
		testBid("mid", "p3", "H100-SXM", 1, 4, 1.6),
	}
	bids[0].Reliability, bids[1].Reliability, bids[2].Reliability = 0.80, 0.999, 0.98
	in := SelectInput{Order: testOrder(4, 3), Bids: bids}
	for spec, want := range map[string]map[string]int{
		"cheapest:0.9,reliable:0.1": {"cheap-flaky": 4},
		"cheapest:0.1,reliable:0.9": {"dear-solid": 4},
		"cheapest:1,reliable:1":     {"mid": 4},
		// spread as a component: a provider's second lease has only half
		// the spread bonus, so the others get their turns.
		"cheapest:0.2,spread:0.8": {"cheap-flaky": 2, "mid": 1, "dear-solid": 1},
	} {
		s := mustSelector(t, spec).Select(in)
		if got := picked(s); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: picked %v, want %v", spec, got, want)
		}
		for _, e := range s.Explanations {
			if !strings.Contains(e.Line, "mix score") {
				t.Errorf("%s: %s", spec, e.Line)
			}
		}
	}
	s := mustSelector(t, "cheapest:1,reliable:1").Select(in)
	if l := s.Explanations[2].Line; !strings.HasSuffix(l, "chosen ×4 — mix score 0.65 (cheapest 0.40, reliable 0.90); the best of 3 eligible bids") {
		t.Fatal(l)
	}
	// One weight: the selector itself, line for line.
	for _, name := range SelectorNames() {
		if got, want := mustSelector(t, name+":0.3").Select(in), mustSelector(t, name).Select(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:0.3 differs from %s", name, name)
		}
	}
}

func TestWantDefaultsAndCaps(t *testing.T) {
	bids := []Bid{testBid("b", "p", "H100-SXM", 1, 10, 1)}
	for _, tc := range []struct{ want, workers, got int }{{0, 3, 3}, {2, 3, 2}, {5, 3, 3}, {4, 0, 4}, {0, 0, 0}} {
		s := mustSelector(t, "cheapest").Select(SelectInput{Order: testOrder(tc.workers, 3), Bids: bids, Want: tc.want})
		if s.Leases() != tc.got {
			t.Errorf("want %d of %d workers: %d leases, want %d", tc.want, tc.workers, s.Leases(), tc.got)
		}
	}
	s := mustSelector(t, "cheapest").Select(SelectInput{Order: testOrder(0, 3), Bids: bids})
	if l := s.Explanations[0].Line; !strings.HasSuffix(l, "not chosen: no leases wanted") {
		t.Fatal(l)
	}
}

// TestSelectorNamesMatchJobSpec: the job spec accepts exactly the
// selectors the lease manager can run.
func TestSelectorNamesMatchJobSpec(t *testing.T) {
	if !slices.Equal(SelectorNames(), jobspec.BidSelectors) {
		t.Fatalf("lease.SelectorNames() = %v, jobspec.BidSelectors = %v", SelectorNames(), jobspec.BidSelectors)
	}
}
