package shard

import (
	"errors"
	"testing"
)

// decodePlan reads a small plan from fuzz input: a total, then per range a
// worker (one of four), start, length and a cursor increment.
func decodePlan(b []byte) Plan {
	if len(b) == 0 {
		return Plan{}
	}
	p := Plan{Total: uint64(b[0] % 64)}
	workers := []string{"a", "b", "c", "d"}
	for b = b[1:]; len(b) >= 4; b = b[4:] {
		w := workers[b[0]%4]
		n := len(p.Assignments)
		if n == 0 || p.Assignments[n-1].Worker != w {
			p.Assignments = append(p.Assignments, Assignment{Worker: w})
			n++
		}
		a := &p.Assignments[n-1]
		a.Ranges = append(a.Ranges, Range{uint64(b[1] % 64), uint64(b[1]%64) + uint64(b[2]%16)})
		a.Consumed += uint64(b[3] % 8)
	}
	return p
}

// FuzzPlan feeds arbitrary plans, as the coordinator might decode them, to
// every function: none panics, Rebalance refuses what Check refuses, and
// what valid plans become is valid.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{10, 0, 0, 5, 2, 1, 5, 5, 0})             // a [0,5) consumed 2, b [5,10)
	f.Add([]byte{10, 0, 6, 4, 7, 0, 0, 6, 1, 1, 4, 2, 0}) // a [6,10) [0,6), b [4,6) overlaps a
	f.Add([]byte{8, 2, 4, 4, 0, 0, 0, 4, 7})              // c [4,8) a [0,4): unsorted
	f.Add([]byte{12, 0, 0, 12, 7})                        // a [0,12) consumed 7
	f.Fuzz(func(t *testing.T, b []byte) {
		p := decodePlan(b)
		err := p.Check()
		_, _ = p.Progress(), p.Done()
		for _, a := range p.Assignments {
			_ = p.Remaining(a.Worker)
			q, _, aerr := p.Advance(a.Worker, 3)
			if err == nil && (aerr != nil || q.Check() != nil) {
				t.Fatalf("Advance(%q) of valid %+v: %v, %v", a.Worker, p, aerr, q.Check())
			}
		}
		q, _, rerr := Rebalance(p, map[string]float64{"a": 1, "c": 2.5, "e": 0.5})
		if err != nil {
			if !errors.Is(rerr, ErrInvalidPlan) {
				t.Fatalf("Rebalance of invalid plan (%v): %v", err, rerr)
			}
			return
		}
		if rerr != nil || q.Check() != nil || q.ConsumedTotal() != p.ConsumedTotal() {
			t.Fatalf("Rebalance of valid %+v: %+v, %v", p, q, rerr)
		}
	})
}
