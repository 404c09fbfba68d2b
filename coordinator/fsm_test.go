package coordinator

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fsmHarness applies commands at increasing indexes, as Raft would.
type fsmHarness struct {
	t     *testing.T
	fsm   *FSM
	index uint64
}

func newFSMHarness(t *testing.T) *fsmHarness {
	return &fsmHarness{t: t, fsm: NewFSM(nil)}
}

func (h *fsmHarness) apply(c *meghav1.Command) any {
	h.t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	return h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: b})
}

func (h *fsmHarness) ok(c *meghav1.Command) *ApplyResult {
	h.t.Helper()
	switch r := h.apply(c).(type) {
	case *ApplyResult:
		return r
	case error:
		h.t.Fatalf("apply %v: %v", c, r)
	}
	h.t.Fatalf("apply %v: unexpected result", c)
	return nil
}

func (h *fsmHarness) fails(c *meghav1.Command, want error) {
	h.t.Helper()
	err, ok := h.apply(c).(error)
	if !ok || !errors.Is(err, want) {
		h.t.Fatalf("apply %v: got %v, want %v", c, err, want)
	}
}

var t0 = timestamppb.New(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))

func testJob(id, tenant string) *meghav1.Job {
	return &meghav1.Job{Id: id, Tenant: tenant,
		Spec:   &meghav1.JobSpec{Name: "tiny", Kind: meghav1.JobKind_JOB_KIND_TRAIN},
		Status: &meghav1.JobStatus{CreatedAt: t0}}
}

func submitCmd(id, tenant, reqID string) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_SubmitJob{SubmitJob: &meghav1.SubmitJobCommand{
		Job: testJob(id, tenant), RequestId: reqID}}}
}

func cancelCmd(id, tenant string) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_CancelJob{CancelJob: &meghav1.CancelJobCommand{
		Id: id, Tenant: tenant, Reason: "test", At: t0}}}
}

func statusCmd(id string, st meghav1.JobState, spend int64) *meghav1.Command {
	return &meghav1.Command{Cmd: &meghav1.Command_UpdateJobStatus{UpdateJobStatus: &meghav1.UpdateJobStatusCommand{
		Id: id, State: st, SpendDeltaMicros: spend, At: t0, Progress: &meghav1.Progress{Round: 3}}}}
}

func TestApplySubmitJob(t *testing.T) {
	h := newFSMHarness(t)
	r := h.ok(submitCmd("a-1", "acme", "req-1"))
	if r.Existed || r.Job.Status.State != meghav1.JobState_JOB_STATE_PENDING || r.Job.CreateIndex != 1 {
		t.Fatalf("got %v", r)
	}
	// Same request ID, different job ID (a client retry after a lost reply): the first job.
	r = h.ok(submitCmd("a-2", "acme", "req-1"))
	if !r.Existed || r.Job.Id != "a-1" {
		t.Fatalf("retry: got %v", r)
	}
	// Request IDs are scoped to the tenant.
	if r = h.ok(submitCmd("b-1", "other", "req-1")); r.Existed {
		t.Fatalf("other tenant's request matched: %v", r)
	}
	h.fails(submitCmd("a-1", "acme", ""), ErrJobExists)
	h.fails(&meghav1.Command{Cmd: &meghav1.Command_SubmitJob{SubmitJob: &meghav1.SubmitJobCommand{}}}, ErrInvalid)
	if n := len(mustList(h, JobFilter{})); n != 2 {
		t.Fatalf("%d jobs, want 2", n)
	}
}

