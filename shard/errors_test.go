package shard

import (
	"errors"
	"math"
	"testing"
)

func TestErrors(t *testing.T) {
	two, _ := Split(10, map[string]float64{"a": 1, "b": 1})
	half, _, _ := two.Advance("a", 2)
	cases := []struct {
		name string
		err  error
		is   error
		msg  string
	}{
		{"split no workers", second(Split(10, nil)), ErrNoWorkers, "shard: no workers"},
		{"split zero weight", second(Split(10, map[string]float64{"a": 1, "b": 0})), ErrBadWeight,
			`shard: bad weight: worker "b" has weight 0, want a positive, finite throughput`},
		{"split negative weight", second(Split(10, map[string]float64{"gpu-3": -2})), ErrBadWeight,
			`shard: bad weight: worker "gpu-3" has weight -2, want a positive, finite throughput`},
		{"split NaN weight", second(Split(10, map[string]float64{"a": math.NaN()})), ErrBadWeight,
			`shard: bad weight: worker "a" has weight NaN, want a positive, finite throughput`},
		{"split infinite weight", second(Split(10, map[string]float64{"a": 1, "z": math.Inf(1)})), ErrBadWeight,
			`shard: bad weight: worker "z" has weight +Inf, want a positive, finite throughput`},
		{"split first bad worker named", second(Split(10, map[string]float64{"c": -1, "b": 0})), ErrBadWeight,
			`shard: bad weight: worker "b" has weight 0, want a positive, finite throughput`},
		{"split empty worker ID", second(Split(10, map[string]float64{"": 1})), ErrBadWorkerID,
			"shard: bad worker ID: empty worker ID (weight 1)"},
		{"advance unknown worker", third(two.Advance("c", 1)), ErrUnknownWorker,
			`shard: unknown worker: "c" has no assignment in epoch 0`},
		{"rebalance no workers", third(Rebalance(two, map[string]float64{})), ErrNoWorkers, "shard: no workers"},
		{"rebalance bad weight", third(Rebalance(two, map[string]float64{"a": 1, "b": -1})), ErrBadWeight,
			`shard: bad weight: worker "b" has weight -1, want a positive, finite throughput`},
		{"rebalance invalid plan", third(Rebalance(Plan{Total: 1}, map[string]float64{"a": 1})), ErrInvalidPlan,
			"shard: invalid plan: samples [0,1) are assigned to no worker"},
		{"next epoch early", second(NextEpoch(half, map[string]float64{"a": 1})), ErrEpochNotDone,
			"shard: epoch not done: epoch 0 has 8 of 10 samples left"},
		{"next epoch no workers", second(NextEpoch(Plan{}, nil)), ErrNoWorkers, "shard: no workers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.is) || c.err.Error() != c.msg {
				t.Errorf("error %v\nwant %q (%v)", c.err, c.msg, c.is)
			}
		})
	}
}

func second[A any](_ A, err error) error        { return err }
func third[A, B any](_ A, _ B, err error) error { return err }

func TestCheck(t *testing.T) {
	r := func(s, e uint64) Range { return Range{s, e} }
	cases := []struct {
		name string
		plan Plan
		msg  string // "" for a valid plan
	}{
		{"empty epoch", Plan{}, ""},
		{"live worker without ranges", Plan{Total: 3, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, 3)}, Consumed: 3}, {Worker: "b"}}}, ""},
		{"ranges out of index order", Plan{Total: 6, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(4, 6), r(0, 2)}, Consumed: 3}, {Worker: "b", Ranges: []Range{r(2, 4)}}}}, ""},
		{"empty worker ID", Plan{Total: 1, Assignments: []Assignment{{Ranges: []Range{r(0, 1)}}}},
			"shard: invalid plan: assignment 0 has an empty worker ID"},
		{"unsorted", Plan{Total: 2, Assignments: []Assignment{
			{Worker: "b", Ranges: []Range{r(0, 1)}}, {Worker: "a", Ranges: []Range{r(1, 2)}}}},
			`shard: invalid plan: assignments not sorted by unique worker: "b" then "a"`},
		{"duplicate worker", Plan{Total: 2, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, 1)}}, {Worker: "a", Ranges: []Range{r(1, 2)}}}},
			`shard: invalid plan: assignments not sorted by unique worker: "a" then "a"`},
		{"empty range", Plan{Total: 2, Assignments: []Assignment{{Worker: "a", Ranges: []Range{r(0, 2), r(2, 2)}}}},
			`shard: invalid plan: worker "a" has an empty range [2,2)`},
		{"reversed range", Plan{Total: 9, Assignments: []Assignment{{Worker: "a", Ranges: []Range{r(5, 3)}}}},
			`shard: invalid plan: worker "a" has an empty range [5,3)`},
		{"beyond total", Plan{Total: 4, Assignments: []Assignment{{Worker: "a", Ranges: []Range{r(0, 5)}}}},
			`shard: invalid plan: worker "a" has range [0,5) beyond total 4`},
		{"overlap", Plan{Total: 4, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, 3)}}, {Worker: "b", Ranges: []Range{r(2, 4)}}}},
			`shard: invalid plan: range [2,4) of worker "b" overlaps range [0,3) of worker "a"`},
		{"same range twice", Plan{Total: 2, Assignments: []Assignment{{Worker: "a", Ranges: []Range{r(0, 2), r(0, 2)}}}},
			`shard: invalid plan: range [0,2) of worker "a" overlaps range [0,2) of worker "a"`},
		{"gap", Plan{Total: 4, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, 1)}}, {Worker: "b", Ranges: []Range{r(2, 4)}}}},
			"shard: invalid plan: samples [1,2) are assigned to no worker"},
		{"short", Plan{Total: 4, Assignments: []Assignment{{Worker: "a", Ranges: []Range{r(0, 3)}}}},
			"shard: invalid plan: samples [3,4) are assigned to no worker"},
		{"over-consumed", Plan{Total: 4, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, 2)}, Consumed: 3}, {Worker: "b", Ranges: []Range{r(2, 4)}}}},
			`shard: invalid plan: worker "a" consumed 3 of its 2 samples`},
		{"huge overlapping ranges", Plan{Total: math.MaxUint64, Assignments: []Assignment{
			{Worker: "a", Ranges: []Range{r(0, math.MaxUint64), r(0, math.MaxUint64)}, Consumed: math.MaxUint64}}},
			`shard: invalid plan: range [0,18446744073709551615) of worker "a" overlaps range [0,18446744073709551615) of worker "a"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.plan.Check()
			switch {
			case c.msg == "" && err != nil:
				t.Errorf("valid plan: %v", err)
			case c.msg != "" && (!errors.Is(err, ErrInvalidPlan) || err.Error() != c.msg):
				t.Errorf("Check() = %v\nwant %q", err, c.msg)
			}
		})
	}
}
