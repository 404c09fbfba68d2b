package shard

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// checkRebalance checks q, mv = Rebalance(p, weights) against the contract:
// validity, consumed samples untouched, kept prefixes, proportional shares,
// the least movement, honest Moves, bounded growth, determinism and
// idempotence.
func checkRebalance(t *rapid.T, p Plan, weights map[string]float64, q Plan, mv Moves) {
	t.Helper()
	if err := q.Check(); err != nil {
		t.Fatalf("rebalanced plan: %v", err)
	}
	if q.Epoch != p.Epoch || q.Total != p.Total || q.ConsumedTotal() != p.ConsumedTotal() {
		t.Fatalf("rebalance changed epoch, total or consumed: %+v → %+v", p, q)
	}
	names := map[string]bool{}
	for _, a := range p.Assignments {
		names[a.Worker] = true
	}
	var left uint64
	for _, a := range p.Assignments {
		left += size(remainingOf(a))
	}
	var moved, departed, floorExcess, preferable, extra uint64
	lower := new(ratAcc)
	received := map[string][]Range{}
	for _, tr := range mv.Transfers {
		received[tr.To] = append(received[tr.To], tr.Ranges...)
	}
	for id := range weights {
		names[id] = true
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		a, inP := p.Assignment(name)
		b, inQ := q.Assignment(name)
		w, live := weights[name]
		ra, rb := remainingOf(a), remainingOf(b)
		switch {
		case live && !inQ:
			t.Fatalf("live worker %q has no assignment", name)
		case !live && inQ != (a.Consumed > 0):
			t.Fatalf("departed %q (consumed %d) kept in plan: %v", name, a.Consumed, inQ)
		case !live && len(rb) > 0:
			t.Fatalf("departed %q still has %v to consume", name, rb)
		}
		if inP && inQ && (b.Consumed != a.Consumed || !slices.Equal(consumedOf(t, a), consumedOf(t, b))) {
			t.Fatalf("%q's consumed samples moved: %+v → %+v", name, a, b)
		}
		if !live {
			moved += size(ra)
			departed += size(ra)
			lower.addInt(size(ra))
			continue
		}
		// A staying worker keeps a prefix of its remaining samples, in
		// order, and appends what it receives.
		na, nb := size(ra), size(rb)
		k := min(na, nb)
		if !slices.Equal(firstN(ra, k), firstN(rb, k)) {
			t.Fatalf("%q did not keep its prefix: %v → %v", name, ra, rb)
		}
		if got, want := norm(t, rb), norm(t, append(firstN(ra, k), received[name]...)); !slices.Equal(got, want) {
			t.Fatalf("%q has %v, kept %v and received %v", name, rb, firstN(ra, k), received[name])
		}
		q := quota(left, w, weights)
		if !withinOne(nb, q) {
			t.Fatalf("%q has %d of %d left, quota %s", name, nb, left, q.FloatString(3))
		}
		moved += na - k
		lower.addExcess(na, q)
		// The least any floor-or-ceiling rounding can move: the excess
		// over the floors, less one for each worker above its floor that
		// can get one of the ceilings.
		fl, frac := floorOf(q)
		floorExcess += na - min(na, fl)
		if frac && na > fl {
			preferable++
		}
	}
	var floors uint64
	for _, w := range weights {
		fl, _ := floorOf(quota(left, w, weights))
		floors += fl
	}
	extra = left - floors
	if least := departed + floorExcess - min(extra, preferable); mv.Samples != moved || moved != least {
		t.Fatalf("moved %d samples, reported %d, least possible %d", moved, mv.Samples, least)
	}
	if d := lower.distance(moved); d > float64(len(weights)) {
		t.Fatalf("moved %d, %v from the exact minimum, more than %d workers", moved, d, len(weights))
	}
	checkTransfers(t, p, q, weights, mv)
	if got, bound := rangeCount(q), rangeCount(p)+len(names); got > bound {
		t.Fatalf("rebalance grew the plan from %d to %d ranges, more than %d", rangeCount(p), got, bound)
	}
	if again, mv2, _ := Rebalance(p, maps.Clone(weights)); !reflect.DeepEqual(again, q) || !reflect.DeepEqual(mv2, mv) {
		t.Fatal("rebalance not deterministic")
	}
	if again, mv2, err := Rebalance(q, weights); err != nil || mv2.Samples != 0 || !reflect.DeepEqual(again, q) {
		t.Fatalf("second rebalance moved %d samples (%v)", mv2.Samples, err)
	}
}

// checkTransfers checks that each transfer is sorted, goes from a worker of
// p to a live one, and moves samples From had left and To now has.
func checkTransfers(t *rapid.T, p, q Plan, weights map[string]float64, mv Moves) {
	t.Helper()
	var sum uint64
	for i, tr := range mv.Transfers {
		if i > 0 {
			prev := mv.Transfers[i-1]
			if prev.From > tr.From || (prev.From == tr.From && prev.To >= tr.To) {
				t.Fatalf("transfers out of order: %v then %v", prev, tr)
			}
		}
		from, ok := p.Assignment(tr.From)
		if _, live := weights[tr.To]; !ok || !live || tr.From == tr.To {
			t.Fatalf("transfer %+v is not from an old worker to another live one", tr)
		}
		to, _ := q.Assignment(tr.To)
		had, has := norm(t, remainingOf(from)), norm(t, remainingOf(to))
		if !slices.Equal(norm(t, tr.Ranges), tr.Ranges) {
			t.Fatalf("transfer ranges %v not sorted and joined", tr.Ranges)
		}
		for _, r := range tr.Ranges {
			if !covers(had, r) || !covers(has, r) {
				t.Fatalf("transfer %v→%v of %v: not in %v's remainder %v or %v's %v", tr.From, tr.To, r, tr.From, had, tr.To, has)
			}
		}
		sum += size(tr.Ranges)
	}
	if sum != mv.Samples {
		t.Fatalf("transfers hold %d samples, Moves says %d", sum, mv.Samples)
	}
}

// TestRebalanceFromScratch rebalances a freshly split and partly consumed
// plan with unrelated weights: every worker may join, leave or change.
func TestRebalanceFromScratch(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, err := Split(drawTotal(t), drawWeights(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Assignments {
			p, _, _ = p.Advance(a.Worker, drawN(t, size(a.Ranges)))
		}
		weights := drawWeights(t)
		q, mv, err := Rebalance(p, weights)
		if err != nil {
			t.Fatal(err)
		}
		checkRebalance(t, p, weights, q, mv)
	})
}