func TestApplyCancelJob(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(submitCmd("a-1", "acme", ""))
	h.fails(cancelCmd("a-1", "other"), ErrJobNotFound) // another tenant
	h.fails(cancelCmd("nope", ""), ErrJobNotFound)
	r := h.ok(cancelCmd("a-1", "acme"))
	if r.Job.Status.State != meghav1.JobState_JOB_STATE_CANCELLED || r.Job.Status.FinishedAt == nil ||
		r.Job.Status.CancelReason != "test" || r.Job.ModifyIndex != 4 {
		t.Fatalf("got %v", r.Job)
	}
	h.fails(cancelCmd("a-1", ""), ErrJobTerminal)
	st := h.fsm.State()
	if got := st.CountJobs(); got[meghav1.JobState_JOB_STATE_CANCELLED] != 1 || got[meghav1.JobState_JOB_STATE_PENDING] != 0 {
		t.Fatalf("state index not updated: %v", got)
	}
}

func TestApplyUpdateJobStatus(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(submitCmd("a-1", "acme", ""))
	h.fails(statusCmd("a-1", meghav1.JobState_JOB_STATE_SUCCEEDED, 0), ErrBadTransition) // pending cannot succeed
	h.fails(statusCmd("zz", meghav1.JobState_JOB_STATE_LEASING, 0), ErrJobNotFound)
	h.fails(statusCmd("a-1", meghav1.JobState_JOB_STATE_UNSPECIFIED, -5), ErrInvalid)
	for _, st := range []meghav1.JobState{
		meghav1.JobState_JOB_STATE_LEASING, meghav1.JobState_JOB_STATE_RUNNING,
		meghav1.JobState_JOB_STATE_RECOVERING, meghav1.JobState_JOB_STATE_RUNNING,
		meghav1.JobState_JOB_STATE_UNSPECIFIED, meghav1.JobState_JOB_STATE_SUCCEEDED,
	} {
		h.ok(statusCmd("a-1", st, 100))
	}
	j, _ := h.fsm.State().Job("a-1")
	if j.Status.State != meghav1.JobState_JOB_STATE_SUCCEEDED || j.Status.SpendMicros != 600 ||
		j.Status.StartedAt == nil || j.Status.FinishedAt == nil || j.Status.Progress.GetRound() != 3 {
		t.Fatalf("got %v", j)
	}
	h.fails(statusCmd("a-1", meghav1.JobState_JOB_STATE_RUNNING, 0), ErrJobTerminal)
}

func TestApplyMembers(t *testing.T) {
	h := newFSMHarness(t)
	up := func(id, addr string) *meghav1.Command {
		return &meghav1.Command{Cmd: &meghav1.Command_UpsertMember{UpsertMember: &meghav1.UpsertMemberCommand{
			Member: &meghav1.Member{Id: id, GrpcAddr: addr, Leader: true}}}}
	}
	h.ok(up("n1", "a:1"))
	h.ok(up("n1", "a:2"))
	h.ok(up("n2", "b:1"))
	h.fails(up("", "x"), ErrInvalid)
	ms := h.fsm.State().Members()
	if len(ms) != 2 || ms[0].GrpcAddr != "a:2" || ms[0].Leader {
		t.Fatalf("got %v", ms)
	}
	rm := func(id string) *meghav1.Command {
		return &meghav1.Command{Cmd: &meghav1.Command_RemoveMember{RemoveMember: &meghav1.RemoveMemberCommand{Id: id}}}
	}
	h.ok(rm("n2"))
	h.fails(rm("n2"), ErrMemberNotFound)
	if len(h.fsm.State().Members()) != 1 {
		t.Fatal("member not removed")
	}
}

func TestApplyNoopAndUnknown(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_Noop{Noop: &meghav1.NoopCommand{Payload: make([]byte, 256)}}})
	h.fails(&meghav1.Command{}, ErrUnknownCommand)
	if h.fsm.State().Index() != 2 {
		t.Fatalf("index %d", h.fsm.State().Index())
	}
}

func TestApplyCorruptEntryPanics(t *testing.T) {
	h := newFSMHarness(t)
	defer func() {
		if recover() == nil {
			t.Fatal("a corrupt log entry must panic")
		}
	}()
	h.fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}})
}

