package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator"
)

func commandJob(name string, workers uint32, script string) *meghav1.JobSpec {
	return &meghav1.JobSpec{Name: name, Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:     &meghav1.ModelSpec{Command: []string{"/bin/sh", "-c", script}},
		Resources: &meghav1.Resources{Workers: workers, GpuModels: []string{"H100-SXM"}},
		Stop:      &meghav1.StopCondition{Rounds: 1}}
}

// startAgent runs an in-process agent with the process runtime and a log
// server, and returns it with a function that stops it like SIGTERM.
func startAgent(t *testing.T, s *coordinator.Server, uuid string) (*Agent, func()) {
	t.Helper()
	gpus := []*meghav1.GPU{{Uuid: uuid, Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}
	a, err := New(Config{Client: newClient(t, workerTok, s.Addr()), Coordinators: []string{s.Addr()},
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", GPUs: gpus, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	waitFor(t, "agent registered", 10*time.Second, func() bool { return a.Epoch() > 0 })
	return a, stop
}

func jobState(s *coordinator.Server, id string) meghav1.JobState {
	j, _ := s.Node().FSM().State().Job(id)
	return j.GetStatus().GetState()
}

func TestCommandJobRunsOnWorkersWithLogs(t *testing.T) {
	s := startCoordinator(t)
	startAgent(t, s, "EMU-0")
	startAgent(t, s, "EMU-1")
	c := newClient(t, tenantTok, s.Addr())
	ctx := context.Background()

	ok, err := c.Submit(ctx, commandJob("hello", 2, `echo "rank=$MEGHA_RANK world=$MEGHA_WORLD_SIZE job=$MEGHA_JOB_ID"; echo oops >&2`), "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job succeeded", 20*time.Second, func() bool {
		return jobState(s, ok.Job.Id) == meghav1.JobState_JOB_STATE_SUCCEEDED
	})
	tasks, err := c.ListTasks(ctx, ok.Job.Id)
	if err != nil || len(tasks) != 2 || tasks[0].WorkerId == tasks[1].WorkerId {
		t.Fatalf("tasks %v %v", tasks, err)
	}
	var out strings.Builder
	if err := c.Logs(ctx, &meghav1.TaskLogsRequest{JobId: ok.Job.Id, Rank: 1}, func(ch *meghav1.LogChunk) error {
		out.Write(ch.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "rank=1 world=2 job=" + ok.Job.Id; !strings.Contains(out.String(), want) {
		t.Fatalf("rank 1 stdout %q lacks %q", out.String(), want)
	}
	out.Reset()
	_ = c.Logs(ctx, &meghav1.TaskLogsRequest{JobId: ok.Job.Id, Stream: "stderr"}, func(ch *meghav1.LogChunk) error {
		out.Write(ch.Data)
		return nil
	})
	if out.String() != "oops\n" {
		t.Fatalf("stderr %q", out.String())
	}

	bad, err := c.Submit(ctx, commandJob("fails", 1, "exit 3"), "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job failed", 20*time.Second, func() bool {
		return jobState(s, bad.Job.Id) == meghav1.JobState_JOB_STATE_FAILED
	})
	j, _ := c.Get(ctx, bad.Job.Id, false)
	if !strings.Contains(j.Status.LastError, "exit code 3") {
		t.Fatalf("last error %q", j.Status.LastError)
	}
}

func TestCancelStopsRunningTask(t *testing.T) {
	s := startCoordinator(t)
	a, _ := startAgent(t, s, "EMU-0")
	c := newClient(t, tenantTok, s.Addr())
	ctx := context.Background()
	r, err := c.Submit(ctx, commandJob("hangs", 1, "sleep 1000"), "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task running", 20*time.Second, func() bool { return len(a.Running()) == 1 })
	if _, err := c.Cancel(ctx, r.Job.Id, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task stopped", 20*time.Second, func() bool { return len(a.Running()) == 0 })
	tasks, _ := c.ListTasks(ctx, r.Job.Id)
	if len(tasks) != 1 || tasks[0].State != meghav1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("tasks %v", tasks)
	}
}

func TestLostWorkersRankMovesToAnother(t *testing.T) {
	s := startCoordinator(t)
	first, stopFirst := startAgent(t, s, "EMU-0")
	c := newClient(t, tenantTok, s.Addr())
	ctx := context.Background()
	r, err := c.Submit(ctx, commandJob("moves", 1, "sleep 1000"), "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task running on the first worker", 20*time.Second, func() bool { return len(first.Running()) == 1 })
	second, _ := startAgent(t, s, "EMU-1")
	stopFirst() // leaves: its rank is lost and placed again
	waitFor(t, "rank moved to the second worker", 20*time.Second, func() bool { return len(second.Running()) == 1 })
	tasks, _ := c.ListTasks(ctx, r.Job.Id)
	if len(tasks) != 2 || tasks[0].State != meghav1.TaskState_TASK_STATE_LOST ||
		tasks[1].WorkerId != second.ID() || jobState(s, r.Job.Id) != meghav1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("tasks %v, job %v", tasks, jobState(s, r.Job.Id))
	}
}

func TestTaskReportsProgressThroughItsSocket(t *testing.T) {
	s := startCoordinator(t)
	startAgent(t, s, "EMU-0")
	c := newClient(t, tenantTok, s.Addr())
	script := `python3 -c 'import os,socket
s=socket.socket(socket.AF_UNIX); s.connect(os.environ["MEGHA_WORKER_SOCKET"])
f=s.makefile("rw")
f.write("{\"round\": 3, \"loss\": 2.5}\n"); f.flush(); assert f.readline().strip()=="ok"
f.write("not json\n"); f.flush(); assert f.readline().startswith("error:")'`
	r, err := c.Submit(context.Background(), commandJob("progress", 1, script), "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job succeeded with progress", 20*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(r.Job.Id)
		return j.Status.State == meghav1.JobState_JOB_STATE_SUCCEEDED && j.Status.Progress.GetRound() == 3 &&
			j.Status.Progress.GetLoss() == 2.5
	})
}
