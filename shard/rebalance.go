package shard

import (
	"cmp"
	"maps"
	"slices"
)

// Transfer is what one worker passed to another in a [Rebalance].
type Transfer struct {
	// From gave the samples: a departed or over-provisioned worker.
	From string
	// To received them: a new or under-provisioned worker.
	To string
	// Ranges are the samples moved, sorted by Start, touching ones joined.
	Ranges []Range
}

// Moves describes what a [Rebalance] moved.
type Moves struct {
	// Transfers are sorted by From, then To.
	Transfers []Transfer
	// Samples is the number of samples moved, the sum of the lengths of all
	// transfers' ranges.
	Samples uint64
}

// Rebalance redistributes the samples no worker has consumed among the
// workers of weights, so that each worker's remaining share is proportional
// to its weight: the floor or the ceiling of its exact quota, as in [Split].
// Workers of p missing from weights have left; workers of weights missing
// from p have joined; the others stay, perhaps at a new speed.
//
// It moves as few samples as such shares allow. A staying worker keeps the
// first min(remaining, share) samples of its remaining ranges, in order; an
// over-provisioned one passes on the rest, from the end. A departed worker
// passes on everything it has not consumed. The samples passed on are
// sorted by index and dealt out, in that order, to under-provisioned and
// new workers in ID order, each appending what it receives after what it
// kept. Consumed samples never move: a departed worker that consumed some
// keeps an assignment of exactly those (it is dropped if it consumed none),
// and a staying worker's consumed ranges are only sorted and merged. Among
// the shares' roundings, Rebalance prefers the ceiling for workers that hold
// more than their floor, so the samples moved are exactly
// Σ max(0, remaining − share) over staying workers plus the departed
// workers' remainders, the least any floor-or-ceiling rounding allows, and a
// second Rebalance with the same weights moves nothing.
//
// Call it between rounds, when no worker holds samples it has read but not
// committed (see the package documentation). It returns p unchanged and an
// error if p is invalid ([ErrInvalidPlan]) or weights are (as for [Split]).
func Rebalance(p Plan, weights map[string]float64) (Plan, Moves, error) {
	if err := p.Check(); err != nil {
		return p, Moves{}, err
	}
	ids, err := sortedWorkers(weights)
	if err != nil {
		return p, Moves{}, err
	}
	live := make(map[string]int, len(ids))
	for i, id := range ids {
		live[id] = i
	}
	old := make(map[string]Assignment, len(p.Assignments))
	consumed := make(map[string][]Range, len(p.Assignments))
	remaining := make(map[string][]Range, len(p.Assignments))
	var left uint64
	for _, a := range p.Assignments {
		old[a.Worker] = a
		consumed[a.Worker], remaining[a.Worker] = splitAt(a.Ranges, a.Consumed)
		left += lenOf(remaining[a.Worker])
	}
	held := make([]uint64, len(ids))
	for i, id := range ids {
		held[i] = lenOf(remaining[id])
	}
	shares := apportion(left, ids, weights, held)

	// Cut what each worker keeps from what it passes on. Departed workers
	// keep nothing; staying ones keep a prefix of at most their share.
	type piece struct {
		from string
		r    Range
	}
	var pool []piece
	kept := make(map[string][]Range, len(p.Assignments))
	for _, a := range p.Assignments {
		var keep uint64
		if i, ok := live[a.Worker]; ok {
			keep = min(held[i], shares[i])
		}
		k, excess := splitAt(remaining[a.Worker], keep)
		kept[a.Worker] = k
		for _, r := range excess {
			pool = append(pool, piece{a.Worker, r})
		}
	}
	slices.SortFunc(pool, func(x, y piece) int { return cmp.Compare(x.r.Start, y.r.Start) })

	// Deal the pool out in index order. The shares sum to the samples left
	// and each worker keeps at most its share, so the pool holds exactly
	// the sum of the shortfalls: it runs out with the last of them.
	var moved []move
	received := make(map[string][]Range)
	for i, id := range ids {
		need := shares[i] - lenOf(kept[id])
		for need > 0 {
			pc := &pool[0]
			r := Range{pc.r.Start, pc.r.Start + min(need, pc.r.Len())}
			received[id] = append(received[id], r)
			moved = append(moved, move{pc.from, id, r})
			need -= r.Len()
			pc.r.Start = r.End
			if pc.r.Len() == 0 {
				pool = pool[1:]
			}
		}
	}

	q := Plan{Epoch: p.Epoch, Total: p.Total}
	names := slices.Sorted(maps.Keys(old))
	for _, id := range ids {
		if _, ok := old[id]; !ok {
			names = append(names, id)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		_, isLive := live[name]
		a := old[name]
		if !isLive && a.Consumed == 0 {
			continue
		}
		rs := merged(consumed[name])
		rs = appendRanges(rs, kept[name])
		rs = appendRanges(rs, received[name])
		q.Assignments = append(q.Assignments, Assignment{Worker: name, Ranges: rs, Consumed: a.Consumed})
	}
	return q, movesOf(moved), nil
}

// move is one piece of a transfer.
type move struct {
	from, to string
	r        Range
}

// movesOf groups moved pieces into transfers sorted by From, then To.
func movesOf(moved []move) Moves {
	slices.SortFunc(moved, func(x, y move) int {
		return cmp.Or(cmp.Compare(x.from, y.from), cmp.Compare(x.to, y.to), cmp.Compare(x.r.Start, y.r.Start))
	})
	var ms Moves
	for _, m := range moved {
		n := len(ms.Transfers)
		if n == 0 || ms.Transfers[n-1].From != m.from || ms.Transfers[n-1].To != m.to {
			ms.Transfers = append(ms.Transfers, Transfer{From: m.from, To: m.to})
			n++
		}
		ms.Transfers[n-1].Ranges = appendRange(ms.Transfers[n-1].Ranges, m.r)
		ms.Samples += m.r.Len()
	}
	return ms
}
