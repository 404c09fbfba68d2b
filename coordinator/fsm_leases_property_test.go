package coordinator

import (
	"fmt"
	"testing"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"pgregory.net/rapid"
)

// TestLeaseBudgetProperty: whatever sequence of lease records, closes and
// spend reports the FSM is given (reports beyond a lease's deposit
// included), a job's committed money (drawn plus escrow held) never exceeds
// its budget, a lease's spend never goes down, the job's spend never
// exceeds what its leases drew, and a lease ID is never recorded twice.
func TestLeaseBudgetProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := &fsmHarness{t: t, fsm: NewFSM(nil)}
		budget := rapid.Int64Range(1, 10_000).Draw(rt, "budget")
		job := testJob("j", "acme")
		job.Spec.Budget = &meghav1.Budget{MaxSpendMicros: budget}
		h.ok(&meghav1.Command{Cmd: &meghav1.Command_SubmitJob{SubmitJob: &meghav1.SubmitJobCommand{Job: job}}})
		st := h.fsm.State()
		for i := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			id := fmt.Sprintf("l-%d", rapid.IntRange(0, 8).Draw(rt, fmt.Sprintf("lease%d", i)))
			var c *meghav1.Command
			switch rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("op%d", i)) {
			case 0:
				c = leaseCmd(id, "j", rapid.Int64Range(0, budget).Draw(rt, fmt.Sprintf("deposit%d", i)))
			case 1:
				c = leaseClosedCmd(id, rapid.Int64Range(0, budget).Draw(rt, fmt.Sprintf("spent%d", i)))
			default:
				c = &meghav1.Command{Cmd: &meghav1.Command_LeaseSpend{LeaseSpend: &meghav1.LeaseSpendCommand{
					SpentMicros: map[string]int64{id: rapid.Int64Range(0, budget).Draw(rt, fmt.Sprintf("draw%d", i))}, At: t0}}}
			}
			before, had := st.Lease(id)
			res := h.apply(c)
			if _, isLease := c.Cmd.(*meghav1.Command_LeaseCreated); isLease && had {
				if _, ok := res.(*ApplyResult); ok {
					rt.Fatalf("lease %s recorded twice", id)
				}
			}
			if l, ok := st.Lease(id); ok && had && l.SpentMicros < before.SpentMicros {
				rt.Fatalf("lease %s spend went down: %d → %d", id, before.SpentMicros, l.SpentMicros)
			}
			if got := st.committedMicros("j"); got > budget {
				rt.Fatalf("committed %d (drawn plus escrow held) over budget %d", got, budget)
			}
			j, _ := st.Job("j")
			var drawn int64
			for _, l := range st.Leases("j") {
				drawn += l.SpentMicros
			}
			if j.Status.SpendMicros > drawn {
				rt.Fatalf("job spend %d exceeds what its leases drew (%d)", j.Status.SpendMicros, drawn)
			}
		}
	})
}
