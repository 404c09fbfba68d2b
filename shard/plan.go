package shard

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Errors returned by this package, wrapped with the details (the worker, the
// range); test for them with errors.Is.
var (
	// ErrNoWorkers means a split or rebalance was asked of no workers.
	ErrNoWorkers = errors.New("shard: no workers")
	// ErrBadWeight means a worker's weight is not positive and finite.
	ErrBadWeight = errors.New("shard: bad weight")
	// ErrBadWorkerID means a worker ID is empty.
	ErrBadWorkerID = errors.New("shard: bad worker ID")
	// ErrUnknownWorker means the worker has no assignment in the plan.
	ErrUnknownWorker = errors.New("shard: unknown worker")
	// ErrInvalidPlan means a plan breaks an invariant of [Plan.Check].
	ErrInvalidPlan = errors.New("shard: invalid plan")
	// ErrEpochNotDone means the next epoch was asked for before every
	// sample of this one was consumed.
	ErrEpochNotDone = errors.New("shard: epoch not done")
)

// Range is the half-open interval of sample indices [Start, End).
type Range struct {
	Start, End uint64
}

// Len returns the number of samples in r (0 if End ≤ Start).
func (r Range) Len() uint64 {
	if r.End <= r.Start {
		return 0
	}
	return r.End - r.Start
}

// String formats r as [Start,End).
func (r Range) String() string { return fmt.Sprintf("[%d,%d)", r.Start, r.End) }

// Assignment is one worker's share of an epoch: its ranges, in the order it
// consumes them, and how many of their samples it has consumed.
type Assignment struct {
	// Worker identifies the worker (a task rank or task ID); never empty.
	Worker string
	// Ranges are the worker's samples in consumption order: consumed ones
	// first, then remaining ones. Each is non-empty.
	Ranges []Range
	// Consumed counts the samples of Ranges, in order, that the worker has
	// consumed: its cursor. At most the total length of Ranges.
	Consumed uint64
}

// Len returns the number of samples assigned to the worker, consumed or not.
func (a Assignment) Len() uint64 { return lenOf(a.Ranges) }

// Remaining returns the samples the worker has not consumed yet, in order,
// as a new slice.
func (a Assignment) Remaining() []Range {
	_, rest := splitAt(a.Ranges, a.Consumed)
	return rest
}

// Plan is the partition of one epoch among workers. Plans are values:
// functions and methods here never modify the plans they are given, and
// callers must not modify the Ranges of a plan they have passed on, since a
// derived plan may share them.
type Plan struct {
	// Epoch numbers the pass over the data, from 0.
	Epoch uint64
	// Total is the number of samples in the epoch: the plan covers [0, Total).
	Total uint64
	// Assignments are sorted by Worker, one per worker.
	Assignments []Assignment
}

// Check reports the first broken invariant of p, wrapping [ErrInvalidPlan],
// or nil. A valid plan has assignments sorted by unique, non-empty worker
// IDs; non-empty ranges within [0, Total) that are pairwise disjoint across
// the whole plan and whose union is exactly [0, Total); and each cursor at
// most its worker's total range length. The coordinator checks every plan it
// decodes.
func (p Plan) Check() error {
	type owned struct {
		r      Range
		worker string
	}
	var all []owned
	for i, a := range p.Assignments {
		if a.Worker == "" {
			return fmt.Errorf("%w: assignment %d has an empty worker ID", ErrInvalidPlan, i)
		}
		if i > 0 && p.Assignments[i-1].Worker >= a.Worker {
			return fmt.Errorf("%w: assignments not sorted by unique worker: %q then %q", ErrInvalidPlan, p.Assignments[i-1].Worker, a.Worker)
		}
		for _, r := range a.Ranges {
			if r.Start >= r.End {
				return fmt.Errorf("%w: worker %q has an empty range %v", ErrInvalidPlan, a.Worker, r)
			}
			if r.End > p.Total {
				return fmt.Errorf("%w: worker %q has range %v beyond total %d", ErrInvalidPlan, a.Worker, r, p.Total)
			}
			all = append(all, owned{r, a.Worker})
		}
	}
	slices.SortFunc(all, func(x, y owned) int {
		return cmp.Or(cmp.Compare(x.r.Start, y.r.Start), cmp.Compare(x.r.End, y.r.End), cmp.Compare(x.worker, y.worker))
	})
	var next uint64
	for i, o := range all {
		if o.r.Start < next {
			prev := all[i-1]
			return fmt.Errorf("%w: range %v of worker %q overlaps range %v of worker %q", ErrInvalidPlan, o.r, o.worker, prev.r, prev.worker)
		}
		if o.r.Start > next {
			return fmt.Errorf("%w: samples %v are assigned to no worker", ErrInvalidPlan, Range{next, o.r.Start})
		}
		next = o.r.End
	}
	if next != p.Total {
		return fmt.Errorf("%w: samples %v are assigned to no worker", ErrInvalidPlan, Range{next, p.Total})
	}
	// The ranges are disjoint within [0, Total), so no sum below overflows.
	for _, a := range p.Assignments {
		if n := a.Len(); a.Consumed > n {
			return fmt.Errorf("%w: worker %q consumed %d of its %d samples", ErrInvalidPlan, a.Worker, a.Consumed, n)
		}
	}
	return nil
}

// find returns the index of worker's assignment.
func (p Plan) find(worker string) (int, bool) {
	i := sort.Search(len(p.Assignments), func(i int) bool { return p.Assignments[i].Worker >= worker })
	return i, i < len(p.Assignments) && p.Assignments[i].Worker == worker
}

// Assignment returns worker's assignment and whether it has one.
func (p Plan) Assignment(worker string) (Assignment, bool) {
	i, ok := p.find(worker)
	if !ok {
		return Assignment{}, false
	}
	return p.Assignments[i], true
}

// Remaining returns the samples worker has not consumed yet, in the order it
// consumes them, as a new slice; nil for a worker without an assignment.
func (p Plan) Remaining(worker string) []Range {
	a, ok := p.Assignment(worker)
	if !ok {
		return nil
	}
	return a.Remaining()
}

// Advance moves worker's cursor over its next n samples (fewer if it has
// fewer left) and returns the new plan and the samples it moved over, in
// order. The coordinator calls it once per committed round with the number
// of samples the trainer reports for it, never for a round that aborted, so
// a retried round consumes nothing extra. A worker that is in p but no
// longer live (left, not yet rebalanced away) may still advance: its
// committed work counts. Advance on a worker without an assignment returns
// [ErrUnknownWorker] and p unchanged.
func (p Plan) Advance(worker string, n uint64) (Plan, []Range, error) {
	i, ok := p.find(worker)
	if !ok {
		return p, nil, fmt.Errorf("%w: %q has no assignment in epoch %d", ErrUnknownWorker, worker, p.Epoch)
	}
	a := p.Assignments[i]
	taken, _ := splitAt(a.Remaining(), n)
	if len(taken) == 0 {
		return p, nil, nil
	}
	q := p
	q.Assignments = slices.Clone(p.Assignments)
	q.Assignments[i].Consumed += lenOf(taken)
	return q, taken, nil
}

// ConsumedTotal returns the number of samples consumed by all workers.
func (p Plan) ConsumedTotal() uint64 {
	var n uint64
	for _, a := range p.Assignments {
		n += a.Consumed
	}
	return n
}

// Progress returns the consumed fraction of the epoch, from 0 to 1 (1 for
// an empty epoch).
func (p Plan) Progress() float64 {
	if p.Total == 0 {
		return 1
	}
	return float64(p.ConsumedTotal()) / float64(p.Total)
}

// Done reports whether every sample of the epoch has been consumed.
func (p Plan) Done() bool { return p.ConsumedTotal() == p.Total }