func TestListJobsFiltersAndPages(t *testing.T) {
	h := newFSMHarness(t)
	for i, tenant := range []string{"a", "b", "a", "a", "b"} {
		h.ok(submitCmd(string(rune('p'+i)), tenant, ""))
	}
	h.ok(cancelCmd("r", ""))
	st := h.fsm.State()
	if got := ids(mustList(h, JobFilter{Tenant: "a"})); got != "p r s" {
		t.Fatalf("tenant a: %q", got)
	}
	if got := ids(mustList(h, JobFilter{States: []meghav1.JobState{meghav1.JobState_JOB_STATE_PENDING}})); got != "p q s t" {
		t.Fatalf("pending: %q", got)
	}
	page, more := st.ListJobs(JobFilter{Limit: 2})
	if ids(page) != "p q" || !more {
		t.Fatalf("page 1: %q %v", ids(page), more)
	}
	page, more = st.ListJobs(JobFilter{Limit: 2, AfterIndex: page[1].CreateIndex})
	if ids(page) != "r s" || !more {
		t.Fatalf("page 2: %q %v", ids(page), more)
	}
	page, more = st.ListJobs(JobFilter{Limit: 2, AfterIndex: page[1].CreateIndex})
	if ids(page) != "t" || more {
		t.Fatalf("page 3: %q %v", ids(page), more)
	}
}

func mustList(h *fsmHarness, f JobFilter) []*meghav1.Job {
	jobs, _ := h.fsm.State().ListJobs(f)
	return jobs
}

func ids(jobs []*meghav1.Job) string {
	var b bytes.Buffer
	for i, j := range jobs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(j.Id)
	}
	return b.String()
}

func TestReadsAreCopies(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(submitCmd("a", "t", ""))
	j, _ := h.fsm.State().Job("a")
	j.Status.State = meghav1.JobState_JOB_STATE_FAILED
	j2, _ := h.fsm.State().Job("a")
	if j2.Status.State != meghav1.JobState_JOB_STATE_PENDING {
		t.Fatal("a read shares memory with the state")
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(submitCmd("a-1", "acme", "r1"))
	h.ok(submitCmd("b-1", "beta", "r2"))
	h.ok(statusCmd("a-1", meghav1.JobState_JOB_STATE_LEASING, 42))
	h.ok(cancelCmd("b-1", ""))
	h.ok(&meghav1.Command{Cmd: &meghav1.Command_UpsertMember{UpsertMember: &meghav1.UpsertMemberCommand{
		Member: &meghav1.Member{Id: "n1", RaftAddr: "r:1", GrpcAddr: "g:1"}}}})

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	restored := NewFSM(nil)
	watchBefore := restored.State()
	_, _, changed := watchBefore.JobWatch("a-1")
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("restore did not wake watchers of the old state")
	}
	want, got := h.fsm.State().snapshot(), restored.State().snapshot()
	if !sameSnapshot(want, got) {
		t.Fatalf("restored state differs:\nwant %v\ngot  %v", want, got)
	}
	// Indexes and idempotency keys survive too.
	if c := restored.State().CountJobs(); c[meghav1.JobState_JOB_STATE_LEASING] != 1 || c[meghav1.JobState_JOB_STATE_CANCELLED] != 1 {
		t.Fatalf("state index after restore: %v", c)
	}
	h2 := &fsmHarness{t: t, fsm: restored, index: h.index}
	if r := h2.ok(submitCmd("a-9", "acme", "r1")); !r.Existed || r.Job.Id != "a-1" {
		t.Fatalf("request key lost in restore: %v", r)
	}
}

