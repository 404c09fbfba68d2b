package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestStatusShowsRounds(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	rec := func(r uint64, attempt uint32, members int, val bool) *meghav1.RoundRecord {
		rr := &meghav1.RoundRecord{Round: r, Attempt: attempt, Tokens: 1000, TrainLoss: 3.25, ValLoss: 3.5, HasVal: val,
			BytesSent: 3 << 20, StartedAt: timestamppb.New(t0), CommittedAt: timestamppb.New(t0.Add(1500 * time.Millisecond))}
		for i := range members {
			rr.Members = append(rr.Members, &meghav1.MemberRound{Steps: uint32(20 - 5*i)})
		}
		return rr
	}
	job := &meghav1.Job{Id: "lm-1", Spec: &meghav1.JobSpec{Name: "lm", Model: &meghav1.ModelSpec{Builtin: "mlp-tiny"},
		Sync: &meghav1.SyncSpec{InnerSteps: 20, OuterLr: 0.7, OuterMomentum: 0.9, Compression: meghav1.Compression_COMPRESSION_INT8},
		Stop: &meghav1.StopCondition{Rounds: 10}},
		Status: &meghav1.JobStatus{State: meghav1.JobState_JOB_STATE_RUNNING, Train: &meghav1.TrainStatus{
			Algorithm: "diloco", Committed: 2, Attempt: 1, AbortedAttempts: 1, BytesSent: 6 << 20, BytesReceived: 6 << 20,
			Members: []*meghav1.RoundMember{{TaskId: "a"}, {TaskId: "b"}},
			Rounds:  []*meghav1.RoundRecord{rec(1, 0, 3, true), rec(2, 1, 2, false)}}}}
	var b bytes.Buffer
	describeJob(&b, job, nil)
	if err := roundTable(&b, job.Status.Train, 10); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Sync:        DiLoCo, H=20, outer lr 0.7, momentum 0.9, compression int8",
		"Rounds:      2 of 10 committed; round 3 attempt 1 in flight with 2 workers; 1 attempts abandoned and retried",
		"Traffic:     6.0 MiB sent, 6.0 MiB received by all workers (3.0 MiB per round)",
		"ROUND", "1      0        3        10–20  1000    3.2500  3.5000  3.0 MiB  1.5s",
		"2      1        2        15–20  1000    3.2500  -       3.0 MiB  1.5s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := roundTable(&b, job.Status.Train, 1); err != nil || strings.Contains(b.String(), "\n1      ") {
		t.Errorf("--rounds 1 shows more than the last round:\n%s", b.String())
	}
}

func TestLeaseSummary(t *testing.T) {
	got := leaseSummary([]*meghav1.Lease{
		{GpuModel: "H100-SXM", Gpus: 1, PricePerGpuHourMicros: 2_000_000, State: meghav1.LeaseState_LEASE_STATE_ACTIVE},
		{GpuModel: "RTX4090", Gpus: 2, PricePerGpuHourMicros: 400_000, State: meghav1.LeaseState_LEASE_STATE_ACTIVE},
		{GpuModel: "H100-SXM", Gpus: 1, PricePerGpuHourMicros: 1_000_000, State: meghav1.LeaseState_LEASE_STATE_ACTIVE},
		{GpuModel: "L40S", Gpus: 1, State: meghav1.LeaseState_LEASE_STATE_CLOSED},
	})
	if want := "3 active (2×H100-SXM, 2×RTX4090) at $3.80/h, 1 closed"; got != want {
		t.Fatalf("leaseSummary = %q, want %q", got, want)
	}
}
