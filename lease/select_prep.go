package lease

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	sdkmath "cosmossdk.io/math"

	"github.com/megha-ml/megha/worker/gpu"
)

// Candidate preparation shared by the selectors: eligibility, ordering,
// filling slots, explanations and their text.

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
