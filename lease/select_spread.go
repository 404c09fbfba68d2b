package lease

import (
	"cmp"
	"container/heap"
	"fmt"
	"strings"
)

// spread and weighted mixes.

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
	held := make([]int, len(provs))
	for k, cs := range provs {
		held[k] = in.Held[p.cands[cs[0]].provider]
	}
	want := min(p.want, p.capacity())
	level := selWaterLevel(caps, held, want)
	quota := make([]int, len(provs))
	left := want
	for k, c := range caps {
		quota[k] = min(c, max(level-1-held[k], 0))
		left -= quota[k]
	}
	for k, c := range caps {
		if left > 0 && quota[k] < c && held[k]+quota[k] == level-1 {
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
		case counts[j] > 0 && held[k] > 0:
			return fmt.Sprintf("provider %s gets %d of %d leases on top of the %d it holds for the job, spread over %d providers (at most %d each)",
				name, quota[k], want, held[k], used, level)
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

// selWaterLevel is the least L with Σ min(cap, max(L − held, 0)) ≥ want
// (0 for want 0): the fewest leases any provider ends up holding at most,
// counting those it already holds.
func selWaterLevel(caps, held []int, want int) int {
	lo, hi := 0, 0
	for k, c := range caps {
		hi = max(hi, c+held[k])
	}
	for lo < hi {
		mid := (lo + hi) / 2
		sum := 0
		for k, c := range caps {
			sum += min(c, max(mid-held[k], 0))
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
