package lease

// Bid selection. A selector reads an order and its bids and decides which
// bids to accept and how many slots of each, with one line per bid saying
// why (`megha market bids ORDER` shows them). Selectors are pure: no clock,
// no randomness, no I/O, and every ordering ends in the bid ID and the
// input position, so the same input always gives the same selection.
//
//	cheapest               lowest price per GPU-hour first
//	throughput-per-dollar  the set of slots with the most throughput per dollar (exact)
//	reliable               highest provider uptime first
//	nearest                bids in the tenant's region first, then lowest measured latency
//	spread                 as many providers as possible, as evenly as possible
//	cheapest:0.6,spread:0.4  a weighted mix of the above
//
// Before any ranking, bids the order cannot take are set aside, each with
// its reason: wrong order, no slots, a GPU count other than the order's
// GPUsPerWorker, a GPU model the order does not accept, too little VRAM,
// the wrong region, a price in another denomination, or a price per
// GPU-hour above the order's maximum (checked exactly, in decimals).
// Among the rest, ties go to the cheaper bid, then to the lower bid ID.

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	sdkmath "cosmossdk.io/math"

	"github.com/megha-ml/megha/worker/gpu"
)

// Selector names, as ParseSelector accepts them.
const (
	SelectCheapest            = "cheapest"
	SelectThroughputPerDollar = "throughput-per-dollar"
	SelectReliable            = "reliable"
	SelectNearest             = "nearest"
	SelectSpread              = "spread"
)

// DefaultBlocksPerHour is used when SelectInput.BlocksPerHour is not set:
// Akash's, one block about every 6 s.
const DefaultBlocksPerHour = 600.0

// ErrBadSelector is returned (wrapped, naming the bad part) by
// ParseSelector.
var ErrBadSelector = errors.New("lease: bad bid selector")

// SelectInput is what a selector decides from.
type SelectInput struct {
	Order Order
	Bids  []Bid
	// Want is the number of leases wanted; 0 means Order.Workers, and it
	// is capped at Order.Workers when that is set.
	Want int
	// Throughput is measured throughput per GPU (any consistent unit,
	// e.g. samples/s) by catalog GPU model ID. Models missing here use
	// the catalog estimate (gpu.EstimateThroughput, dense TFLOPS), scaled
	// into the measured unit by the median measured/catalog ratio of the
	// models that were measured.
	Throughput map[string]float64
	// BlocksPerHour is 3600 s ÷ the block time, to turn prices per block
	// into prices per GPU-hour; 0 means DefaultBlocksPerHour.
	BlocksPerHour float64
	// Region is the tenant's region for `nearest` ("" = latency only).
	Region string
}

// Pick is Count slots (leases) of one bid.
type Pick struct {
	Bid   Bid
	Count int
}

// Explanation says what a selector made of one bid: Chosen slots (0 when
// not chosen), Score (the bid's merit by the selector's criterion,
// normalised to [0,1] over the eligible bids, 1 best; 0 when ineligible)
// and Line, one human line such as
//
//	bid b-3 (prov-7, 4× H100-SXM, $2.10/GPU-h, 99.2% up, us-east): chosen ×2 — the cheapest of 9 eligible bids
//	bid b-5 (prov-2, 4× A10, $0.60/GPU-h, 97.0% up): not chosen: GPU model A10 not accepted (order takes H100-SXM)
type Explanation struct {
	BidID  string
	Chosen int
	Score  float64
	Line   string
}

// Selection is a selector's decision: Picks, best first, and one
// explanation per input bid, in input order.
type Selection struct {
	Picks        []Pick
	Explanations []Explanation
}

// Leases is the number of leases the selection accepts.
func (s Selection) Leases() int {
	n := 0
	for _, p := range s.Picks {
		n += p.Count
	}
	return n
}

// Selector chooses bids for an order.
type Selector interface {
	Name() string
	Select(in SelectInput) Selection
}

// SelectorNames lists the selectors ParseSelector knows.
func SelectorNames() []string {
	return []string{SelectCheapest, SelectThroughputPerDollar, SelectReliable, SelectNearest, SelectSpread}
}

func selBase(name string) (Selector, bool) {
	switch name {
	case SelectCheapest:
		return selCheapest{}, true
	case SelectThroughputPerDollar:
		return selTPD{}, true
	case SelectReliable:
		return selReliable{}, true
	case SelectNearest:
		return selNearest{}, true
	case SelectSpread:
		return selSpread{}, true
	}
	return nil, false
}

