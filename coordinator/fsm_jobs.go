package coordinator

import (
	"fmt"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/internal/jobstate"
	"google.golang.org/protobuf/proto"
)

func (s *State) applySubmitJob(index uint64, c *meghav1.SubmitJobCommand) (*ApplyResult, error) {
	j := c.GetJob()
	if j.GetId() == "" || j.GetTenant() == "" || j.GetSpec() == nil {
		return nil, fmt.Errorf("%w: submit needs a job ID, tenant and spec", ErrInvalid)
	}
	if c.RequestId != "" {
		if id, ok := s.requests[requestKey{j.Tenant, c.RequestId}]; ok {
			if prev, ok := s.jobs[id]; ok {
				return &ApplyResult{Job: prev, Existed: true}, nil
			}
		}
	}
	if _, ok := s.jobs[j.Id]; ok {
		return nil, fmt.Errorf("%w: %s", ErrJobExists, j.Id)
	}
	// The command was decoded for this Apply alone, so the state takes its
	// job without a copy.
	if j.Status == nil {
		j.Status = &meghav1.JobStatus{}
	}
	j.Status.State = meghav1.JobState_JOB_STATE_PENDING
	j.Status.UpdatedAt = j.Status.CreatedAt
	j.CreateIndex, j.ModifyIndex = index, index
	s.putJobLocked(j)
	if c.RequestId != "" {
		s.requests[requestKey{j.Tenant, c.RequestId}] = j.Id
	}
	return &ApplyResult{Job: j}, nil
}

func (s *State) applyCancelJob(index uint64, c *meghav1.CancelJobCommand) (*ApplyResult, error) {
	prev, ok := s.jobs[c.GetId()]
	if !ok || (c.Tenant != "" && prev.Tenant != c.Tenant) {
		// A tenant learns nothing about other tenants' jobs, not even that
		// they exist.
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, c.GetId())
	}
	if jobstate.Terminal(prev.Status.GetState()) {
		return nil, fmt.Errorf("%w: %s is %s", ErrJobTerminal, prev.Id, jobstate.Name(prev.Status.GetState()))
	}
	j := proto.Clone(prev).(*meghav1.Job)
	j.Status.State = meghav1.JobState_JOB_STATE_CANCELLED
	j.Status.CancelReason = c.Reason
	s.endTasksLocked(j.Id, meghav1.TaskState_TASK_STATE_CANCELLED, c.At)
	j.Status.UpdatedAt = c.At
	j.Status.FinishedAt = c.At
	j.ModifyIndex = index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

func (s *State) applyUpdateJobStatus(index uint64, c *meghav1.UpdateJobStatusCommand) (*ApplyResult, error) {
	prev, ok := s.jobs[c.GetId()]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, c.GetId())
	}
	from := prev.Status.GetState()
	if jobstate.Terminal(from) {
		return nil, fmt.Errorf("%w: %s is %s", ErrJobTerminal, prev.Id, jobstate.Name(from))
	}
	to := c.State
	if to != meghav1.JobState_JOB_STATE_UNSPECIFIED && to != from && !jobstate.CanTransition(from, to) {
		return nil, fmt.Errorf("%w: %s cannot go from %s to %s", ErrBadTransition, prev.Id, jobstate.Name(from), jobstate.Name(to))
	}
	if c.SpendDeltaMicros < 0 {
		return nil, fmt.Errorf("%w: spend delta %d is negative", ErrInvalid, c.SpendDeltaMicros)
	}
	j := proto.Clone(prev).(*meghav1.Job)
	if to != meghav1.JobState_JOB_STATE_UNSPECIFIED {
		j.Status.State = to
	}
	if to == meghav1.JobState_JOB_STATE_RUNNING && j.Status.StartedAt == nil {
		j.Status.StartedAt = c.At
	}
	if jobstate.Terminal(to) {
		j.Status.FinishedAt = c.At
		s.endTasksLocked(j.Id, meghav1.TaskState_TASK_STATE_CANCELLED, c.At)
	}
	if c.Progress != nil {
		j.Status.Progress = proto.Clone(c.Progress).(*meghav1.Progress)
	}
	j.Status.SpendMicros += c.SpendDeltaMicros
	if c.LastError != "" {
		j.Status.LastError = c.LastError
	}
	j.Status.UpdatedAt = c.At
	j.ModifyIndex = index
	s.putJobLocked(j)
	return &ApplyResult{Job: j}, nil
}

func (s *State) applyUpsertMember(c *meghav1.UpsertMemberCommand) error {
	m := c.GetMember()
	if m.GetId() == "" {
		return fmt.Errorf("%w: member without an ID", ErrInvalid)
	}
	m = proto.Clone(m).(*meghav1.Member)
	m.Leader = false // leadership is not state; it is read from Raft
	s.members[m.Id] = m
	return nil
}

func (s *State) applyRemoveMember(c *meghav1.RemoveMemberCommand) error {
	if _, ok := s.members[c.GetId()]; !ok {
		return fmt.Errorf("%w: %s", ErrMemberNotFound, c.GetId())
	}
	delete(s.members, c.Id)
	return nil
}
