package coordinator

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// TestRestartFromDataDir closes a node after a snapshot and more writes,
// reopens the same data dir, and finds every job: the snapshot restores
// and the log tail replays.
func TestRestartFromDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	open := func() *Server {
		s, err := NewServer(ServerConfig{
			Node:     NodeConfig{ID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", Bootstrap: true, Raft: fastRaft()},
			GRPCAddr: "127.0.0.1:0", Tokens: testTokens(t), Logger: quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "leadership", 10*time.Second, s.Node().IsLeader)
		return s
	}
	s := open()
	c := newClient(t, tokAcme, s.Addr())
	var ids []string
	for i := 0; i < 20; i++ {
		r, err := c.Submit(ctxT(t), validSpec(fmt.Sprintf("j%d", i)), fmt.Sprintf("req-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Job.Id)
		if i == 9 {
			if err := s.Node().Raft().Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Cancel(ctxT(t), ids[3], "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	st := s.Node().FSM().State()
	for _, id := range ids {
		if _, ok := st.Job(id); !ok {
			t.Fatalf("job %s lost across restart", id)
		}
	}
	if j, _ := st.Job(ids[3]); j.Status.State != meghav1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("cancel lost across restart: %v", j.Status.State)
	}
	// Idempotency keys survive: a retried submit finds its job.
	c = newClient(t, tokAcme, s.Addr())
	r, err := c.Submit(ctxT(t), validSpec("j5"), "req-5")
	if err != nil || !r.Existed || r.Job.Id != ids[5] {
		t.Fatalf("retried submit after restart: %v %v", r, err)
	}
}
