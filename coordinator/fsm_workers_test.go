package coordinator

import (
	"bytes"
	"io"
	"testing"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

func registerCmd(id string, rate float64) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_RegisterWorker{RegisterWorker: &meghav1.RegisterWorkerCommand{
		Worker: &meghav1.Worker{Id: id, RegisteredAt: t0, Throughput: &meghav1.Throughput{SamplesPerSecond: rate, Probe: "p"},
			Gpus: []*meghav1.GPU{{Uuid: id + "-g0", Model: "A100-80GB", MemoryBytes: 80 << 30}, {Uuid: id + "-g1", Model: "A100-80GB", MemoryBytes: 80 << 30}}}}}}
}

func lostCmd(id string, epoch uint64) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_WorkerLost{WorkerLost: &meghav1.WorkerLostCommand{Id: id, Epoch: epoch, Reason: "silent", At: t0}}}
}

func commandJobCmd(id string, workers uint32) *meghav1.Command {
	j := testJob(id, "acme")
	j.Spec.Model = &meghav1.ModelSpec{Command: []string{"true"}}
	j.Spec.Resources = &meghav1.Resources{Workers: workers}
	return &meghav1.Command{Cmd: &meghav1.Command_SubmitJob{SubmitJob: &meghav1.SubmitJobCommand{Job: j}}}
}

func assignCmd(job string, tasks ...*meghav1.Task) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_AssignTasks{AssignTasks: &meghav1.AssignTasksCommand{JobId: job, Tasks: tasks, At: t0}}}
}

func task(id, job, worker string, epoch uint64, rank, world uint32) *meghav1.Task {
	return &meghav1.Task{Id: id, JobId: job, WorkerId: worker, WorkerEpoch: epoch, Rank: rank, World: world}
}

func updateCmd(taskID, worker string, epoch uint64, st meghav1.TaskState, code int32) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_UpdateTask{UpdateTask: &meghav1.UpdateTaskCommand{
		TaskId: taskID, WorkerId: worker, WorkerEpoch: epoch, State: st, ExitCode: code, At: t0}}}
}

func TestApplyWorkerLifecycle(t *testing.T) {
	h := newFSMHarness(t)
	if r := h.ok(registerCmd("w1", 100)); r.Worker.Epoch != 1 || r.Worker.State != meghav1.WorkerState_WORKER_STATE_READY {
		t.Fatalf("register: %v", r.Worker)
	}
	h.ok(registerCmd("w2", 300))
	tp := h.fsm.State().Throughput()
	if len(tp) != 1 || tp[0].Samples != 2 || tp[0].Mean != 100 || tp[0].Min != 50 || tp[0].Max != 150 {
		t.Fatalf("throughput per GPU: %v", tp)
	}
	h.fails(lostCmd("w1", 7), ErrStaleEpoch)
	h.fails(lostCmd("nobody", 1), ErrWorkerNotFound)
	h.ok(lostCmd("w1", 1))
	h.fails(lostCmd("w1", 1), ErrStaleEpoch) // already lost
	if r := h.ok(registerCmd("w1", 100)); r.Worker.Epoch != 2 || r.Worker.LostAt != nil {
		t.Fatalf("re-register: %v", r.Worker)
	}
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_WorkerLeft{WorkerLeft: &meghav1.WorkerLeftCommand{Id: "w2", Epoch: 1, At: t0}}})
	if w, _ := h.fsm.State().Worker("w2"); w.State != meghav1.WorkerState_WORKER_STATE_LEFT {
		t.Fatalf("left: %v", w)
	}
}

func TestApplyTasksLifecycle(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(registerCmd("w1", 1))
	h.ok(registerCmd("w2", 1))
	h.ok(commandJobCmd("j", 2))
	h.fails(assignCmd("j", task("j-r0-1", "j", "w1", 9, 0, 2)), ErrStaleEpoch)
	h.fails(assignCmd("j", task("j-r0-1", "j", "w1", 1, 0, 2), task("j-r1-1", "j", "w1", 1, 1, 2)), ErrBadTransition)
	r := h.ok(assignCmd("j", task("j-r0-1", "j", "w1", 1, 0, 2), task("j-r1-1", "j", "w2", 1, 1, 2)))
	if r.Job.Status.State != meghav1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job %v", r.Job.Status.State)
	}
	h.fails(updateCmd("j-r0-1", "w2", 1, meghav1.TaskState_TASK_STATE_RUNNING, 0), ErrStaleEpoch) // not its task
	h.ok(updateCmd("j-r0-1", "w1", 1, meghav1.TaskState_TASK_STATE_RUNNING, 0))
	h.ok(updateCmd("j-r0-1", "w1", 1, meghav1.TaskState_TASK_STATE_SUCCEEDED, 0))
	if j, _ := h.fsm.State().Job("j"); j.Status.State != meghav1.JobState_JOB_STATE_RUNNING {
		t.Fatal("job finished with a rank still running")
	}
	// Worker 2 is lost: its rank is lost and the job recovers.
	h.ok(lostCmd("w2", 1))
	if j, _ := h.fsm.State().Job("j"); j.Status.State != meghav1.JobState_JOB_STATE_RECOVERING {
		t.Fatalf("job %v after a lost rank", j.Status.State)
	}
	h.fails(updateCmd("j-r1-1", "w2", 1, meghav1.TaskState_TASK_STATE_SUCCEEDED, 0), ErrTaskFinished)
	h.ok(assignCmd("j", task("j-r1-2", "j", "w1", 1, 1, 2)))
	r = h.ok(updateCmd("j-r1-2", "w1", 1, meghav1.TaskState_TASK_STATE_SUCCEEDED, 0))
	if r.Job.Status.State != meghav1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v when every rank succeeded", r.Job.Status.State)
	}

	// A failing rank fails the job and cancels the others.
	h.ok(registerCmd("w3", 1))
	h.ok(commandJobCmd("k", 2))
	h.ok(assignCmd("k", task("k-r0-1", "k", "w1", 1, 0, 2), task("k-r1-1", "k", "w3", 1, 1, 2)))
	r = h.ok(updateCmd("k-r1-1", "w3", 1, meghav1.TaskState_TASK_STATE_FAILED, 3))
	if r.Job.Status.State != meghav1.JobState_JOB_STATE_FAILED || r.Job.Status.LastError == "" {
		t.Fatalf("job %v", r.Job.Status)
	}
	if ts := h.fsm.State().Tasks("k"); ts[0].State != meghav1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("other rank %v", ts[0].State)
	}

	// Snapshots carry workers, tasks and throughput.
	snap, _ := h.fsm.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	restored := NewFSM(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if len(restored.State().Workers()) != 3 || len(restored.State().Tasks("j")) != 3 ||
		len(restored.State().Throughput()) != 1 || workerTaskCount(restored.State(), "w1") != 3 {
		t.Fatal("restore lost workers, tasks or throughput")
	}
}

func workerTaskCount(st *State, id string) int {
	tasks, _ := st.WorkerTasks(id)
	return len(tasks)
}
