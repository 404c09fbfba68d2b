package coordinator

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
)

// FSM applies committed Raft log entries to a State.
//
// Apply is deterministic: it reads no clock, no randomness and does no I/O.
// Times and IDs arrive inside the command, stamped by the endpoint that
// proposed it. A business-rule failure (cancel of an unknown job, say) is
// returned as an error value, the same on every replica; an entry that does
// not decode means the log is corrupt and Apply panics.
type FSM struct {
	state  atomic.Pointer[State]
	logger *slog.Logger
}

// ApplyResult is what Apply returns for a command that succeeded. Its Job
// is shared with the state: read it, never change it. (Stored jobs are
// never changed in place; every update stores a new copy.)
type ApplyResult struct {
	Job     *meghav1.Job // the job the command created or changed, if any
	Existed bool         // SubmitJob matched an earlier request ID
	Worker  *meghav1.Worker
	// Items holds one outcome per job of a SubmitJobs command, in order.
	Items []ItemResult
}

// ItemResult is the outcome of one submit in a SubmitJobs group commit.
type ItemResult struct {
	Result *ApplyResult
	Err    error
}

// NewFSM returns an FSM over an empty state.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{logger: logger.With("component", "fsm")}
	f.state.Store(NewState())
	return f
}

// State returns the live state; reads are safe concurrently with Apply.
// Fetch it anew for each read: Restore replaces it.
func (f *FSM) State() *State {
	return f.state.Load()
}

// EncodeCommand marshals a command for raft.Apply.
func EncodeCommand(c *meghav1.Command) ([]byte, error) {
	return proto.Marshal(c)
}

// DecodeCommand unmarshals a log entry. It never panics on any input.
func DecodeCommand(b []byte) (*meghav1.Command, error) {
	c := &meghav1.Command{}
	if err := proto.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("coordinator: decode command: %w", err)
	}
	return c, nil
}

// Apply implements raft.FSM. It returns an *ApplyResult or an error.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	if err != nil {
		// A committed entry that does not decode is a corrupt log; going on
		// would let replicas diverge.
		panic(fmt.Sprintf("coordinator: raft log entry %d: %v", l.Index, err))
	}
	st := f.State()
	res, err := st.apply(l.Index, c)
	if err != nil {
		f.logger.Debug("command rejected", "index", l.Index, "error", err)
		return err
	}
	return res
}

// apply runs one command against the state under its write lock. The
// state takes ownership of c.
func (s *State) apply(index uint64, c *meghav1.Command) (*ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = index

	var (
		res *ApplyResult
		err error
	)
	switch cmd := c.Cmd.(type) {
	case *meghav1.Command_SubmitJob:
		res, err = s.applySubmitJob(index, cmd.SubmitJob)
	case *meghav1.Command_CancelJob:
		res, err = s.applyCancelJob(index, cmd.CancelJob)
	case *meghav1.Command_UpdateJobStatus:
		res, err = s.applyUpdateJobStatus(index, cmd.UpdateJobStatus)
	case *meghav1.Command_UpsertMember:
		err = s.applyUpsertMember(cmd.UpsertMember)
	case *meghav1.Command_RemoveMember:
		err = s.applyRemoveMember(cmd.RemoveMember)
	case *meghav1.Command_SubmitJobs:
		res = &ApplyResult{Items: make([]ItemResult, len(cmd.SubmitJobs.Jobs))}
		for i, sj := range cmd.SubmitJobs.Jobs {
			r, e := s.applySubmitJob(index, sj)
			res.Items[i] = ItemResult{Result: r, Err: e}
		}
	case *meghav1.Command_RegisterWorker:
		res, err = s.applyRegisterWorker(cmd.RegisterWorker)
	case *meghav1.Command_WorkerLost:
		res, err = s.applyWorkerLost(cmd.WorkerLost)
	case *meghav1.Command_WorkerLeft:
		res, err = s.applyWorkerLeft(cmd.WorkerLeft)
	case *meghav1.Command_AssignTasks:
		res, err = s.applyAssignTasks(index, cmd.AssignTasks)
	case *meghav1.Command_UpdateTask:
		res, err = s.applyUpdateTask(index, cmd.UpdateTask)
	case *meghav1.Command_StartRound:
		res, err = s.applyStartRound(index, cmd.StartRound)
	case *meghav1.Command_CommitRound:
		res, err = s.applyCommitRound(index, cmd.CommitRound)
	case *meghav1.Command_LeaseCreated:
		res, err = s.applyLeaseCreated(index, cmd.LeaseCreated)
	case *meghav1.Command_LeaseClosed:
		res, err = s.applyLeaseClosed(index, cmd.LeaseClosed)
	case *meghav1.Command_LeaseSpend:
		res, err = s.applyLeaseSpend(index, cmd.LeaseSpend)
	case *meghav1.Command_CheckpointCommitted:
		res, err = s.applyCheckpointCommitted(index, cmd.CheckpointCommitted)
	case *meghav1.Command_Noop:
	default:
		// A command from a newer version, or an empty envelope. Every
		// replica rejects it the same way.
		err = ErrUnknownCommand
	}
	if err != nil {
		return nil, err
	}
	s.notifyLocked()
	if res == nil {
		res = &ApplyResult{}
	}
	return res, nil
}

