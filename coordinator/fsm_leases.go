package coordinator

import (
	"fmt"
	"sort"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Market leases held for jobs. The leader's lease manager (leader_leases.go)
// talks to the market; the FSM only records what it accepted, what the
// leases have drawn, and when they ended, and keeps each job's spend.

func (s *State) putLeaseLocked(l *meghav1.Lease) {
	s.leases[l.Id] = l
	addIndex(s.leasesBy, l.JobId, l.Id)
}

// Lease returns a copy of a lease.
func (s *State) Lease(id string) (*meghav1.Lease, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(l).(*meghav1.Lease), true
}

// Leases returns copies of a job's leases (every lease when jobID is
// empty), oldest first.
func (s *State) Leases(jobID string) []*meghav1.Lease {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*meghav1.Lease
	if jobID == "" {
		for _, l := range s.leases {
			out = append(out, proto.Clone(l).(*meghav1.Lease))
		}
	} else {
		for id := range s.leasesBy[jobID] {
			out = append(out, proto.Clone(s.leases[id]).(*meghav1.Lease))
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].CreatedAt.AsTime().Equal(out[b].CreatedAt.AsTime()) {
			return out[a].CreatedAt.AsTime().Before(out[b].CreatedAt.AsTime())
		}
		return out[a].Id < out[b].Id
	})
	return out
}

// committedMicrosLocked is what a job has spent or put at risk: drawn on
// closed leases plus the whole deposit of active ones (a lease cannot draw
// beyond its escrow).
func (s *State) committedMicrosLocked(jobID string) int64 {
	var sum int64
	for id := range s.leasesBy[jobID] {
		l := s.leases[id]
		if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
			sum += max(l.DepositMicros, l.SpentMicros)
		} else {
			sum += l.SpentMicros
		}
	}
	return sum
}

// spentMicrosLocked is what a job's leases have drawn so far.
func (s *State) spentMicrosLocked(jobID string) int64 {
	var sum int64
	for id := range s.leasesBy[jobID] {
		sum += s.leases[id].SpentMicros
	}
	return sum
}

// applyLeaseCreated records an accepted lease. It refuses a lease that is
// already known (a lease is never recorded twice) and one whose deposit
// could take the job's spend over its budget.
func (s *State) applyLeaseCreated(index uint64, c *meghav1.LeaseCreatedCommand) (*ApplyResult, error) {
	l := c.GetLease()
	if l.GetId() == "" || l.JobId == "" {
		return nil, fmt.Errorf("%w: a lease needs an ID and a job", ErrInvalid)
	}
	if _, ok := s.leases[l.Id]; ok {
		return nil, fmt.Errorf("%w: lease %s is already recorded", ErrBadTransition, l.Id)
	}
	prev, ok := s.jobs[l.JobId]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, l.JobId)
	}
	if jobstate.Terminal(prev.Status.GetState()) {
		return nil, fmt.Errorf("%w: %s is %s", ErrJobTerminal, prev.Id, jobstate.Name(prev.Status.GetState()))
	}
	if b := prev.Spec.GetBudget().GetMaxSpendMicros(); b > 0 && s.committedMicrosLocked(prev.Id)+l.DepositMicros > b {
		return nil, fmt.Errorf("%w: lease %s would commit %d µUSD more than job %s's budget allows (%d committed of %d)",
			ErrBudget, l.Id, s.committedMicrosLocked(prev.Id)+l.DepositMicros-b, prev.Id, s.committedMicrosLocked(prev.Id), b)
	}
	l = proto.Clone(l).(*meghav1.Lease)
	l.State, l.CreatedAt = meghav1.LeaseState_LEASE_STATE_ACTIVE, c.At
	s.putLeaseLocked(l)
	j := proto.Clone(prev).(*meghav1.Job)
	j.Status.UpdatedAt, j.ModifyIndex = c.At, index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

// applyLeaseClosed ends a lease with its final spend.
func (s *State) applyLeaseClosed(index uint64, c *meghav1.LeaseClosedCommand) (*ApplyResult, error) {
	l, ok := s.leases[c.GetLeaseId()]
	if !ok {
		return nil, fmt.Errorf("%w: lease %s", ErrUnknownLease, c.GetLeaseId())
	}
	if l.State == meghav1.LeaseState_LEASE_STATE_CLOSED {
		return &ApplyResult{}, nil // the market and the coordinator may both report it
	}
	l = proto.Clone(l).(*meghav1.Lease)
	l.State, l.ClosedAt, l.CloseReason = meghav1.LeaseState_LEASE_STATE_CLOSED, c.At, c.Reason
	l.SpentMicros = drawable(l, max(l.SpentMicros, c.SpentMicros))
	s.leases[l.Id] = l
	return s.updateSpendLocked(index, l.JobId, c.At), nil
}

// applyLeaseSpend records what active leases have drawn.
func (s *State) applyLeaseSpend(index uint64, c *meghav1.LeaseSpendCommand) (*ApplyResult, error) {
	jobs := map[string]bool{}
	for id, spent := range c.GetSpentMicros() {
		l, ok := s.leases[id]
		if !ok || l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE || spent <= l.SpentMicros {
			continue // unknown; closed (its final spend is settled); or not news (spend only grows)
		}
		l = proto.Clone(l).(*meghav1.Lease)
		l.SpentMicros = drawable(l, spent)
		s.leases[id] = l
		jobs[l.JobId] = true
	}
	for id := range jobs {
		s.updateSpendLocked(index, id, c.At)
	}
	return &ApplyResult{}, nil
}

// drawable bounds what a lease can have drawn: its escrow deposit (the
// coordinator never tops escrow up), so a report beyond it cannot move a
// job's spend past what it put at risk.
func drawable(l *meghav1.Lease, spent int64) int64 {
	return min(spent, l.DepositMicros)
}

// updateSpendLocked recomputes a job's spend from its leases.
func (s *State) updateSpendLocked(index uint64, jobID string, at *timestamppb.Timestamp) *ApplyResult {
	prev, ok := s.jobs[jobID]
	if !ok {
		return &ApplyResult{}
	}
	j := proto.Clone(prev).(*meghav1.Job)
	j.Status.SpendMicros = s.spentMicrosLocked(jobID)
	j.Status.UpdatedAt, j.ModifyIndex = at, index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}
}