// ParseSelector returns the selector spec names: one of SelectorNames, or
// a weighted mix such as "cheapest:0.5,reliable:0.5" (a name without a
// weight weighs 1; weights are relative and may be 0). A mix with one
// positive weight is that selector.
func ParseSelector(spec string) (Selector, error) {
	valid := strings.Join(SelectorNames(), ", ")
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s; valid names: %s, or a weighted mix such as \"cheapest:0.5,reliable:0.5\"",
			ErrBadSelector, spec, fmt.Sprintf(format, args...), valid)
	}
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, bad("empty")
	}
	if !strings.ContainsAny(s, ":,") {
		if sel, ok := selBase(strings.ToLower(s)); ok {
			return sel, nil
		}
		return nil, bad("unknown selector %q", s)
	}
	m := &selMix{}
	var names []string
	total := 0.0
	for _, item := range strings.Split(s, ",") {
		name, w, hasW := strings.Cut(strings.TrimSpace(item), ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			return nil, bad("empty part %q", item)
		}
		sel, ok := selBase(name)
		if !ok {
			return nil, bad("unknown selector %q", name)
		}
		if slices.Contains(names, name) {
			return nil, bad("%s named twice", name)
		}
		names = append(names, name)
		weight := 1.0
		if hasW {
			v, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, bad("weight %q of %s: want a number ≥ 0", w, name)
			}
			weight = v
		}
		m.spec = append(m.spec, name+":"+strconv.FormatFloat(weight, 'g', -1, 64))
		if weight > 0 {
			m.parts = append(m.parts, selPart{name: name, w: weight, sel: sel})
			total += weight
		}
	}
	if total == 0 {
		return nil, bad("every weight is 0")
	}
	for i := range m.parts {
		m.parts[i].w /= total
	}
	return m, nil
}

// PricePerGPUHour is b's price per GPU-hour in its coin's display unit
// (US dollars for uusdc; for other micro-denominations such as uakt,
// the coin: AKT), given blocksPerHour (0 means DefaultBlocksPerHour); 0
// when the bid has no price.
func PricePerGPUHour(b Bid, blocksPerHour float64) float64 {
	if b.PricePerBlock.Amount.IsNil() {
		return 0
	}
	if !(blocksPerHour > 0) || math.IsInf(blocksPerHour, 0) {
		blocksPerHour = DefaultBlocksPerHour
	}
	amt, err := b.PricePerBlock.Amount.Float64()
	if err != nil {
		return math.Inf(1)
	}
	return amt * blocksPerHour / float64(max(b.GPUs, 1)) / selCurrencyOf(b.PricePerBlock.Denom).scale
}

// selCand is an eligible bid, with what every selector ranks it by.
type selCand struct {
	i        int // index in SelectInput.Bids
	b        *Bid
	provider string
	price    float64 // per GPU-hour, display unit
	lease    float64 // per lease-hour (price × GPUs)
	tput     float64 // per lease (per-GPU throughput × GPUs); 0 when unknown
	tpd      float64 // tput ÷ lease; +Inf when free
	near     float64 // 2 in the tenant's region, plus (0,1] for a known latency, lower latency higher
}

// selPrep is a selection's shared groundwork: the eligible candidates and
// the start of every bid's line.
type selPrep struct {
	in     SelectInput
	want   int
	bph    float64
	cur    selCurrency
	unit   string // "TFLOPS" (catalog) or "measured"
	cands  []selCand
	candOf []int    // per input bid: index in cands, or -1
	why    []string // per input bid: why it is ineligible
	heads  []string // per input bid: "bid b-3 (prov-7, …)"
}

