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
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
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
	// Held counts the leases the job already holds, by provider address
	// (Bid.Provider): `spread` counts them, so that a replacement goes to
	// a provider the job uses least.
	Held map[string]int
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
