package shard

import (
	"errors"
	"maps"
	"math"
	"math/big"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestSplitProperties: a split is valid, contiguous in worker order, exact
// in total, proportional within one sample per worker, and deterministic.
func TestSplitProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		total := drawTotal(t)
		weights := drawWeights(t)
		p, err := Split(total, weights)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check(); err != nil {
			t.Fatal(err)
		}
		if p.Epoch != 0 || p.Total != total || p.ConsumedTotal() != 0 || len(p.Assignments) != len(weights) {
			t.Fatalf("split of %d: %+v", total, p)
		}
		// Largest remainders: a worker rounded up has a fractional part at
		// least that of any worker rounded down (equal only before it).
		type rounded struct {
			id   string
			frac *big.Rat
			up   bool
		}
		var rs []rounded
		var off uint64
		for i, id := range slices.Sorted(maps.Keys(weights)) {
			a := p.Assignments[i]
			if a.Worker != id || len(a.Ranges) > 1 || (len(a.Ranges) == 1 && a.Ranges[0].Start != off) {
				t.Fatalf("assignment %d = %+v, want %q's contiguous range from %d", i, a, id, off)
			}
			n := size(a.Ranges)
			if q := quota(total, weights[id], weights); !withinOne(n, q) {
				t.Fatalf("%q got %d samples, quota %s", id, n, q.FloatString(3))
			}
			off += n
			q := quota(total, weights[id], weights)
			fl, _ := floorOf(q)
			rs = append(rs, rounded{id, q.Sub(q, ratOf(fl)), n > fl})
		}
		for _, up := range rs {
			for _, down := range rs {
				if c := up.frac.Cmp(down.frac); up.up && !down.up && down.frac.Sign() > 0 && (c < 0 || c == 0 && up.id > down.id) {
					t.Fatalf("%q rounded up (fraction %s) before %q (%s)", up.id, up.frac.FloatString(6), down.id, down.frac.FloatString(6))
				}
			}
		}
		if again, _ := Split(total, maps.Clone(weights)); !reflect.DeepEqual(p, again) {
			t.Fatalf("split not deterministic:\n%+v\n%+v", p, again)
		}
	})
}

// machine is the model-based test of a job's epochs: a plan driven through
// random commits, joins, losses, replacements and speed changes, against a
// ledger of every sample Advance has handed out.
type machine struct {
	plan    Plan
	weights map[string]float64 // the live workers
	taken   []Range            // handed out by Advance this epoch
	counts  []uint8            // hand-outs per sample, for small totals
}

// bitmapMax bounds the totals that also get a per-sample ledger.
const bitmapMax = 4096

func (m *machine) init(t *rapid.T) {
	m.weights = drawWeights(t)
	p, err := Split(drawTotal(t), m.weights)
	if err != nil {
		t.Fatal(err)
	}
	m.start(p)
}

// start begins an epoch with an empty ledger.
func (m *machine) start(p Plan) {
	m.plan, m.taken, m.counts = p, nil, nil
	if p.Total <= bitmapMax {
		m.counts = make([]uint8, p.Total)
	}
}

// check holds after every step: the plan is valid, and the samples handed
// out are exactly the samples behind the cursors, each handed out once.
func (m *machine) check(t *rapid.T) {
	if err := m.plan.Check(); err != nil {
		t.Fatal(err)
	}
	var consumed []Range
	for _, a := range m.plan.Assignments {
		consumed = append(consumed, firstN(a.Ranges, a.Consumed)...)
	}
	if got, want := norm(t, m.taken), norm(t, consumed); !slices.Equal(got, want) {
		t.Fatalf("handed out %v, consumed %v", got, want)
	}
	// norm has checked that the taken ranges do not overlap.
	if n := size(m.taken); n != m.plan.ConsumedTotal() {
		t.Fatalf("handed out %d samples, consumed %d", n, m.plan.ConsumedTotal())
	}
	if m.plan.Done() != (m.plan.ConsumedTotal() == m.plan.Total) || m.plan.Progress() < 0 || m.plan.Progress() > 1 {
		t.Fatalf("done %v, progress %v with %d/%d", m.plan.Done(), m.plan.Progress(), m.plan.ConsumedTotal(), m.plan.Total)
	}
}