func selPrepare(in SelectInput) *selPrep {
	o := in.Order
	p := &selPrep{in: in, want: max(in.Want, 0), bph: in.BlocksPerHour}
	if in.Want <= 0 {
		p.want = max(o.Workers, 0)
	}
	if o.Workers > 0 && p.want > o.Workers {
		p.want = o.Workers
	}
	if !(p.bph > 0) || math.IsInf(p.bph, 0) {
		p.bph = DefaultBlocksPerHour
	}
	denom := o.MaxPricePerGPUHour.Denom
	if denom == "" {
		denom = o.Deposit.Denom
	}
	if denom == "" && len(in.Bids) > 0 {
		denom = in.Bids[0].PricePerBlock.Denom
	}
	p.cur = selCurrencyOf(denom)
	tputOf, unit := selThroughputFunc(in.Throughput)
	p.unit = unit
	bphDec, err := sdkmath.LegacyNewDecFromStr(strconv.FormatFloat(p.bph, 'f', 12, 64))
	if err != nil {
		bphDec = sdkmath.LegacyNewDec(int64(DefaultBlocksPerHour))
	}
	n := len(in.Bids)
	p.candOf, p.why, p.heads = make([]int, n), make([]string, n), make([]string, n)
	for i := range in.Bids {
		b := &in.Bids[i]
		price := PricePerGPUHour(*b, p.bph)
		p.heads[i] = selHead(b, price)
		p.candOf[i] = -1
		if p.why[i] = p.ineligible(b, denom, bphDec); p.why[i] != "" {
			continue
		}
		c := selCand{i: i, b: b, provider: b.Provider, price: price, lease: price * float64(b.GPUs)}
		if c.provider == "" {
			c.provider = b.ProviderName
		}
		if c.provider == "" {
			c.provider = "bid:" + b.ID
		}
		c.tput = tputOf(b.GPUModel) * float64(b.GPUs)
		switch {
		case c.lease > 0:
			c.tpd = c.tput / c.lease
		case c.tput > 0:
			c.tpd = math.Inf(1)
		}
		if in.Region != "" && strings.EqualFold(b.Region, in.Region) {
			c.near = 2
		}
		if b.LatencyMs > 0 {
			c.near += 1 / (1 + b.LatencyMs/100)
		}
		p.candOf[i] = len(p.cands)
		p.cands = append(p.cands, c)
	}
	return p
}

// ineligible says why the order cannot take b, or "".
func (p *selPrep) ineligible(b *Bid, denom string, bph sdkmath.LegacyDec) string {
	o := p.in.Order
	switch {
	case o.ID != "" && b.OrderID != "" && b.OrderID != o.ID:
		return fmt.Sprintf("bid is for order %s, not %s", b.OrderID, o.ID)
	case b.Count <= 0:
		return "no slots left"
	case b.GPUs <= 0:
		return "offers no GPUs"
	case o.GPUsPerWorker > 0 && b.GPUs != o.GPUsPerWorker:
		return fmt.Sprintf("%d GPUs per lease, order wants %d", b.GPUs, o.GPUsPerWorker)
	case len(o.GPUModels) > 0 && !slices.ContainsFunc(o.GPUModels, func(m string) bool { return strings.EqualFold(m, b.GPUModel) }):
		return fmt.Sprintf("GPU model %s not accepted (order takes %s)", b.GPUModel, strings.Join(o.GPUModels, ", "))
	case b.VRAMGiB < o.MinVRAMGiB:
		return fmt.Sprintf("%d GiB of VRAM, order needs %d GiB", b.VRAMGiB, o.MinVRAMGiB)
	case o.Region != "" && !strings.EqualFold(b.Region, o.Region):
		return fmt.Sprintf("region %q, order wants %s", b.Region, o.Region)
	case b.PricePerBlock.Amount.IsNil() || b.PricePerBlock.Amount.IsNegative():
		return "no valid price"
	case b.PricePerBlock.Denom != denom:
		return fmt.Sprintf("priced in %s, order pays in %s", b.PricePerBlock.Denom, denom)
	}
	// Exactly: amount × blocks/hour ÷ GPUs > max ⇔ amount × blocks/hour > max × GPUs.
	if m := o.MaxPricePerGPUHour; !m.Amount.IsNil() && b.PricePerBlock.Amount.Mul(bph).GT(m.Amount.MulInt64(int64(b.GPUs))) {
		amt, _ := m.Amount.Float64()
		return fmt.Sprintf("above max price %s/GPU-h", p.cur.format(amt/p.cur.scale))
	}
	return ""
}

// selHead is the start of a bid's line: "bid b-3 (prov-7, 4× H100-SXM,
// $2.10/GPU-h, 99.2% up, us-east, 12 ms)".
func selHead(b *Bid, price float64) string {
	var sb strings.Builder
	prov := b.ProviderName
	if prov == "" {
		prov = b.Provider
	}
	fmt.Fprintf(&sb, "bid %s (%s, %d× %s", b.ID, prov, b.GPUs, b.GPUModel)
	if !b.PricePerBlock.Amount.IsNil() {
		sb.WriteString(", " + selCurrencyOf(b.PricePerBlock.Denom).format(price) + "/GPU-h")
	}
	fmt.Fprintf(&sb, ", %.1f%% up", b.Reliability*100)
	if b.Region != "" {
		sb.WriteString(", " + b.Region)
	}
	if b.LatencyMs > 0 {
		fmt.Fprintf(&sb, ", %.0f ms", b.LatencyMs)
	}
	sb.WriteString(")")
	return sb.String()
}

