package shard_test

import (
	"fmt"

	"github.com/megha-ml/megha/shard"
)

// A worker is lost part-way through an epoch and a replacement joins: the
// lost worker's unconsumed samples move, nothing consumed does.
func Example() {
	p, _ := shard.Split(100, map[string]float64{"rank-0": 3, "rank-1": 1})
	fmt.Println("split:", p.Remaining("rank-0"), p.Remaining("rank-1"))

	// Each committed round moves a cursor; the samples come back once.
	p, took, _ := p.Advance("rank-0", 30)
	fmt.Println("rank-0 trained on", took)
	p, took, _ = p.Advance("rank-1", 10)
	fmt.Println("rank-1 trained on", took)

	// rank-1 is lost; rank-2, as fast as rank-0, replaces it.
	p, moves, _ := shard.Rebalance(p, map[string]float64{"rank-0": 3, "rank-2": 3})
	for _, m := range moves.Transfers {
		fmt.Println("moved", m.From, "→", m.To, m.Ranges)
	}
	fmt.Println("moved samples:", moves.Samples)
	for _, a := range p.Assignments {
		fmt.Printf("%s: %v consumed %d, remaining %v\n", a.Worker, a.Ranges, a.Consumed, a.Remaining())
	}
	fmt.Printf("progress %.2f, check %v\n", p.Progress(), p.Check())
	// Output:
	// split: [[0,75)] [[75,100)]
	// rank-0 trained on [[0,30)]
	// rank-1 trained on [[75,85)]
	// moved rank-0 → rank-2 [[60,75)]
	// moved rank-1 → rank-2 [[85,100)]
	// moved samples: 30
	// rank-0: [[0,60)] consumed 30, remaining [[30,60)]
	// rank-1: [[75,85)] consumed 10, remaining []
	// rank-2: [[60,75) [85,100)] consumed 0, remaining [[60,75) [85,100)]
	// progress 0.40, check <nil>
}