// advance commits a round of a worker (or of one the plan does not know).
func (m *machine) advance(t *rapid.T, worker string, n uint64) {
	before := clonePlan(m.plan)
	a, known := m.plan.Assignment(worker)
	q, got, err := m.plan.Advance(worker, n)
	if !reflect.DeepEqual(before, m.plan) {
		t.Fatal("Advance modified its plan")
	}
	if !known {
		if !errors.Is(err, ErrUnknownWorker) || got != nil || !reflect.DeepEqual(q, m.plan) {
			t.Fatalf("Advance(%q) = %v, %v; want ErrUnknownWorker and no change", worker, got, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := firstN(remainingOf(a), n); !slices.Equal(seq(got), want) {
		t.Fatalf("Advance(%q, %d) took %v, want %v", worker, n, got, want)
	}
	for i, b := range q.Assignments {
		old := m.plan.Assignments[i]
		if b.Worker != old.Worker || !slices.Equal(b.Ranges, old.Ranges) ||
			(b.Worker != worker && b.Consumed != old.Consumed) || (b.Worker == worker && b.Consumed != old.Consumed+size(got)) {
			t.Fatalf("Advance(%q) changed %+v into %+v", worker, old, b)
		}
	}
	for _, r := range got {
		m.taken = append(m.taken, r)
		for i := r.Start; m.counts != nil && i < r.End; i++ {
			if m.counts[i]++; m.counts[i] > 1 {
				t.Fatalf("sample %d handed out twice", i)
			}
		}
	}
	m.plan = q
}

// rebalance redistributes among the live workers and checks the result.
func (m *machine) rebalance(t *rapid.T) {
	before := clonePlan(m.plan)
	q, mv, err := Rebalance(m.plan, m.weights)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, m.plan) {
		t.Fatal("Rebalance modified its plan")
	}
	checkRebalance(t, m.plan, m.weights, q, mv)
	m.plan = q
}

// pickLive draws a live worker.
func (m *machine) pickLive(t *rapid.T, label string) string {
	return rapid.SampledFrom(slices.Sorted(maps.Keys(m.weights))).Draw(t, label)
}

// join adds a worker that is not live (it may be a departed one rejoining).
func (m *machine) join(t *rapid.T) bool {
	var idle []string
	for _, id := range workerPool {
		if _, ok := m.weights[id]; !ok {
			idle = append(idle, id)
		}
	}
	if len(idle) == 0 {
		return false
	}
	id := rapid.SampledFrom(idle).Draw(t, "join")
	m.weights[id] = drawWeight(t, "join_weight")
	return true
}

func (m *machine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"": m.check,
		"advance": func(t *rapid.T) {
			names := []string{"ghost"}
			for _, a := range m.plan.Assignments {
				names = append(names, a.Worker)
			}
			w := rapid.SampledFrom(names).Draw(t, "worker")
			m.advance(t, w, drawN(t, size(m.plan.Remaining(w))))
		},
		"join": func(t *rapid.T) {
			if !m.join(t) {
				t.Skip("every worker is live")
			}
			m.rebalance(t)
		},
		// A worker is lost: it stays in the plan (and may still commit)
		// until the next Rebalance passes its remainder on.
		"leave": func(t *rapid.T) {
			if len(m.weights) < 2 {
				t.Skip("last worker")
			}
			delete(m.weights, m.pickLive(t, "leave"))
			if rapid.Bool().Draw(t, "rebalance_now") {
				m.rebalance(t)
			}
		},
		"replace": func(t *rapid.T) {
			lost := m.pickLive(t, "lost")
			if !m.join(t) {
				t.Skip("every worker is live")
			}
			delete(m.weights, lost)
			m.rebalance(t)
		},
		"speed": func(t *rapid.T) {
			m.weights[m.pickLive(t, "slowed")] = drawWeight(t, "new_weight")
			m.rebalance(t)
		},
		"rebalance": m.rebalance,
		// Every worker drains what it has: the epoch is done and each
		// sample was handed out exactly once; the next one starts afresh.
		"drain": func(t *rapid.T) {
			m.rebalance(t)
			for _, a := range m.plan.Assignments {
				m.advance(t, a.Worker, rapid.SampledFrom([]uint64{size(remainingOf(a)), math.MaxUint64}).Draw(t, "all"))
			}
			if !m.plan.Done() || m.plan.Progress() != 1 {
				t.Fatalf("drained but not done: %d/%d", m.plan.ConsumedTotal(), m.plan.Total)
			}
			want := []Range{{0, m.plan.Total}}
			if m.plan.Total == 0 {
				want = nil
			}
			if got := norm(t, m.taken); !slices.Equal(got, want) || size(m.taken) != m.plan.Total {
				t.Fatalf("epoch handed out %v, want %v once", got, want)
			}
			for i, c := range m.counts {
				if c != 1 {
					t.Fatalf("sample %d handed out %d times", i, c)
				}
			}
			p, err := NextEpoch(m.plan, m.weights)
			if err != nil {
				t.Fatal(err)
			}
			if p.Epoch != m.plan.Epoch+1 || p.Total != m.plan.Total || p.ConsumedTotal() != 0 {
				t.Fatalf("next epoch of %+v is %+v", m.plan, p)
			}
			m.start(p)
		},
		"early_epoch": func(t *rapid.T) {
			if m.plan.Done() {
				t.Skip("done")
			}
			if _, err := NextEpoch(m.plan, m.weights); !errors.Is(err, ErrEpochNotDone) {
				t.Fatalf("NextEpoch before done: %v", err)
			}
		},
	}
}

// TestExactlyOnce drives plans through random sequences of commits, joins,
// losses, replacements and speed changes, checking after every step that
// the plan is valid and that every sample handed out is consumed, once,
// and after every Rebalance that it moved the least it could.
func TestExactlyOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var m machine
		m.init(t)
		t.Repeat(m.actions())
	})
}
