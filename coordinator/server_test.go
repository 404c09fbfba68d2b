package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func validSpec(name string) *meghav1.JobSpec {
	return &meghav1.JobSpec{Name: name, Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Builtin: "transformer-tiny"},
		Data:  &meghav1.DataSpec{Dataset: "synthetic"},
		Stop:  &meghav1.StopCondition{Rounds: 5}}
}

func codeOf(err error) codes.Code { return status.Code(err) }

func leaderServer(t *testing.T) *Server {
	s := startServer(t, "n1", true, nil)
	waitFor(t, "leadership", 10*time.Second, s.Node().IsLeader)
	return s
}

func TestAuthRejectsMissingAndUnknownTokens(t *testing.T) {
	s := leaderServer(t)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = meghav1.NewJobServiceClient(cc).List(ctxT(t), &meghav1.ListJobsRequest{})
	if codeOf(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	bad := newClient(t, "not-a-real-token-at-all", s.Addr())
	if _, err := bad.Submit(ctxT(t), validSpec("x"), ""); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("unknown token: %v", err)
	}
	// Health needs no token.
	hr, err := healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	s := leaderServer(t)
	acme, beta, admin := newClient(t, tokAcme, s.Addr()), newClient(t, tokBeta, s.Addr()), newClient(t, tokAdmin, s.Addr())
	ctx := ctxT(t)
	a, err := acme.Submit(ctx, validSpec("acme-job"), "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Job.Tenant != "acme" {
		t.Fatalf("tenant %q", a.Job.Tenant)
	}
	if _, err := beta.Get(ctx, a.Job.Id, false); codeOf(err) != codes.NotFound {
		t.Fatalf("beta saw acme's job: %v", err)
	}
	if _, err := beta.Cancel(ctx, a.Job.Id, "mine now"); codeOf(err) != codes.NotFound {
		t.Fatalf("beta cancelled acme's job: %v", err)
	}
	if err := beta.Watch(ctx, a.Job.Id, func(*meghav1.Job) error { return nil }); codeOf(err) != codes.NotFound {
		t.Fatalf("beta watched acme's job: %v", err)
	}
	if jobs, err := beta.ListAll(ctx, &meghav1.ListJobsRequest{}); err != nil || len(jobs) != 0 {
		t.Fatalf("beta lists %d jobs, err %v", len(jobs), err)
	}
	if _, err := beta.List(ctx, &meghav1.ListJobsRequest{Tenant: "acme"}); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("beta listed acme by name: %v", err)
	}
	if j, err := acme.Get(ctx, a.Job.Id, false); err != nil || j.Status.State != meghav1.JobState_JOB_STATE_PENDING {
		t.Fatalf("acme get: %v %v", j, err)
	}
	// The admin sees and cancels everyone's jobs.
	if jobs, err := admin.ListAll(ctx, &meghav1.ListJobsRequest{}); err != nil || len(jobs) != 1 {
		t.Fatalf("admin lists %d jobs, err %v", len(jobs), err)
	}
	if j, err := admin.Cancel(ctx, a.Job.Id, "admin"); err != nil || j.Status.State != meghav1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("admin cancel: %v %v", j, err)
	}
}

func TestRolesEnforced(t *testing.T) {
	s := leaderServer(t)
	worker, acme := newClient(t, tokWorker, s.Addr()), newClient(t, tokAcme, s.Addr())
	ctx := ctxT(t)
	if _, err := worker.Submit(ctx, validSpec("w"), ""); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("worker submit: %v", err)
	}
	if _, err := acme.RaftStats(ctx); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("tenant raft stats: %v", err)
	}
	if _, err := acme.RemoveVoter(ctx, "n1"); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("tenant remove voter: %v", err)
	}
	if ms, err := worker.Members(ctx); err != nil || len(ms) != 1 || ms[0].GrpcAddr != s.Addr() || !ms[0].Leader {
		t.Fatalf("members: %v %v", ms, err)
	}
}