// selCurrency shows amounts of one denomination: uusdc as dollars, other
// micro-denominations as their coin ("uakt" → "AKT").
type selCurrency struct {
	scale          float64 // base units per display unit
	prefix, suffix string
	unit           string // for "per $/h"
}

func selCurrencyOf(denom string) selCurrency {
	switch {
	case denom == DefaultDenom:
		return selCurrency{scale: 1e6, prefix: "$", unit: "$"}
	case len(denom) > 1 && denom[0] == 'u':
		u := strings.ToUpper(denom[1:])
		return selCurrency{scale: 1e6, suffix: " " + u, unit: u}
	case denom == "":
		return selCurrency{scale: 1, unit: "unit"}
	}
	return selCurrency{scale: 1, suffix: " " + denom, unit: denom}
}

func (c selCurrency) format(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if v != 0 && math.Abs(v) < 0.1 {
		s = strconv.FormatFloat(v, 'g', 2, 64)
	}
	return c.prefix + s + c.suffix
}

// selThroughputFunc returns throughput per GPU by model: measured where
// known, else the catalog estimate (in measured units when anything was
// measured), 0 for unknown models.
func selThroughputFunc(measured map[string]float64) (func(model string) float64, string) {
	catalog := func(id string) float64 {
		m, ok := gpu.Lookup(id)
		if !ok {
			return 0
		}
		return gpu.EstimateThroughput(m)
	}
	if len(measured) == 0 {
		return catalog, "TFLOPS"
	}
	ok := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	var ratios []float64
	for id, v := range measured {
		if c := catalog(id); ok(v) && c > 0 {
			ratios = append(ratios, v/c)
		}
	}
	slices.Sort(ratios)
	scale := 0.0
	if n := len(ratios); n > 0 {
		scale = (ratios[(n-1)/2] + ratios[n/2]) / 2
	}
	return func(id string) float64 {
		if v := measured[id]; ok(v) {
			return v
		}
		return catalog(id) * scale
	}, "measured"
}

// tpdText shows a throughput per dollar: "472 TFLOPS per $/h".
func (p *selPrep) tpdText(v float64) string {
	if math.IsInf(v, 1) {
		return "free"
	}
	if p.unit == "measured" {
		return fmt.Sprintf("%s per %s/h (measured throughput)", selNum(v), p.cur.unit)
	}
	return fmt.Sprintf("%s TFLOPS per %s/h", selNum(v), p.cur.unit)
}

// order returns the candidates' indices sorted by primary, then cheaper
// first, then by bid ID and input position: a total order.
func (p *selPrep) order(primary func(a, b int) int) []int {
	o := make([]int, len(p.cands))
	for j := range o {
		o[j] = j
	}
	slices.SortFunc(o, func(a, b int) int {
		if c := primary(a, b); c != 0 {
			return c
		}
		return p.tie(a, b)
	})
	return o
}

func (p *selPrep) tie(a, b int) int {
	ca, cb := &p.cands[a], &p.cands[b]
	if c := cmp.Compare(ca.price, cb.price); c != 0 {
		return c
	}
	if c := strings.Compare(ca.b.ID, cb.b.ID); c != 0 {
		return c
	}
	return cmp.Compare(ca.i, cb.i)
}

// fill takes slots in order until want are taken.
func (p *selPrep) fill(order []int) []int {
	counts := make([]int, len(p.cands))
	left := p.want
	for _, j := range order {
		if left == 0 {
			break
		}
		counts[j] = min(p.cands[j].b.Count, left)
		left -= counts[j]
	}
	return counts
}

// capacity is the number of slots the eligible bids offer.
func (p *selPrep) capacity() int {
	n := 0
	for _, c := range p.cands {
		n += c.b.Count
	}
	return n
}

