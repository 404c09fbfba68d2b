package lease

import (
	"cmp"
	"fmt"
	"math"
	"strings"
)

// The ranking selectors: cheapest, reliable, nearest, and
// throughput-per-dollar (exact, by Dinkelbach iteration).

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