func sameSnapshot(a, b *meghav1.Snapshot) bool {
	norm := func(s *meghav1.Snapshot) map[string]proto.Message {
		m := map[string]proto.Message{}
		for _, j := range s.Jobs {
			m["job/"+j.Id] = j
		}
		for _, x := range s.Members {
			m["member/"+x.Id] = x
		}
		for _, k := range s.RequestKeys {
			m["req/"+k.Tenant+"/"+k.RequestId] = k
		}
		for _, l := range s.Leases {
			m["lease/"+l.Id] = l
		}
		return m
	}
	ma, mb := norm(a), norm(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if !proto.Equal(v, mb[k]) {
			return false
		}
	}
	return true
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	f := NewFSM(nil)
	for name, data := range map[string][]byte{
		"garbage":     {0xff, 0x01, 0x02},
		"version 0":   mustMarshal(t, &meghav1.Snapshot{}),
		"job no ID":   mustMarshal(t, &meghav1.Snapshot{Version: 1, Jobs: []*meghav1.Job{{}}}),
		"version 999": mustMarshal(t, &meghav1.Snapshot{Version: 999}),
	} {
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzApply feeds arbitrary bytes to the command decoder and applies what
// decodes: no input may panic the FSM, and the state indexes must stay
// consistent with the jobs.
func FuzzApply(f *testing.F) {
	for _, c := range []*meghav1.Command{
		submitCmd("a", "t", "r"), cancelCmd("a", ""), statusCmd("a", meghav1.JobState_JOB_STATE_LEASING, 1),
		{Cmd: &meghav1.Command_UpsertMember{UpsertMember: &meghav1.UpsertMemberCommand{Member: &meghav1.Member{Id: "n"}}}},
		{Cmd: &meghav1.Command_RemoveMember{RemoveMember: &meghav1.RemoveMemberCommand{Id: "n"}}},
		{Cmd: &meghav1.Command_Noop{Noop: &meghav1.NoopCommand{Payload: []byte("x")}}},
	} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := NewState()
		_, _ = st.apply(1, submitCmd("a", "t", "r"))
		c, err := DecodeCommand(data)
		if err != nil {
			return
		}
		_, _ = st.apply(2, c)
		_, _ = st.apply(3, c) // twice: idempotency and terminal-state paths
		total := 0
		for stt, set := range st.byState {
			for id := range set {
				j, ok := st.jobs[id]
				if !ok || j.Status.GetState() != stt {
					t.Fatalf("state index out of step for %q", id)
				}
			}
			total += len(set)
		}
		if total != len(st.jobs) {
			t.Fatalf("state index holds %d jobs, state %d", total, len(st.jobs))
		}
	})
}

func TestApplySubmitJobsGroupCommit(t *testing.T) {
	h := newFSMHarness(t)
	h.ok(submitCmd("old", "acme", "r0"))
	sj := func(id, reqID string) *meghav1.SubmitJobCommand {
		return &meghav1.SubmitJobCommand{Job: testJob(id, "acme"), RequestId: reqID}
	}
	r := h.ok(&meghav1.Command{Cmd: &meghav1.Command_SubmitJobs{SubmitJobs: &meghav1.SubmitJobsCommand{Jobs: []*meghav1.SubmitJobCommand{
		sj("a", "r1"),   // new
		sj("b", "r1"),   // same request as the one before it in the batch
		sj("old", "r2"), // ID taken
		sj("c", "r0"),   // request of an earlier entry
		{},              // malformed
	}}}})
	if len(r.Items) != 5 {
		t.Fatalf("%d outcomes", len(r.Items))
	}
	if it := r.Items[0]; it.Err != nil || it.Result.Job.Id != "a" || it.Result.Existed {
		t.Errorf("item 0: %+v", it)
	}
	if it := r.Items[1]; it.Err != nil || it.Result.Job.Id != "a" || !it.Result.Existed {
		t.Errorf("item 1: %+v", it)
	}
	if it := r.Items[2]; !errors.Is(it.Err, ErrJobExists) {
		t.Errorf("item 2: %+v", it)
	}
	if it := r.Items[3]; it.Err != nil || it.Result.Job.Id != "old" || !it.Result.Existed {
		t.Errorf("item 3: %+v", it)
	}
	if it := r.Items[4]; !errors.Is(it.Err, ErrInvalid) {
		t.Errorf("item 4: %+v", it)
	}
	if n := len(mustList(h, JobFilter{})); n != 2 {
		t.Fatalf("%d jobs, want 2", n)
	}
}