// Snapshot implements raft.FSM: it captures the state as one immutable
// message; Persist does the I/O off the FSM goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.State().snapshot()}, nil
}

// Restore implements raft.FSM: it builds a fresh state from the snapshot and
// swaps it in, waking every watcher of the old one.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("coordinator: read snapshot: %w", err)
	}
	snap := &meghav1.Snapshot{}
	if err := proto.Unmarshal(b, snap); err != nil {
		return fmt.Errorf("coordinator: decode snapshot: %w", err)
	}
	fresh, err := restoreState(snap)
	if err != nil {
		return err
	}
	old := f.state.Swap(fresh)
	old.mu.Lock()
	old.notifyLocked()
	old.mu.Unlock()
	return nil
}

type fsmSnapshot struct{ snap *meghav1.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := proto.Marshal(s.snap)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("coordinator: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// snapshotVersion is the format version of meghav1.Snapshot written today.
const snapshotVersion = 1

func (s *State) snapshot() *meghav1.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &meghav1.Snapshot{Version: snapshotVersion}
	for _, j := range s.jobs {
		snap.Jobs = append(snap.Jobs, proto.Clone(j).(*meghav1.Job))
	}
	for _, m := range s.members {
		snap.Members = append(snap.Members, proto.Clone(m).(*meghav1.Member))
	}
	for _, w := range s.workers {
		snap.Workers = append(snap.Workers, proto.Clone(w).(*meghav1.Worker))
	}
	for _, t := range s.throughput {
		snap.Throughput = append(snap.Throughput, proto.Clone(t).(*meghav1.GPUModelThroughput))
	}
	for _, t := range s.tasks {
		snap.Tasks = append(snap.Tasks, proto.Clone(t).(*meghav1.Task))
	}
	for _, l := range s.leases {
		snap.Leases = append(snap.Leases, proto.Clone(l).(*meghav1.Lease))
	}
	for k, id := range s.requests {
		snap.RequestKeys = append(snap.RequestKeys,
			&meghav1.RequestKey{Tenant: k.tenant, RequestId: k.requestID, JobId: id})
	}
	return snap
}

func restoreState(snap *meghav1.Snapshot) (*State, error) {
	if snap.Version != snapshotVersion {
		return nil, fmt.Errorf("coordinator: snapshot format version %d, this binary reads %d",
			snap.Version, snapshotVersion)
	}
	s := NewState()
	for _, j := range snap.Jobs {
		if j.GetId() == "" {
			return nil, fmt.Errorf("coordinator: snapshot holds a job without an ID")
		}
		s.putJobLocked(j)
		if j.ModifyIndex > s.index {
			s.index = j.ModifyIndex
		}
	}
	for _, m := range snap.Members {
		s.members[m.Id] = m
	}
	for _, w := range snap.Workers {
		s.workers[w.Id] = w
	}
	for _, t := range snap.Throughput {
		s.throughput[t.Model+"\x00"+t.Probe] = t
	}
	for _, t := range snap.Tasks {
		s.putTaskLocked(t)
	}
	for _, l := range snap.Leases {
		s.putLeaseLocked(l)
	}
	for _, k := range snap.RequestKeys {
		s.requests[requestKey{k.Tenant, k.RequestId}] = k.JobId
	}
	return s, nil
}
