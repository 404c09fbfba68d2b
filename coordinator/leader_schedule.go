package coordinator

import (
	"context"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// schedule is a leader duty: whenever the state changes (and at least
// every second), it asks the scheduler for a plan and applies it. The FSM
// re-checks every placement against the newest state, so a plan made from
// a snapshot that has since moved on is refused, not misapplied.
func (n *Node) schedule(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		st := n.fsm.State()
		in, changed := scheduleInput(st)
		for _, p := range scheduler.Schedule(in) {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.Apply(actx, &meghav1.Command{Cmd: &meghav1.Command_AssignTasks{AssignTasks: &meghav1.AssignTasksCommand{
				JobId: p.JobID, Tasks: p.Tasks, At: timestamppb.Now()}}})
			cancel()
			if err != nil {
				n.logger.Debug("placement refused", "job_id", p.JobID, "error", err)
				continue
			}
			n.logger.Info("placed job", "job_id", p.JobID, "tasks", len(p.Tasks))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
		// Coalesce bursts of changes into one pass.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func scheduleInput(st *State) (scheduler.Input, <-chan struct{}) {
	st.mu.RLock()
	changed := st.changed
	st.mu.RUnlock()
	var in scheduler.Input
	st.mu.RLock()
	for id := range st.waiting {
		in.Jobs = append(in.Jobs, proto.Clone(st.jobs[id]).(*meghav1.Job))
	}
	st.mu.RUnlock()
	if len(in.Jobs) == 0 {
		return in, changed
	}
	in.Workers = st.Workers(meghav1.WorkerState_WORKER_STATE_READY)
	in.Tasks = st.AllTasks()
	in.LeaseJobs = map[string]string{}
	for _, l := range st.Leases("") {
		if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
			in.LeaseJobs[l.Id] = l.JobId
		}
	}
	return in, changed
}
