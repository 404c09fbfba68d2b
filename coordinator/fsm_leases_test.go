package coordinator

import (
	"bytes"
	"io"
	"testing"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
)

func leaseCmd(id, job string, deposit int64) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_LeaseCreated{LeaseCreated: &meghav1.LeaseCreatedCommand{
		Lease: &meghav1.Lease{Id: id, JobId: job, ProviderName: "p", GpuModel: "H100-SXM", Gpus: 1, DepositMicros: deposit}, At: t0}}}
}

func leaseClosedCmd(id string, spent int64) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_LeaseClosed{LeaseClosed: &meghav1.LeaseClosedCommand{
		LeaseId: id, Reason: "test", SpentMicros: spent, At: t0}}}
}

func TestApplyLeases(t *testing.T) {
	h := newFSMHarness(t)
	job := testJob("j-1", "acme")
	job.Spec.Budget = &meghav1.Budget{MaxSpendMicros: 5_000_000} // $5
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_SubmitJob{SubmitJob: &meghav1.SubmitJobCommand{Job: job}}})

	h.ok(leaseCmd("l-1", "j-1", 2_000_000))
	h.ok(leaseCmd("l-2", "j-1", 2_000_000))
	// A third deposit of $2 would put $6 at risk against a $5 budget.
	h.fails(leaseCmd("l-3", "j-1", 2_000_000), ErrBudget)
	// A lease is never recorded twice; leases need a known, live job.
	h.fails(leaseCmd("l-1", "j-1", 1), ErrBadTransition)
	h.fails(leaseCmd("l-9", "nope", 1), ErrJobNotFound)

	// Spend only grows, and rolls up into the job.
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_LeaseSpend{LeaseSpend: &meghav1.LeaseSpendCommand{
		SpentMicros: map[string]int64{"l-1": 300_000, "l-2": 200_000, "unknown": 5}, At: t0}}})
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_LeaseSpend{LeaseSpend: &meghav1.LeaseSpendCommand{
		SpentMicros: map[string]int64{"l-1": 100_000}, At: t0}}})
	st := h.fsm.State()
	if j, _ := st.Job("j-1"); j.Status.SpendMicros != 500_000 {
		t.Fatalf("job spend %d, want 500000", j.Status.SpendMicros)
	}
	// Closing frees the escrow held against the budget: only what was
	// drawn still counts, so another lease fits.
	h.ok(leaseClosedCmd("l-1", 400_000))
	h.ok(leaseClosedCmd("l-1", 1)) // reported twice (market and coordinator): no change
	if l, _ := st.Lease("l-1"); l.State != meghav1.LeaseState_LEASE_STATE_CLOSED || l.SpentMicros != 400_000 {
		t.Fatalf("closed lease %v", l)
	}
	if got := st.committedMicros("j-1"); got != 2_400_000 {
		t.Fatalf("committed %d, want 2400000 (400000 drawn + 2000000 held)", got)
	}
	h.ok(leaseCmd("l-3", "j-1", 2_000_000))
	if j, _ := st.Job("j-1"); j.Status.SpendMicros != 600_000 {
		t.Fatalf("job spend %d, want 600000", j.Status.SpendMicros)
	}
	h.fails(leaseClosedCmd("l-404", 0), ErrUnknownLease)
	if ls := st.Leases("j-1"); len(ls) != 3 {
		t.Fatalf("%d leases listed", len(ls))
	}

	// Leases survive a snapshot.
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	a, b := st.Leases("j-1"), restored.State().Leases("j-1")
	if len(a) != len(b) {
		t.Fatalf("%d leases after restore, want %d", len(b), len(a))
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			t.Fatalf("lease %s differs after restore", a[i].Id)
		}
	}
}
