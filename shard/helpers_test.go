package shard

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"

	"pgregory.net/rapid"
)

// The helpers below are the tests' own reference, written independently of
// the package's range code.

// norm returns the set of samples in rs as sorted, disjoint, non-touching
// ranges. It fails on overlapping input.
func norm(t rapid.TB, rs []Range) []Range {
	t.Helper()
	s := slices.Clone(rs)
	slices.SortFunc(s, func(x, y Range) int { return cmp.Compare(x.Start, y.Start) })
	var out []Range
	for _, r := range s {
		if r.End <= r.Start {
			continue
		}
		n := len(out)
		switch {
		case n > 0 && r.Start < out[n-1].End:
			t.Fatalf("ranges overlap: %v and %v", out[n-1], r)
		case n > 0 && r.Start == out[n-1].End:
			out[n-1].End = r.End
		default:
			out = append(out, r)
		}
	}
	return out
}

// seq returns rs, in order, with touching neighbours joined: the sequence
// of samples a worker reads, in a canonical form.
func seq(rs []Range) []Range {
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End == r.Start {
			out[n-1].End = r.End
		} else if r.End > r.Start {
			out = append(out, r)
		}
	}
	return out
}

// firstN returns the first k samples of rs, in order, as seq.
func firstN(rs []Range, k uint64) []Range {
	var out []Range
	for _, r := range rs {
		if k == 0 {
			break
		}
		l := r.End - r.Start
		if l > k {
			l = k
		}
		out = append(out, Range{r.Start, r.Start + l})
		k -= l
	}
	return seq(out)
}

// size returns the number of samples in rs.
func size(rs []Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.End - r.Start
	}
	return n
}

// covers reports whether sorted disjoint set contains every sample of r.
func covers(set []Range, r Range) bool {
	i, _ := slices.BinarySearchFunc(set, r.Start, func(x Range, s uint64) int {
		if x.End <= s {
			return -1
		}
		if x.Start > s {
			return 1
		}
		return 0
	})
	return i < len(set) && set[i].Start <= r.Start && r.End <= set[i].End
}

// consumedOf returns the set of samples a has consumed.
func consumedOf(t rapid.TB, a Assignment) []Range {
	return norm(t, firstN(a.Ranges, a.Consumed))
}

// remainingOf returns the samples a has left, as seq.
func remainingOf(a Assignment) []Range {
	var skip = a.Consumed
	var out []Range
	for _, r := range a.Ranges {
		l := r.End - r.Start
		if skip >= l {
			skip -= l
			continue
		}
		out = append(out, Range{r.Start + skip, r.End})
		skip = 0
	}
	return seq(out)
}

// rangeCount returns the number of ranges in p.
func rangeCount(p Plan) int {
	n := 0
	for _, a := range p.Assignments {
		n += len(a.Ranges)
	}
	return n
}

// clonePlan deep-copies p, to detect changes to a plan passed to a function.
func clonePlan(p Plan) Plan {
	q := p
	q.Assignments = slices.Clone(p.Assignments)
	for i := range q.Assignments {
		q.Assignments[i].Ranges = slices.Clone(q.Assignments[i].Ranges)
	}
	return q
}

// quota returns the exact share total·w/Σweights.
func quota(total uint64, w float64, weights map[string]float64) *big.Rat {
	sum := new(big.Rat)
	for _, id := range slices.Sorted(maps.Keys(weights)) {
		sum.Add(sum, new(big.Rat).SetFloat64(weights[id]))
	}
	q := new(big.Rat).SetInt(new(big.Int).SetUint64(total))
	q.Mul(q, new(big.Rat).SetFloat64(w))
	return q.Quo(q, sum)
}

// ratOf returns n as a rational.
func ratOf(n uint64) *big.Rat { return new(big.Rat).SetInt(new(big.Int).SetUint64(n)) }

// floorOf returns ⌊q⌋ for q ≥ 0, and whether q has a fractional part.
func floorOf(q *big.Rat) (uint64, bool) {
	f := new(big.Int).Quo(q.Num(), q.Denom())
	return f.Uint64(), !q.IsInt()
}

// withinOne reports whether share is strictly within 1 of the exact quota.
func withinOne(share uint64, q *big.Rat) bool {
	d := new(big.Rat).Sub(ratOf(share), q)
	return d.Abs(d).Cmp(big.NewRat(1, 1)) < 0
}

// workerPool names the workers tests draw from: few enough that departed
// workers rejoin.
var workerPool = []string{"a", "b", "c", "d", "e", "f", "g", "h", "rank-10", "rank-2", "task-7f3a", "z"}

// drawTotal draws an epoch size: tiny, small, large or extreme.
func drawTotal(t *rapid.T) uint64 {
	return rapid.OneOf(
		rapid.Uint64Range(0, 20),
		rapid.Uint64Range(21, 3000),
		rapid.Uint64Range(1e6, 1e12),
		rapid.SampledFrom([]uint64{1e9, 1 << 40, math.MaxUint64}),
	).Draw(t, "total")
}

// drawWeight draws a throughput: small integers, ordinary floats, extremes.
func drawWeight(t *rapid.T, label string) float64 {
	return rapid.OneOf(
		rapid.Map(rapid.IntRange(1, 8), func(i int) float64 { return float64(i) }),
		rapid.Float64Range(0.01, 1000),
		rapid.SampledFrom([]float64{5e-324, 1e-300, 0.1, 1e300, math.MaxFloat64}),
	).Draw(t, label)
}

// drawWeights draws 1 to 8 workers from workerPool with their weights.
func drawWeights(t *rapid.T) map[string]float64 {
	ids := rapid.SliceOfNDistinct(rapid.SampledFrom(workerPool), 1, 8, rapid.ID[string]).Draw(t, "workers")
	w := make(map[string]float64, len(ids))
	for _, id := range ids {
		w[id] = drawWeight(t, fmt.Sprintf("weight_%s", id))
	}
	return w
}

// drawN draws how many samples to consume of the rem a worker has left.
func drawN(t *rapid.T, rem uint64) uint64 {
	switch rapid.IntRange(0, 5).Draw(t, "n_kind") {
	case 0:
		return 0
	case 1:
		return rem
	case 2:
		return math.MaxUint64
	case 3:
		return rapid.Uint64Range(1, 4).Draw(t, "n")
	default:
		return rapid.Uint64Range(0, max(1, rem)).Draw(t, "n")
	}
}

// ratAcc sums an exact rational lower bound.
type ratAcc struct{ sum big.Rat }

// addInt adds n.
func (a *ratAcc) addInt(n uint64) { a.sum.Add(&a.sum, ratOf(n)) }

// addExcess adds max(0, n − q).
func (a *ratAcc) addExcess(n uint64, q *big.Rat) {
	if d := new(big.Rat).Sub(ratOf(n), q); d.Sign() > 0 {
		a.sum.Add(&a.sum, d)
	}
}

// distance returns |n − sum|.
func (a *ratAcc) distance(n uint64) float64 {
	d := new(big.Rat).Sub(ratOf(n), &a.sum)
	f, _ := d.Abs(d).Float64()
	return f
}
