package report

import (
	"cmp"
	"slices"
	"strings"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Recovery is the story of one lost task: when its loss was detected, when
// a replacement was leased, placed and rejoined the rounds, and what was
// lost meanwhile. Times not recorded, and steps that have not happened, are
// null.
type Recovery struct {
	Rank       uint32     `json:"rank"`
	LostTaskID string     `json:"lost_task_id"`
	WorkerID   string     `json:"worker_id"`
	GPUModel   string     `json:"gpu_model"` // of the lost task, from its round reports; "" if it never reported
	DetectedAt *time.Time `json:"detected_at"`
	// LostInRound is the round the loss fell in: the first round
	// committed after the detection, or the next round if none has been.
	// LostMidRound says whether that round had formed (its first attempt)
	// before the detection; if not, the task was lost between rounds.
	LostInRound  uint64 `json:"lost_in_round"`
	LostMidRound bool   `json:"lost_mid_round"`
	// LostLeaseID and LostLeaseClosedAt are the lease the lost task's
	// worker most likely held: the coordinator records no link from a task
	// to its lease, so it is attributed by GPU model and time (the last
	// lease of the task's GPU model to close after the task was placed and
	// no later than the detection). A market closing a lease is often how
	// a loss starts, seconds before the failure detector notices. Empty
	// and null when no lease fits.
	LostLeaseID       string     `json:"lost_lease_id"`
	LostLeaseClosedAt *time.Time `json:"lost_lease_closed_at"`

	ReplacementTaskID   string `json:"replacement_task_id"` // "" if none was placed
	ReplacementWorkerID string `json:"replacement_worker_id"`
	// LeaseID and LeasedAt are the replacement lease, attributed by time:
	// the first lease created once the lost lease closed (or, without one,
	// once the loss was detected), which may precede the detection. Empty
	// and null without leases, or if none was created since.
	LeaseID  string     `json:"lease_id"`
	LeasedAt *time.Time `json:"leased_at"`
	PlacedAt *time.Time `json:"placed_at"` // the replacement's assignment
	// RestoredAt is always null: the coordinator does not record when a
	// replacement finished restoring its checkpoint.
	RestoredAt *time.Time `json:"restored_at"`
	// RejoinedAt is the start of the first committed round with the
	// replacement as a member (its first attempt), RejoinedRound its number.
	RejoinedAt    *time.Time `json:"rejoined_at"`
	RejoinedRound uint64     `json:"rejoined_round"`
	// RecoverySeconds is detected → rejoined; null until it rejoins.
	RecoverySeconds *float64 `json:"recovery_seconds"`
	// RoundsWithoutRank counts the rounds committed after the detection
	// without a task of this rank.
	RoundsWithoutRank uint64 `json:"rounds_without_rank"`
	// WorkLost* estimate the lost rank's own work thrown away with the
	// abandoned attempt, which is not recorded: its steps × batch size
	// (samples) and tokens in its last committed round, WorkLostBasisRound
	// (0 and null if it never committed one). At most one round's worth;
	// what the survivors redid is counted in aborted attempts, not here.
	WorkLostSamplesEstimate *uint64 `json:"work_lost_samples_estimate"`
	WorkLostTokensEstimate  *uint64 `json:"work_lost_tokens_estimate"`
	WorkLostBasisRound      uint64  `json:"work_lost_basis_round"`
}

// recoveries follows each lost task to its replacement: the next task of
// the same rank placed at or after the loss was detected.
func recoveries(spec *meghav1.JobSpec, tr *meghav1.TrainStatus, tasks []*meghav1.Task, leases []*meghav1.Lease) []Recovery {
	rankOf := map[string]uint32{}
	for _, t := range tasks {
		rankOf[t.Id] = t.Rank
	}
	byTime := slices.Clone(tasks)
	slices.SortStableFunc(byTime, func(a, b *meghav1.Task) int {
		return cmp.Or(compareTS(a.AssignedAt, b.AssignedAt), strings.Compare(a.Id, b.Id))
	})
	var lost []*meghav1.Task
	for _, t := range byTime {
		if t.State == meghav1.TaskState_TASK_STATE_LOST {
			lost = append(lost, t)
		}
	}
	slices.SortStableFunc(lost, func(a, b *meghav1.Task) int {
		return cmp.Or(compareTS(a.FinishedAt, b.FinishedAt), cmp.Compare(a.Rank, b.Rank))
	})
	leasesByTime := sortedLeases(leases)
	models := memberModels(tr)
	rounds := tr.GetRounds()
	out := []Recovery{}
	for _, t := range lost {
		rc := Recovery{Rank: t.Rank, LostTaskID: t.Id, WorkerID: t.WorkerId, GPUModel: models[t.Id].model,
			DetectedAt: timeOf(t.FinishedAt), LostInRound: tr.GetCommitted() + 1}
		detected := t.FinishedAt
		if detected == nil {
			detected = t.AssignedAt // the loss is recorded without a time: search from its placement
		}
		inFlight := tr.GetRoundStartedAt()
		for _, rec := range rounds {
			if rc.DetectedAt != nil && compareTS(rec.CommittedAt, t.FinishedAt) > 0 {
				rc.LostInRound, inFlight = rec.Round, rec.StartedAt
				break
			}
		}
		rc.LostMidRound = rc.DetectedAt != nil && inFlight != nil && compareTS(inFlight, t.FinishedAt) <= 0
		var repl *meghav1.Task
		for _, c := range byTime {
			if c != t && c.Rank == t.Rank && c.AssignedAt != nil && compareTS(c.AssignedAt, detected) >= 0 {
				repl = c
				break
			}
		}
		leasedSince := detected
		if l := lostLease(t, rc.GPUModel, leases); l != nil {
			rc.LostLeaseID, rc.LostLeaseClosedAt = l.Id, timeOf(l.ClosedAt)
			leasedSince = l.ClosedAt
		}
		if leasedSince != nil {
			for _, l := range leasesByTime {
				if l.Id != rc.LostLeaseID && compareTS(l.CreatedAt, leasedSince) >= 0 {
					rc.LeaseID, rc.LeasedAt = l.Id, timeOf(l.CreatedAt)
					break
				}
			}
		}
		if repl != nil {
			rc.ReplacementTaskID, rc.ReplacementWorkerID, rc.PlacedAt = repl.Id, repl.WorkerId, timeOf(repl.AssignedAt)
			for _, rec := range rounds {
				if hasMember(rec, repl.Id) {
					rc.RejoinedRound, rc.RejoinedAt = rec.Round, timeOf(rec.StartedAt)
					break
				}
			}
		}
		if rc.DetectedAt != nil && rc.RejoinedAt != nil && !rc.RejoinedAt.Before(*rc.DetectedAt) {
			rc.RecoverySeconds = seconds(rc.RejoinedAt.Sub(*rc.DetectedAt))
		}
		for _, rec := range rounds {
			if rc.DetectedAt == nil || compareTS(rec.CommittedAt, t.FinishedAt) <= 0 {
				continue
			}
			if rc.RejoinedRound > 0 && rec.Round >= rc.RejoinedRound {
				break
			}
			without := true
			for _, m := range rec.Members {
				if r, ok := rankOf[m.TaskId]; ok && r == t.Rank {
					without = false
				}
			}
			if without {
				rc.RoundsWithoutRank++
			}
		}
		for i := len(rounds) - 1; i >= 0; i-- {
			if m := memberOf(rounds[i], t.Id); m != nil {
				samples := uint64(m.Steps) * uint64(spec.GetData().GetBatchSize())
				tokens := m.Tokens
				rc.WorkLostSamplesEstimate, rc.WorkLostTokensEstimate, rc.WorkLostBasisRound = &samples, &tokens, rounds[i].Round
				break
			}
		}
		out = append(out, rc)
	}
	return out
}

// lostLease is the lease that t's worker most likely held when t was
// lost: of t's GPU model (if known), closed after t was placed and no
// later than the detection; the last to close if several fit.
func lostLease(t *meghav1.Task, model string, leases []*meghav1.Lease) *meghav1.Lease {
	if t.FinishedAt == nil {
		return nil
	}
	var best *meghav1.Lease
	for _, l := range leases {
		switch {
		case l.ClosedAt == nil || (model != "" && l.GpuModel != model):
		case t.AssignedAt != nil && compareTS(l.ClosedAt, t.AssignedAt) <= 0:
		case compareTS(l.ClosedAt, t.FinishedAt) > 0:
		case best == nil || compareTS(l.ClosedAt, best.ClosedAt) > 0:
			best = l
		}
	}
	return best
}

func hasMember(rec *meghav1.RoundRecord, taskID string) bool { return memberOf(rec, taskID) != nil }

func memberOf(rec *meghav1.RoundRecord, taskID string) *meghav1.MemberRound {
	for _, m := range rec.Members {
		if m.TaskId == taskID {
			return m
		}
	}
	return nil
}