func TestInvalidRequestsWriteNothing(t *testing.T) {
	s := leaderServer(t)
	c := newClient(t, tokAcme, s.Addr())
	ctx := ctxT(t)
	before := s.Node().Raft().AppliedIndex()

	bad := validSpec("Bad Name!")
	bad.Resources = &meghav1.Resources{Workers: 5000}
	_, err := c.Submit(ctx, bad, "")
	if codeOf(err) != codes.InvalidArgument {
		t.Fatalf("bad spec: %v", err)
	}
	fields := violations(err)
	for _, want := range []string{"spec.name", "spec.resources.workers"} {
		if !strings.Contains(fields, want) {
			t.Errorf("violations %q lack %q", fields, want)
		}
	}
	for name, call := range map[string]func() error{
		"nil spec":     func() error { _, err := c.Submit(ctx, nil, ""); return err },
		"empty get":    func() error { _, err := c.Get(ctx, "", false); return err },
		"empty cancel": func() error { _, err := c.Cancel(ctx, "", ""); return err },
		"empty watch":  func() error { return c.Watch(ctx, "", func(*meghav1.Job) error { return nil }) },
		"page size": func() error {
			_, err := c.List(ctx, &meghav1.ListJobsRequest{PageSize: 5000})
			return err
		},
		"page token": func() error {
			_, err := c.List(ctx, &meghav1.ListJobsRequest{PageToken: "zzz"})
			return err
		},
		"state": func() error {
			_, err := c.List(ctx, &meghav1.ListJobsRequest{States: []meghav1.JobState{99}})
			return err
		},
		"long request id": func() error { _, err := c.Submit(ctx, validSpec("ok"), strings.Repeat("r", 500)); return err },
	} {
		if err := call(); codeOf(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	if after := s.Node().Raft().AppliedIndex(); after != before {
		t.Fatalf("rejected requests wrote to the log: applied index %d -> %d", before, after)
	}
}

func violations(err error) string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				out = append(out, v.Field)
			}
		}
	}
	return strings.Join(out, ",")
}

func TestSubmitIsIdempotent(t *testing.T) {
	s := leaderServer(t)
	c := newClient(t, tokAcme, s.Addr())
	ctx := ctxT(t)
	first, err := c.Submit(ctx, validSpec("idem"), "req-42")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(ctx, validSpec("idem"), "req-42")
	if err != nil || !again.Existed || again.Job.Id != first.Job.Id {
		t.Fatalf("resubmit: %v %v", again, err)
	}
	jobs, _ := c.ListAll(ctx, &meghav1.ListJobsRequest{})
	if len(jobs) != 1 {
		t.Fatalf("%d jobs after a resubmit", len(jobs))
	}
}

func TestWatchFollowsJobToTheEnd(t *testing.T) {
	s := leaderServer(t)
	c := newClient(t, tokAcme, s.Addr())
	ctx := ctxT(t)
	r, err := c.Submit(ctx, validSpec("watched"), "")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan meghav1.JobState, 8)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, r.Job.Id, func(j *meghav1.Job) error { seen <- j.Status.State; return nil })
	}()
	if st := <-seen; st != meghav1.JobState_JOB_STATE_PENDING {
		t.Fatalf("first event %v", st)
	}
	if _, err := c.Cancel(ctx, r.Job.Id, "done"); err != nil {
		t.Fatal(err)
	}
	if st := <-seen; st != meghav1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("second event %v", st)
	}
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
}

