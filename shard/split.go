package shard

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
)

// Split starts epoch 0 of total samples: it cuts [0, total) into one
// contiguous range per worker, in worker ID order, sized in proportion to
// the worker's weight (its measured throughput, samples per second or any
// other unit common to all). Each size is the floor or the ceiling of the
// worker's exact quota total·w/Σw, and the sizes sum to total (largest
// remainders get the ceiling; ties go to the smaller worker ID). A worker
// whose share rounds to nothing gets an assignment without ranges.
//
// Weights must be positive and finite and worker IDs non-empty; otherwise
// Split returns [ErrBadWeight] or [ErrBadWorkerID] naming the first bad
// worker in ID order, or [ErrNoWorkers] for an empty map.
func Split(total uint64, weights map[string]float64) (Plan, error) {
	ids, err := sortedWorkers(weights)
	if err != nil {
		return Plan{}, err
	}
	shares := apportion(total, ids, weights, nil)
	p := Plan{Total: total, Assignments: make([]Assignment, len(ids))}
	var off uint64
	for i, id := range ids {
		p.Assignments[i].Worker = id
		if shares[i] > 0 {
			p.Assignments[i].Ranges = []Range{{off, off + shares[i]}}
			off += shares[i]
		}
	}
	return p, nil
}

// NextEpoch starts epoch p.Epoch+1 over the whole of [0, p.Total), split
// afresh among weights as by [Split]. It refuses, with [ErrEpochNotDone],
// while p has samples left to consume: starting over then would skip them.
func NextEpoch(p Plan, weights map[string]float64) (Plan, error) {
	if err := p.Check(); err != nil {
		return Plan{}, err
	}
	if !p.Done() {
		return Plan{}, fmt.Errorf("%w: epoch %d has %d of %d samples left", ErrEpochNotDone, p.Epoch, p.Total-p.ConsumedTotal(), p.Total)
	}
	q, err := Split(p.Total, weights)
	if err != nil {
		return Plan{}, err
	}
	q.Epoch = p.Epoch + 1
	return q, nil
}

// sortedWorkers validates weights and returns their worker IDs in order.
func sortedWorkers(weights map[string]float64) ([]string, error) {
	if len(weights) == 0 {
		return nil, ErrNoWorkers
	}
	ids := slices.Sorted(maps.Keys(weights))
	for _, id := range ids {
		if id == "" {
			return nil, fmt.Errorf("%w: empty worker ID (weight %v)", ErrBadWorkerID, weights[id])
		}
		if w := weights[id]; !(w > 0) || math.IsInf(w, 1) {
			return nil, fmt.Errorf("%w: worker %q has weight %v, want a positive, finite throughput", ErrBadWeight, id, w)
		}
	}
	return ids, nil
}

// apportion divides total among ids in proportion to their weights. Each
// share is the floor or the ceiling of the exact quota total·w/Σw, computed
// in rationals so that every machine gets the same answer, and the shares
// sum to total. The samples left after the floors go one each to the
// quotas with the largest fractional parts, ties to the smaller ID; but
// first to workers whose held count (if held is not nil) exceeds their
// floor, because a worker given its ceiling keeps one more of the samples
// it holds instead of passing it on: this is what makes Rebalance move the
// fewest samples that any such rounding allows, and makes it idempotent.
func apportion(total uint64, ids []string, weights map[string]float64, held []uint64) []uint64 {
	sum := new(big.Rat)
	w := make([]*big.Rat, len(ids))
	for i, id := range ids {
		w[i] = new(big.Rat).SetFloat64(weights[id])
		sum.Add(sum, w[i])
	}
	t := new(big.Rat).SetInt(new(big.Int).SetUint64(total))
	shares := make([]uint64, len(ids))
	frac := make([]*big.Rat, len(ids))
	var floors uint64
	var cands []int
	for i := range ids {
		q := new(big.Rat).Mul(t, w[i])
		q.Quo(q, sum)
		fl := new(big.Int).Quo(q.Num(), q.Denom())
		shares[i] = fl.Uint64()
		floors += shares[i]
		frac[i] = q.Sub(q, new(big.Rat).SetInt(fl))
		if frac[i].Sign() > 0 {
			cands = append(cands, i)
		}
	}
	prefer := func(i int) bool { return held != nil && held[i] > shares[i] }
	slices.SortFunc(cands, func(i, j int) int {
		if pi, pj := prefer(i), prefer(j); pi != pj {
			if pi {
				return -1
			}
			return 1
		}
		return cmp.Or(frac[j].Cmp(frac[i]), cmp.Compare(i, j))
	})
	// The fractional parts sum to total−floors and each is below 1, so
	// there are more candidates than samples left.
	for _, i := range cands[:total-floors] {
		shares[i]++
	}
	return shares
}
