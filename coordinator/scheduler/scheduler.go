// Package scheduler places jobs' ranks on workers. It is pure: it reads a
// snapshot of jobs, workers and tasks and returns a plan; the leader
// applies the plan through Raft, where the FSM checks it again against the
// newest state. No Raft, gRPC or network here.
package scheduler

import (
	"fmt"
	"slices"
	"sort"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Input is what the scheduler sees.
type Input struct {
	// Jobs waiting for placement: Pending, or Recovering with lost ranks.
	Jobs []*meghav1.Job
	// Workers that are ready.
	Workers []*meghav1.Worker
	// Tasks that are still live (assigned or running), and finished ones
	// (to number attempts).
	Tasks []*meghav1.Task
	// LeaseJobs maps each active market lease to the job it was leased
	// for: a worker started on a lease runs only that job's tasks.
	LeaseJobs map[string]string
}

// Placement assigns some ranks of one job.
type Placement struct {
	JobID string
	Tasks []*meghav1.Task
}

// Runnable reports whether megha can run the job's model on workers:
// a user command, or a built-in model trained by the built-in trainer.
func Runnable(j *meghav1.Job) bool {
	return len(j.GetSpec().GetModel().GetCommand()) > 0 || BuiltinTrain(j)
}

// BuiltinTrain reports whether the job trains a built-in model with the
// built-in trainer (and so syncs in rounds fixed by the coordinator).
func BuiltinTrain(j *meghav1.Job) bool {
	sp := j.GetSpec()
	return sp.GetKind() == meghav1.JobKind_JOB_KIND_TRAIN && sp.GetModel().GetBuiltin() != ""
}

// Schedule places, in submission order, every job whose missing ranks all
// fit on free workers at once (gang placement: a job never runs with part
// of its ranks). A worker runs one task at a time. Among fitting workers
// the fastest measured go first; ties by ID, so the plan is deterministic.
func Schedule(in Input) []Placement {
	busy := map[string]bool{}
	liveRanks := map[string]map[uint32]bool{}
	attempts := map[string]int{}
	for _, t := range in.Tasks {
		attempts[fmt.Sprintf("%s/%d", t.JobId, t.Rank)]++
		if Live(t.State) {
			busy[t.WorkerId] = true
			if liveRanks[t.JobId] == nil {
				liveRanks[t.JobId] = map[uint32]bool{}
			}
			liveRanks[t.JobId][t.Rank] = true
		}
	}
	free := make([]*meghav1.Worker, 0, len(in.Workers))
	for _, w := range in.Workers {
		if w.State == meghav1.WorkerState_WORKER_STATE_READY && !busy[w.Id] {
			free = append(free, w)
		}
	}
	sort.Slice(free, func(a, b int) bool {
		ra, rb := free[a].GetThroughput().GetSamplesPerSecond(), free[b].GetThroughput().GetSamplesPerSecond()
		if ra != rb {
			return ra > rb
		}
		return free[a].Id < free[b].Id
	})
	jobs := append([]*meghav1.Job(nil), in.Jobs...)
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].CreateIndex < jobs[b].CreateIndex })

	var plan []Placement
	for _, j := range jobs {
		if !Runnable(j) {
			continue
		}
		world := j.Spec.GetResources().GetWorkers()
		if world == 0 {
			world = 1
		}
		var missing []uint32
		for r := uint32(0); r < world; r++ {
			if !liveRanks[j.Id][r] {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 {
			continue
		}
		var chosen []*meghav1.Worker
		var rest []*meghav1.Worker
		for _, w := range free {
			if len(chosen) < len(missing) && Fits(j.Spec.GetResources(), w) && leasedFor(in.LeaseJobs, w, j.Id) {
				chosen = append(chosen, w)
			} else {
				rest = append(rest, w)
			}
		}
		if len(chosen) < len(missing) {
			continue // not enough fitting workers for the whole gang
		}
		free = rest
		p := Placement{JobID: j.Id}
		for i, r := range missing {
			key := fmt.Sprintf("%s/%d", j.Id, r)
			attempts[key]++
			p.Tasks = append(p.Tasks, &meghav1.Task{
				Id: fmt.Sprintf("%s-r%d-%d", j.Id, r, attempts[key]), JobId: j.Id,
				WorkerId: chosen[i].Id, WorkerEpoch: chosen[i].Epoch, Rank: r, World: world,
				State: meghav1.TaskState_TASK_STATE_ASSIGNED,
			})
		}
		plan = append(plan, p)
	}
	return plan
}

// leasedFor reports whether a worker may run a job: a worker without a
// lease runs anything; a leased one only the job of an active lease.
func leasedFor(leaseJobs map[string]string, w *meghav1.Worker, jobID string) bool {
	if w.GetLeaseId() == "" {
		return true
	}
	return leaseJobs[w.LeaseId] == jobID
}

// Fits reports whether a worker meets a job's resource constraints:
// enough GPUs of an acceptable model with enough memory each.
func Fits(res *meghav1.Resources, w *meghav1.Worker) bool {
	need := int(res.GetGpusPerWorker())
	if need == 0 {
		need = 1
	}
	ok := 0
	for _, g := range w.Gpus {
		if res.GetMinVramGib() > 0 && g.MemoryBytes < uint64(res.GetMinVramGib())<<30 {
			continue
		}
		if len(res.GetGpuModels()) > 0 && !slices.Contains(res.GetGpuModels(), g.Model) {
			continue
		}
		ok++
	}
	return ok >= need
}

// Live reports whether a task in state st holds its worker.
func Live(st meghav1.TaskState) bool {
	return st == meghav1.TaskState_TASK_STATE_ASSIGNED || st == meghav1.TaskState_TASK_STATE_RUNNING
}