func TestRateLimitPerToken(t *testing.T) {
	s := startServer(t, "n1", true, func(c *ServerConfig) { c.RateLimit, c.RateBurst = 1, 3 })
	waitFor(t, "leadership", 10*time.Second, s.Node().IsLeader)
	acme, beta := newClient(t, tokAcme, s.Addr()), newClient(t, tokBeta, s.Addr())
	ctx := ctxT(t)
	var limited error
	for i := 0; i < 10 && limited == nil; i++ {
		if _, err := acme.List(ctx, &meghav1.ListJobsRequest{}); err != nil {
			limited = err
		}
	}
	if codeOf(limited) != codes.ResourceExhausted {
		t.Fatalf("acme was not limited: %v", limited)
	}
	if _, err := beta.List(ctx, &meghav1.ListJobsRequest{}); err != nil {
		t.Fatalf("beta limited by acme's bucket: %v", err)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	s := leaderServer(t)
	// A nil Job in the FSM would panic a handler that dereferences it; make
	// the handler panic directly through a poisoned state instead.
	s.Node().FSM().State().mu.Lock()
	s.Node().FSM().State().jobs["boom"] = nil
	s.Node().FSM().State().byTenant["acme"] = map[string]struct{}{"boom": {}}
	s.Node().FSM().State().mu.Unlock()
	c := newClient(t, tokAcme, s.Addr())
	_, err := c.List(ctxT(t), &meghav1.ListJobsRequest{AllowStale: true})
	if codeOf(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	// The server lives on.
	if _, err := c.Members(ctxT(t)); err != nil {
		t.Fatalf("after panic: %v", err)
	}
}

func TestFollowerRedirectsToLeader(t *testing.T) {
	servers := startCluster(t, 3)
	var follower *Server
	for _, s := range servers {
		if !s.Node().IsLeader() {
			follower = s
		}
	}
	// A raw call to the follower is refused with the leader's address...
	cc, err := grpc.NewClient(follower.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerForTest(tokAcme)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = meghav1.NewJobServiceClient(cc).Submit(ctxT(t), &meghav1.SubmitJobRequest{Spec: validSpec("direct")})
	if codeOf(err) != codes.Unavailable || !strings.Contains(err.Error(), servers[0].Addr()) {
		t.Fatalf("follower answered %v", err)
	}
	// ...and the client follows it by itself.
	c := newClient(t, tokAcme, follower.Addr())
	r, err := c.Submit(ctxT(t), validSpec("via-follower"), "")
	if err != nil {
		t.Fatal(err)
	}
	// Every node applies it; stale reads on the follower see it.
	waitFor(t, "follower applies the job", 10*time.Second, func() bool {
		_, ok := follower.Node().FSM().State().Job(r.Job.Id)
		return ok
	})
	ms, err := c.Members(ctxT(t))
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %v %v", ms, err)
	}
	for _, m := range ms {
		if m.GrpcAddr == "" {
			t.Errorf("member %s has no gRPC address", m.Id)
		}
	}
}

type bearerForTest string

func (b bearerForTest) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerForTest) RequireTransportSecurity() bool { return false }

func TestParseTokensErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short admin\n", "at least 16"},
		{"0123456789abcdef tenant\n", "needs a tenant name"},
		{"0123456789abcdef root\n", "unknown role"},
		{"0123456789abcdef admin\n0123456789abcdef worker\n", "repeats"},
		{"# nothing\n", "no tokens"},
		{"0123456789abcdef tenant Bad!\n", "tenant"},
		{"a b c d\n", "TOKEN ROLE"},
	} {
		_, err := ParseTokens([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	tok, err := ParseTokens([]byte(testTokensFile))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.Lookup(tokAcme); !ok || id.Role != RoleTenant || id.Tenant != "acme" {
		t.Fatalf("lookup: %v %v", id, ok)
	}
	if id, _ := tok.Lookup(tokAdmin); id.Tenant != DefaultTenant {
		t.Fatalf("admin tenant %q", id.Tenant)
	}
}

func TestEnsureAdminTokenIsStable(t *testing.T) {
	dir := t.TempDir()
	_, p1, err := EnsureAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, p2, err := EnsureAdminToken(dir)
	if err != nil || p1 != p2 {
		t.Fatalf("%v %v %v", p1, p2, err)
	}
}
