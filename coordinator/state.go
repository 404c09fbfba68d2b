package coordinator

import (
	"slices"
	"sort"
	"sync"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"google.golang.org/protobuf/proto"
)

// State is the coordinator's replicated state: jobs with their indexes,
// idempotency keys and coordinator members. It is written only by the FSM
// (one goroutine, in log order) and read by endpoints concurrently.
//
// Every read returns a deep copy, so callers may keep or change what they
// get without racing the FSM.
type State struct {
	mu sync.RWMutex

	jobs     map[string]*meghav1.Job
	byTenant map[string]map[string]struct{}
	byState  map[meghav1.JobState]map[string]struct{}
	// waiting holds the jobs the scheduler can place now: pending or
	// recovering, with a model megha can run. The leader's scheduling loop
	// reads only these, however long the backlog of other jobs.
	waiting  map[string]struct{}
	requests map[requestKey]string
	members  map[string]*meghav1.Member
	workers  map[string]*meghav1.Worker
	tasks    map[string]*meghav1.Task
	byJob    map[string]map[string]struct{} // job → task IDs
	byWorker map[string]map[string]struct{} // worker → task IDs
	// throughput is keyed by GPU model and probe.
	throughput map[string]*meghav1.GPUModelThroughput
	leases     map[string]*meghav1.Lease
	leasesBy   map[string]map[string]struct{} // job → lease IDs

	// index is the Raft index of the last applied command.
	index uint64
	// changed is closed, and replaced, whenever a command changes state;
	// watchers wait on it.
	changed chan struct{}
}

type requestKey struct{ tenant, requestID string }

// NewState returns an empty state.
func NewState() *State {
	return &State{
		jobs:       make(map[string]*meghav1.Job),
		byTenant:   make(map[string]map[string]struct{}),
		byState:    make(map[meghav1.JobState]map[string]struct{}),
		waiting:    make(map[string]struct{}),
		requests:   make(map[requestKey]string),
		members:    make(map[string]*meghav1.Member),
		workers:    make(map[string]*meghav1.Worker),
		throughput: make(map[string]*meghav1.GPUModelThroughput),
		tasks:      make(map[string]*meghav1.Task),
		byJob:      make(map[string]map[string]struct{}),
		byWorker:   make(map[string]map[string]struct{}),
		leases:     make(map[string]*meghav1.Lease),
		leasesBy:   make(map[string]map[string]struct{}),
		changed:    make(chan struct{}),
	}
}

// Index is the Raft index of the last command applied to the state.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Job returns a copy of the job with the given ID.
func (s *State) Job(id string) (*meghav1.Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(j).(*meghav1.Job), true
}

// JobWatch returns a copy of the job and a channel closed at the next
// change of the state, so that a watcher can wait without polling.
func (s *State) JobWatch(id string) (*meghav1.Job, bool, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, false, s.changed
	}
	return proto.Clone(j).(*meghav1.Job), true, s.changed
}

// JobFilter selects jobs for ListJobs. Zero fields match everything.
type JobFilter struct {
	Tenant string
	States []meghav1.JobState
	// AfterIndex skips jobs created at or before this Raft index; it is the
	// pagination cursor.
	AfterIndex uint64
	Limit      int
}

// ListJobs returns copies of the matching jobs in submission order, and
// whether more matched than Limit.
func (s *State) ListJobs(f JobFilter) ([]*meghav1.Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()

	candidates := s.candidatesLocked(f)
	matched := make([]*meghav1.Job, 0, len(candidates))
	for _, j := range candidates {
		if j.CreateIndex <= f.AfterIndex {
			continue
		}
		if f.Tenant != "" && j.Tenant != f.Tenant {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, j.Status.GetState()) {
			continue
		}
		matched = append(matched, j)
	}
	sort.Slice(matched, func(a, b int) bool { return matched[a].CreateIndex < matched[b].CreateIndex })
	more := false
	if f.Limit > 0 && len(matched) > f.Limit {
		matched, more = matched[:f.Limit], true
	}
	out := make([]*meghav1.Job, len(matched))
	for i, j := range matched {
		out[i] = proto.Clone(j).(*meghav1.Job)
	}
	return out, more
}

// candidatesLocked picks the smallest index that covers the filter.
func (s *State) candidatesLocked(f JobFilter) []*meghav1.Job {
	var ids map[string]struct{}
	switch {
	case f.Tenant != "":
		ids = s.byTenant[f.Tenant]
	case len(f.States) == 1:
		ids = s.byState[f.States[0]]
	default:
		out := make([]*meghav1.Job, 0, len(s.jobs))
		for _, j := range s.jobs {
			out = append(out, j)
		}
		return out
	}
	out := make([]*meghav1.Job, 0, len(ids))
	for id := range ids {
		out = append(out, s.jobs[id])
	}
	return out
}

// CountJobs returns the number of jobs in each state.
func (s *State) CountJobs() map[meghav1.JobState]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[meghav1.JobState]int, len(s.byState))
	for st, ids := range s.byState {
		if len(ids) > 0 {
			out[st] = len(ids)
		}
	}
	return out
}

// Members returns copies of the known coordinator members, sorted by ID.
func (s *State) Members() []*meghav1.Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*meghav1.Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, proto.Clone(m).(*meghav1.Member))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Id < out[b].Id })
	return out
}

// Member returns a copy of one coordinator member.
func (s *State) Member(id string) (*meghav1.Member, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.members[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(m).(*meghav1.Member), true
}

// putJobLocked stores j (owned by the state from now on) and keeps the
// indexes in step with its tenant and state.
func (s *State) putJobLocked(j *meghav1.Job) {
	if old, ok := s.jobs[j.Id]; ok {
		delete(s.byState[old.Status.GetState()], j.Id)
	}
	s.jobs[j.Id] = j
	addIndex(s.byTenant, j.Tenant, j.Id)
	addIndex(s.byState, j.Status.GetState(), j.Id)
	switch st := j.Status.GetState(); {
	case (st == meghav1.JobState_JOB_STATE_PENDING || st == meghav1.JobState_JOB_STATE_LEASING ||
		st == meghav1.JobState_JOB_STATE_RECOVERING) && scheduler.Runnable(j):
		s.waiting[j.Id] = struct{}{}
	case st == meghav1.JobState_JOB_STATE_RUNNING && scheduler.BuiltinTrain(j) &&
		len(s.liveTasksLocked(j.Id)) < int(max(j.Spec.GetResources().GetWorkers(), 1)):
		// Built-in training goes on with its survivors; a worker placed
		// on a lost rank restores the latest checkpoint and joins.
		s.waiting[j.Id] = struct{}{}
	default:
		delete(s.waiting, j.Id)
	}
}

func addIndex[K comparable](idx map[K]map[string]struct{}, k K, id string) {
	set, ok := idx[k]
	if !ok {
		set = make(map[string]struct{})
		idx[k] = set
	}
	set[id] = struct{}{}
}

// Watch returns a channel closed at the next change of the state.
func (s *State) Watch() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// notifyLocked wakes every watcher.
func (s *State) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