// finish builds the selection: picks in pickOrder, and each bid's line
// from why(j) (the text after "chosen ×N — " or "not chosen: ").
func (p *selPrep) finish(pickOrder, counts []int, scores []float64, why func(j int) string) Selection {
	var s Selection
	for _, j := range pickOrder {
		if counts[j] > 0 {
			s.Picks = append(s.Picks, Pick{Bid: *p.cands[j].b, Count: counts[j]})
		}
	}
	norm := selNormalize(scores)
	s.Explanations = make([]Explanation, len(p.in.Bids))
	for i, b := range p.in.Bids {
		e := Explanation{BidID: b.ID}
		j := p.candOf[i]
		switch {
		case j < 0:
			e.Line = p.heads[i] + ": not chosen: " + p.why[i]
		case counts[j] == 0:
			e.Score = norm[j]
			e.Line = p.heads[i] + ": not chosen: " + why(j)
		default:
			e.Chosen, e.Score = counts[j], norm[j]
			of := ""
			if counts[j] < b.Count {
				of = fmt.Sprintf(" of %d", b.Count)
			}
			e.Line = fmt.Sprintf("%s: chosen ×%d%s — %s", p.heads[i], counts[j], of, why(j))
		}
		s.Explanations[i] = e
	}
	return s
}

// selNormalize maps scores linearly onto [0,1] (+Inf → 1; all equal → 1).
func selNormalize(scores []float64) []float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range scores {
		if !math.IsInf(v, 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	out := make([]float64, len(scores))
	for j, v := range scores {
		switch {
		case math.IsInf(v, 1) || !(hi > lo):
			out[j] = 1
		case math.IsInf(v, -1):
			out[j] = 0
		default:
			out[j] = (v - lo) / (hi - lo)
		}
	}
	return out
}

// selRank describes a selector that ranks bids by one score and fills
// the order greedily down the ranking.
type selRank struct {
	score  func(j int) float64      // higher is better
	better string                   // "cheaper": what the bids that filled the order were
	detail func(j int) string       // optional: the score, shown first
	chosen func(j, rank int) string // why a chosen bid ranks where it does (rank from 1)
}

func (p *selPrep) ranked(r selRank) Selection {
	scores := make([]float64, len(p.cands))
	for j := range p.cands {
		scores[j] = r.score(j)
	}
	order := p.order(func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	counts := p.fill(order)
	rank := make([]int, len(p.cands))
	taken, last := 0, -1
	for pos, j := range order {
		rank[j] = pos + 1
		if counts[j] > 0 {
			taken, last = taken+1, j
		}
	}
	return p.finish(order, counts, scores, func(j int) string {
		d := ""
		if r.detail != nil {
			d = r.detail(j) + "; "
		}
		switch {
		case counts[j] > 0:
			return d + r.chosen(j, rank[j])
		case last < 0:
			return d + "no leases wanted"
		case scores[last] > scores[j]:
			return d + fmt.Sprintf("the order was filled by %s", selCount(taken, r.better+" bid"))
		}
		return d + fmt.Sprintf("the order was filled by %s (ties go to the cheaper bid, then the lower bid ID)",
			selCount(taken, "bid"))
	})
}

type selCheapest struct{}

func (selCheapest) Name() string { return SelectCheapest }

func (selCheapest) Select(in SelectInput) Selection {
	p := selPrepare(in)
	return p.ranked(selRank{
		score:  func(j int) float64 { return -p.cands[j].price },
		better: "cheaper",
		chosen: func(j, rank int) string { return selRankText(rank, "cheapest", len(p.cands)) },
	})
}

type selReliable struct{}

func (selReliable) Name() string { return SelectReliable }

func (selReliable) Select(in SelectInput) Selection {
	p := selPrepare(in)
	return p.ranked(selRank{
		score:  func(j int) float64 { return p.cands[j].b.Reliability },
		better: "more reliable",
		chosen: func(j, rank int) string {
			return fmt.Sprintf("%.1f%% uptime, %s", p.cands[j].b.Reliability*100, selRankText(rank, "most reliable", len(p.cands)))
		},
	})
}

type selNearest struct{}

func (selNearest) Name() string { return SelectNearest }

func (selNearest) Select(in SelectInput) Selection {
	p := selPrepare(in)
	return p.ranked(selRank{
		score:  func(j int) float64 { return p.cands[j].near },
		better: "nearer",
		chosen: func(j, rank int) string {
			c := &p.cands[j]
			var what []string
			if c.near >= 2 {
				what = append(what, "in your region "+in.Region)
			}
			if c.b.LatencyMs > 0 {
				what = append(what, fmt.Sprintf("%.0f ms away", c.b.LatencyMs))
			}
			if len(what) == 0 {
				return "neither region nor latency known; next cheapest"
			}
			return strings.Join(what, ", ") + ", " + selRankText(rank, "nearest", len(p.cands))
		},
	})
}

// selTPD maximises the throughput per dollar of the whole set of slots,
// Σ throughput ÷ Σ price over exactly min(want, slots offered) slots. That
// is a ratio of sums, which ranking bids by their own ratio does not
// maximise (a cheap slow bid can beat a fast dear one that the ranking
// prefers). Dinkelbach's method does: for a guess λ, take the slots with
// the largest throughput − λ·price; λ ← the ratio of that set; repeat
// until λ stops rising. Each round is one sort, and λ rises strictly until
// it reaches the optimum, usually within a handful of rounds.
type selTPD struct{}

func (selTPD) Name() string { return SelectThroughputPerDollar }

func (selTPD) Select(in SelectInput) Selection {
	p := selPrepare(in)
	order, counts, best := p.bestRatio()
	scores, top := make([]float64, len(p.cands)), 0.0
	for j, c := range p.cands {
		scores[j], top = c.tpd, max(top, c.tpd)
	}
	taken := 0
	for _, n := range counts {
		if n > 0 {
			taken++
		}
	}
	return p.finish(order, counts, scores, func(j int) string {
		c := &p.cands[j]
		switch {
		case c.tput == 0 && counts[j] > 0:
			return fmt.Sprintf("throughput of %s unknown; taken to fill the order", c.b.GPUModel)
		case c.tput == 0:
			return fmt.Sprintf("throughput of %s unknown", c.b.GPUModel)
		case counts[j] > 0 && c.tpd == top:
			return "best throughput per dollar: " + p.tpdText(c.tpd)
		case counts[j] > 0:
			return fmt.Sprintf("%s; the chosen set averages %s", p.tpdText(c.tpd), p.tpdText(best))
		case p.want == 0:
			return "no leases wanted"
		case math.IsInf(best, 1):
			return fmt.Sprintf("the order was filled by %s", selCount(taken, "free bid"))
		}
		return fmt.Sprintf("%s; in place of a chosen lease it would not raise the set's %s", p.tpdText(c.tpd), p.tpdText(best))
	})
}

// bestRatio runs Dinkelbach's iteration from the greedy set (best own
// ratio first) and returns the best set's order, counts and ratio.
func (p *selPrep) bestRatio() (order, counts []int, ratio float64) {
	sums := func(counts []int) (t, c float64) {
		for j, n := range counts {
			t += float64(n) * p.cands[j].tput
			c += float64(n) * p.cands[j].lease
		}
		return t, c
	}
	// Enough free slots, some with known throughput: the ratio is
	// infinite; take the free slots, fastest first.
	free, useful := 0, false
	for _, c := range p.cands {
		if c.lease == 0 {
			free, useful = free+c.b.Count, useful || c.tput > 0
		}
	}
	if useful && free >= min(p.want, p.capacity()) {
		order = p.order(func(a, b int) int {
			if x := cmp.Compare(p.cands[a].lease, p.cands[b].lease); x != 0 {
				return x
			}
			return cmp.Compare(p.cands[b].tput, p.cands[a].tput)
		})
		return order, p.fill(order), math.Inf(1)
	}
	// Otherwise every choice of slots costs something, and Dinkelbach's
	// iteration applies.
	byTPD := func(a, b int) int { return cmp.Compare(p.cands[b].tpd, p.cands[a].tpd) }
	order = p.order(byTPD)
	counts = p.fill(order)
	t, c := sums(counts)
	if c == 0 { // nothing wanted, or only free slots of unknown throughput
		return order, counts, 0
	}
	ratio = t / c
	for range 100 {
		lambda := ratio
		val := func(j int) float64 { return p.cands[j].tput - lambda*p.cands[j].lease }
		o := p.order(func(a, b int) int {
			if x := cmp.Compare(val(b), val(a)); x != 0 {
				return x
			}
			return byTPD(a, b)
		})
		n := p.fill(o)
		t, c := sums(n)
		if !(c > 0) || !(t/c > ratio*(1+1e-12)) {
			break
		}
		order, counts, ratio = o, n, t/c
	}
	return order, counts, ratio
}

// selSpread spreads the order over as many providers as possible, as
// evenly as their bids allow: it finds the lowest level L such that giving
// each provider min(its slots, L) covers the order, gives every provider
// min(slots, L−1), and hands the remaining slots one each to the providers
// that can take L, cheapest provider first (by its cheapest bid). That is
// what filling round-robin gives, in O(n log n) instead of one slot at a
// time, and no provider holds more than the least possible maximum, so at
// most ceil(want/providers) when every provider can take that many. Within
// a provider, its cheapest bids fill its share. Its Explanation.Score is
// the bid's cheapness, the order it fills in.
type selSpread struct{}

func (selSpread) Name() string { return SelectSpread }

func (selSpread) Select(in SelectInput) Selection {
	p := selPrepare(in)
	order := p.order(func(a, b int) int { return 0 }) // cheapest first
	provs := p.providers(order)
	caps := make([]int, len(provs))
	for k, cs := range provs {
		for _, j := range cs {
			caps[k] += p.cands[j].b.Count
		}
	}
	want := min(p.want, p.capacity())
	level := selWaterLevel(caps, want)
	quota := make([]int, len(provs))
	left := want
	for k, c := range caps {
		quota[k] = min(c, max(level-1, 0))
		left -= quota[k]
	}
	for k, c := range caps {
		if left > 0 && c >= level {
			quota[k]++
			left--
		}
	}
	counts := make([]int, len(p.cands))
	provOf := make([]int, len(p.cands))
	var pickOrder []int
	for k, cs := range provs {
		q := quota[k]
		for _, j := range cs {
			provOf[j] = k
			counts[j] = min(q, p.cands[j].b.Count)
			q -= counts[j]
			pickOrder = append(pickOrder, j)
		}
	}
	scores := make([]float64, len(p.cands))
	for j, c := range p.cands {
		scores[j] = -c.price
	}
	used := 0
	for _, q := range quota {
		if q > 0 {
			used++
		}
	}
	return p.finish(pickOrder, counts, scores, func(j int) string {
		k := provOf[j]
		name := p.cands[j].b.ProviderName
		if name == "" {
			name = p.cands[j].provider
		}
		switch {
		case counts[j] > 0:
			return fmt.Sprintf("provider %s holds %d of %d leases, spread over %d providers (at most %d each)",
				name, quota[k], want, used, level)
		case quota[k] > 0:
			return fmt.Sprintf("provider %s's share (%d) went to its cheaper bids", name, quota[k])
		case want == 0:
			return "no leases wanted"
		}
		return fmt.Sprintf("the order's %d leases went to %d providers with cheaper bids, one each", want, used)
	})
}

// providers groups candidates by provider, keeping order within each;
// providers come in the order of their first candidate.
func (p *selPrep) providers(order []int) [][]int {
	idx := map[string]int{}
	var out [][]int
	for _, j := range order {
		k, ok := idx[p.cands[j].provider]
		if !ok {
			k = len(out)
			idx[p.cands[j].provider] = k
			out = append(out, nil)
		}
		out[k] = append(out[k], j)
	}
	return out
}

// selWaterLevel is the least L with Σ min(cap, L) ≥ want (0 for want 0).
func selWaterLevel(caps []int, want int) int {
	lo, hi := 0, 0
	for _, c := range caps {
		hi = max(hi, c)
	}
	for lo < hi {
		mid := (lo + hi) / 2
		sum := 0
		for _, c := range caps {
			sum += min(c, mid)
		}
		if sum >= want {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// selMix combines selectors: each component's score is normalised to
// [0,1] over the eligible bids and the scores are added with the
// (normalised) weights; the order is filled greedily by the sum. spread as
// a component is a bonus that shrinks as a provider's leases grow: its
// weight for a provider's first lease, half of it for the second, a third
// for the third, and so on.
type selMix struct {
	spec  []string // "name:weight", as given
	parts []selPart
}

type selPart struct {
	name string
	w    float64 // > 0; the parts' weights sum to 1
	sel  Selector
}

func (m *selMix) Name() string { return strings.Join(m.spec, ",") }

func (m *selMix) Select(in SelectInput) Selection {
	if len(m.parts) == 1 {
		return m.parts[0].sel.Select(in)
	}
	p := selPrepare(in)
	n := len(p.cands)
	norms := make([][]float64, len(m.parts))
	static := make([]float64, n)
	spread := 0.0
	for k, part := range m.parts {
		if part.name == SelectSpread {
			spread = part.w
			continue
		}
		raw := make([]float64, n)
		for j := range p.cands {
			raw[j] = selMixScore(part.name, &p.cands[j])
		}
		norms[k] = selNormalize(raw)
		for j := range static {
			static[j] += part.w * norms[k][j]
		}
	}
	detail := func(j int) string {
		var parts []string
		for k, part := range m.parts {
			if norms[k] != nil {
				parts = append(parts, fmt.Sprintf("%s %.2f", part.name, norms[k][j]))
			}
		}
		if spread > 0 {
			parts = append(parts, fmt.Sprintf("spread %.2f for a provider's first lease, less for each more", spread))
		}
		return fmt.Sprintf("mix score %.2f (%s)", static[j]+spread, strings.Join(parts, ", "))
	}
	if spread == 0 {
		return p.ranked(selRank{
			score:  func(j int) float64 { return static[j] },
			better: "higher-scoring",
			detail: detail,
			chosen: func(j, rank int) string { return selRankText(rank, "best", n) },
		})
	}
	return p.spreadMix(static, spread, detail)
}

func selMixScore(name string, c *selCand) float64 {
	switch name {
	case SelectCheapest:
		return -c.price
	case SelectThroughputPerDollar:
		return c.tpd
	case SelectReliable:
		return c.b.Reliability
	case SelectNearest:
		return c.near
	}
	return 0
}

// spreadMix fills the order one slot at a time from the provider whose
// next slot scores highest, static[j] + spread/(1 + leases it already
// holds), with a heap of providers: O(want · log providers).
func (p *selPrep) spreadMix(static []float64, spread float64, detail func(j int) string) Selection {
	order := p.order(func(a, b int) int { return cmp.Compare(static[b], static[a]) })
	pos := make([]int, len(p.cands))
	for i, j := range order {
		pos[j] = i
	}
	provs := p.providers(order)
	h := make(selProvHeap, 0, len(provs))
	provOf := make([]*selProv, len(p.cands))
	for _, cs := range provs {
		s := &selProv{cands: cs, left: p.cands[cs[0]].b.Count, key: static[cs[0]] + spread, pos: pos[cs[0]]}
		for _, j := range cs {
			provOf[j] = s
		}
		h = append(h, s)
	}
	heap.Init(&h)
	counts := make([]int, len(p.cands))
	var pickOrder []int
	for left := p.want; left > 0 && h.Len() > 0; left-- {
		s := h[0]
		j := s.cands[s.next]
		if counts[j] == 0 {
			pickOrder = append(pickOrder, j)
		}
		counts[j]++
		s.taken++
		if s.left--; s.left == 0 {
			if s.next++; s.next == len(s.cands) {
				heap.Pop(&h)
				continue
			}
			s.left = p.cands[s.cands[s.next]].b.Count
		}
		j = s.cands[s.next]
		s.key, s.pos = static[j]+spread/float64(1+s.taken), pos[j]
		heap.Fix(&h, 0)
	}
	scores := make([]float64, len(p.cands))
	taken := 0
	for j := range scores {
		scores[j] = static[j] + spread
		if counts[j] > 0 {
			taken++
		}
	}
	total := min(p.want, p.capacity())
	return p.finish(pickOrder, counts, scores, func(j int) string {
		switch {
		case counts[j] > 0:
			return fmt.Sprintf("%s; its provider holds %d of %d leases", detail(j), provOf[j].taken, total)
		case p.want == 0:
			return detail(j) + "; no leases wanted"
		}
		return fmt.Sprintf("%s; the order was filled by %s scoring higher once a provider's repeats are discounted",
			detail(j), selCount(taken, "bid"))
	})
}

// selProv is one provider's place in spreadMix's heap.
type selProv struct {
	cands []int // its candidates, best first
	next  int   // the current candidate, cands[next]
	left  int   // slots left in it
	taken int   // slots taken from this provider
	key   float64
	pos   int // the current candidate's position in the global order (ties)
}

type selProvHeap []*selProv

func (h selProvHeap) Len() int { return len(h) }
func (h selProvHeap) Less(i, j int) bool {
	if h[i].key != h[j].key {
		return h[i].key > h[j].key
	}
	return h[i].pos < h[j].pos
}
func (h selProvHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *selProvHeap) Push(x any)   { *h = append(*h, x.(*selProv)) }
func (h *selProvHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// selRankText: "the cheapest of 9 eligible bids", "3rd cheapest of 9 …".
func selRankText(rank int, adj string, n int) string {
	if n == 1 {
		return "the only eligible bid"
	}
	if rank == 1 {
		return fmt.Sprintf("the %s of %d eligible bids", adj, n)
	}
	suffix := "th"
	if rank%100 < 11 || rank%100 > 13 {
		switch rank % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return fmt.Sprintf("%d%s %s of %d eligible bids", rank, suffix, adj, n)
}

// selCount: "1 cheaper bid", "3 cheaper bids".
func selCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// selNum shows a figure: whole above 100, three significant digits below.
func selNum(v float64) string {
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
