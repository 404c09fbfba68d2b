package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/sim"
)

// recordingLauncher stands in for the embedded market's process launcher
// (which starts `megha worker` processes; tested in lease/sim and end to
// end): it records which leases were started and stopped.
type recordingLauncher struct {
	mu      sync.Mutex
	started []lease.Lease
	stopped []string
}

func (r *recordingLauncher) Start(l lease.Lease) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, l)
	return []string{"test"}, nil
}

func (r *recordingLauncher) Stop(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, id)
	return nil
}

// newSim starts an embedded market for a test.
func newSim(t *testing.T, cfg sim.Config) *sim.Market {
	t.Helper()
	cfg.Logger = quietLogger()
	mkt, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mkt.Shutdown() })
	return mkt
}

// serverWithMarket starts a one-node coordinator leasing from mkt, with
// a short bid window, and waits until it leads. Workers are never
// declared lost (the tests register them by hand).
func serverWithMarket(t *testing.T, mkt lease.Market, retry time.Duration) *Server {
	t.Helper()
	tenant, err := lease.GenerateSigner(lease.NewKeyring(), "coordinator", []byte("test-tenant"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "n1", true, func(c *ServerConfig) {
		c.Node.Market = MarketConfig{Market: mkt, Tenant: tenant, BidWindow: 100 * time.Millisecond, Retry: retry}
		c.Workers.Detector = DefaultDetectorConfig()
		c.Workers.Detector.AcceptablePause = time.Hour
	})
	waitFor(t, "leader", 10*time.Second, s.Node().IsLeader)
	return s
}

func marketServer(t *testing.T) (*Server, *sim.Market, *recordingLauncher) {
	t.Helper()
	launch := &recordingLauncher{}
	mkt := newSim(t, sim.Config{Seed: 7, BlockTime: 50 * time.Millisecond, NoRandomFailures: true, Launcher: launch})
	return serverWithMarket(t, mkt, 200*time.Millisecond), mkt, launch
}

func activeLeases(s *Server, job string) []*meghav1.Lease {
	var out []*meghav1.Lease
	for _, l := range s.Node().FSM().State().Leases(job) {
		if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
			out = append(out, l)
		}
	}
	return out
}

// TestLeaseManagerLeasesReplacesAndCloses: a job is leased its workers
// from the embedded market within its price cap; workers registering with
// those leases run it; a failed provider's lease is replaced; cancelling
// the job closes every lease and its spend is what the leases drew.
func TestLeaseManagerLeasesReplacesAndCloses(t *testing.T) {
	s, mkt, launch := marketServer(t)
	admin := newClient(t, tokAdmin, s.Addr())
	wc := newClient(t, tokWorker, s.Addr())
	spec := &meghav1.JobSpec{Name: "leased", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Command: []string{"/bin/true"}},
		Resources: &meghav1.Resources{Workers: 2, GpusPerWorker: 1, GpuModels: []string{"H100-SXM", "A100-80GB"},
			MaxPricePerGpuHourMicros: 4_000_000, BidSelector: "spread"},
		Budget: &meghav1.Budget{MaxSpendMicros: 100_000_000}}
	sub, err := admin.Submit(ctxT(t), spec, "l1")
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	waitFor(t, "2 leases", 10*time.Second, func() bool { return len(activeLeases(s, id)) == 2 })
	leases := activeLeases(s, id)
	for _, l := range leases {
		if l.PricePerGpuHourMicros > 4_000_000 || (l.GpuModel != "H100-SXM" && l.GpuModel != "A100-80GB") || l.Selection == "" {
			t.Errorf("lease %v breaks the job's constraints or lacks a reason", l)
		}
	}
	if leases[0].Provider == leases[1].Provider {
		t.Errorf("spread chose one provider twice: %s", leases[0].ProviderName)
	}
	if j, _ := s.Node().FSM().State().Job(id); j.Status.State != meghav1.JobState_JOB_STATE_LEASING {
		t.Fatalf("job %v while waiting for its leased workers, want leasing", j.Status.State)
	}

	// A worker without a lease for this job is not used; workers on the
	// job's leases are.
	register := func(wid, leaseID string) {
		t.Helper()
		if _, err := wc.RegisterWorker(ctxT(t), &meghav1.RegisterWorkerRequest{WorkerId: wid, LeaseId: leaseID, Host: "h",
			Gpus: []*meghav1.GPU{{Uuid: "EMU-" + wid, Model: "H100-SXM", MemoryBytes: 80 << 30, Emulated: true, Healthy: true}}}); err != nil {
			t.Fatalf("register %s on lease %q: %v", wid, leaseID, err)
		}
	}
	if _, err := wc.RegisterWorker(ctxT(t), &meghav1.RegisterWorkerRequest{WorkerId: "w-bogus", LeaseId: "lease-404", Host: "h"}); err == nil ||
		!strings.Contains(err.Error(), "unknown lease") {
		t.Fatalf("worker on an unknown lease: %v", err)
	}
	register("w-0", leases[0].Id)
	register("w-1", leases[1].Id)
	waitFor(t, "job running on its leased workers", 10*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(id)
		return j.Status.State == meghav1.JobState_JOB_STATE_RUNNING
	})

	// The provider of lease 0 fails: the market closes the lease, the
	// coordinator records it and leases a replacement.
	if err := mkt.Fail(leases[0].ProviderName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lease 0 closed", 10*time.Second, func() bool {
		l, _ := s.Node().FSM().State().Lease(leases[0].Id)
		return l.State == meghav1.LeaseState_LEASE_STATE_CLOSED
	})
	if l, _ := s.Node().FSM().State().Lease(leases[0].Id); !strings.Contains(l.CloseReason, "market") {
		t.Errorf("close reason %q does not say the market closed it", l.CloseReason)
	}
	waitFor(t, "replacement lease", 10*time.Second, func() bool {
		for _, l := range activeLeases(s, id) {
			if l.Id != leases[1].Id {
				return true
			}
		}
		return false
	})

	// Spend accrues as blocks pass; cancelling closes every lease.
	waitFor(t, "spend recorded", 10*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(id)
		return j.Status.SpendMicros > 0
	})
	if _, err := admin.Cancel(ctxT(t), id, "test over"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leases closed after cancel", 10*time.Second, func() bool { return len(activeLeases(s, id)) == 0 })
	var drawn int64
	for _, l := range s.Node().FSM().State().Leases(id) {
		got, err := mkt.Lease(ctxT(t), l.Id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != lease.LeaseClosed {
			t.Errorf("market still has lease %s %v", l.Id, got.State)
		}
		drawn += lease.ToMicroUSD(got.Escrow.Drawn)
		if l.SpentMicros != lease.ToMicroUSD(got.Escrow.Drawn) {
			t.Errorf("lease %s: recorded spend %d, market drew %d", l.Id, l.SpentMicros, lease.ToMicroUSD(got.Escrow.Drawn))
		}
	}
	j, _ := s.Node().FSM().State().Job(id)
	if j.Status.SpendMicros != drawn {
		t.Errorf("job spend %d, leases drew %d", j.Status.SpendMicros, drawn)
	}
	launch.mu.Lock()
	defer launch.mu.Unlock()
	if len(launch.started) != 3 || len(launch.stopped) < 3 {
		t.Errorf("launcher started %d and stopped %d workers, want 3 and 3", len(launch.started), len(launch.stopped))
	}
	t.Logf("3 leases, %s spent", lease.Format(lease.FromMicroUSD(drawn)))
}

// TestLeaseManagerRespectsCapAndBudget: with a price cap below every
// provider, nothing is leased and the job says why; with a budget for one
// deposit, one lease is accepted and the job says the budget stops it.
func TestLeaseManagerRespectsCapAndBudget(t *testing.T) {
	s, _, _ := marketServer(t)
	admin := newClient(t, tokAdmin, s.Addr())
	cheap := &meghav1.JobSpec{Name: "cheap", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:     &meghav1.ModelSpec{Command: []string{"/bin/true"}},
		Resources: &meghav1.Resources{Workers: 1, GpuModels: []string{"H100-SXM"}, MaxPricePerGpuHourMicros: 10_000}} // $0.01
	sub, err := admin.Submit(ctxT(t), cheap, "c1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job says why it waits", 10*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(sub.Job.Id)
		return j.Status.State == meghav1.JobState_JOB_STATE_LEASING && strings.Contains(j.Status.LastError, "no bid at or below $0.01")
	})
	if n := len(s.Node().FSM().State().Leases(sub.Job.Id)); n != 0 {
		t.Fatalf("%d leases above the price cap", n)
	}

	// Deposits split what is left of the budget across the leases wanted:
	// $0.002 buys two leases with $0.001 of escrow each, which run dry in
	// about 36 blocks; then the budget is exhausted and the job says so.
	tight := &meghav1.JobSpec{Name: "tight", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:     &meghav1.ModelSpec{Command: []string{"/bin/true"}},
		Resources: &meghav1.Resources{Workers: 2, GpuModels: []string{"H100-SXM"}, MaxPricePerGpuHourMicros: 3_000_000},
		Budget:    &meghav1.Budget{MaxSpendMicros: 2_000}}
	sub, err = admin.Submit(ctxT(t), tight, "t1")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	waitFor(t, "budget exhausted", 20*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(sub.Job.Id)
		if time.Until(deadline) < 200*time.Millisecond {
			t.Logf("job status %v", j.Status)
		}
		return len(activeLeases(s, sub.Job.Id)) == 0 && strings.Contains(j.Status.LastError, "budget exhausted")
	})
	st := s.Node().FSM().State()
	j, _ := st.Job(sub.Job.Id)
	ls := st.Leases(sub.Job.Id)
	t.Logf("budget $0.002: %d leases, %s spent; status: %s", len(ls), lease.Format(lease.FromMicroUSD(j.Status.SpendMicros)), j.Status.LastError)
	if len(ls) != 2 || j.Status.SpendMicros > 2_000 || st.committedMicros(sub.Job.Id) > 2_000 {
		t.Fatalf("%d leases, spend %d, committed %d against a budget of 2000", len(ls), j.Status.SpendMicros, st.committedMicros(sub.Job.Id))
	}
	for _, l := range ls {
		if !strings.Contains(l.CloseReason, "escrow") {
			t.Errorf("lease %s closed for %q, want escrow exhausted", l.Id, l.CloseReason)
		}
	}
}

// TestLeaseManagerReplacesBeforeReclaim: a provider that announces it
// takes its GPUs back (a reclaim notice ahead of the shutdown) has its
// lease replaced while the old one still runs.
func TestLeaseManagerReplacesBeforeReclaim(t *testing.T) {
	cat, err := sim.ParseCatalog([]byte(`
providers:
  - name: spot
    region: us-east
    gpus: [{model: H100-SXM, count: 1}]
    pricing: {position: 0.1, spread: 0}
    mtbf: 2s
    mttr: 1h
    reclaim: {probability: 1, notice: 3s}
  - name: steady
    region: us-east
    gpus: [{model: H100-SXM, count: 1}]
    pricing: {position: 0.9, spread: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	mkt := newSim(t, sim.Config{Catalog: cat, Seed: 1, BlockTime: 100 * time.Millisecond})
	s := serverWithMarket(t, mkt, 200*time.Millisecond)
	admin := newClient(t, tokAdmin, s.Addr())
	sub, err := admin.Submit(ctxT(t), &meghav1.JobSpec{Name: "spot", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model:     &meghav1.ModelSpec{Command: []string{"/bin/true"}},
		Resources: &meghav1.Resources{Workers: 1, BidSelector: "cheapest"}}, "s1")
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	waitFor(t, "a lease from the cheap spot provider", 10*time.Second, func() bool {
		ls := activeLeases(s, id)
		return len(ls) == 1 && ls[0].ProviderName == "spot"
	})
	spotLease := activeLeases(s, id)[0]
	// The spot provider announces a reclaim within a few seconds (MTBF 2s)
	// and goes 3 s later; the replacement comes from the other provider
	// while the spot lease is still active.
	waitFor(t, "replacement leased before the reclaim", 20*time.Second, func() bool {
		l, _ := s.Node().FSM().State().Lease(spotLease.Id)
		for _, r := range activeLeases(s, id) {
			if r.ProviderName == "steady" {
				if l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE {
					t.Fatalf("replacement came only after the spot lease closed (%s)", l.CloseReason)
				}
				return true
			}
		}
		return false
	})
	waitFor(t, "spot lease closed by the reclaim", 20*time.Second, func() bool {
		l, _ := s.Node().FSM().State().Lease(spotLease.Id)
		return l.State == meghav1.LeaseState_LEASE_STATE_CLOSED
	})
	if n := len(activeLeases(s, id)); n != 1 {
		t.Fatalf("%d active leases after the reclaim, want 1", n)
	}
}

// flakyMarket fails every call while down, like a market that stopped
// answering.
type flakyMarket struct {
	lease.Market
	mu   sync.Mutex
	down bool
}

func (f *flakyMarket) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }

func (f *flakyMarket) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return fmt.Errorf("%w: connection refused", lease.ErrUnavailable)
	}
	return nil
}

func (f *flakyMarket) CreateOrder(ctx context.Context, r lease.OrderRequest) (lease.Order, error) {
	if err := f.err(); err != nil {
		return lease.Order{}, err
	}
	return f.Market.CreateOrder(ctx, r)
}

// TestLeaseManagerRidesOutMarketOutage: while the market does not answer,
// the coordinator keeps serving, the job says the market is not answering
// and how it retries, and leasing resumes once the market is back.
func TestLeaseManagerRidesOutMarketOutage(t *testing.T) {
	mkt := &flakyMarket{Market: newSim(t, sim.Config{Seed: 2, BlockTime: 100 * time.Millisecond, NoRandomFailures: true}), down: true}
	s := serverWithMarket(t, mkt, 100*time.Millisecond)
	admin := newClient(t, tokAdmin, s.Addr())
	sub, err := admin.Submit(ctxT(t), &meghav1.JobSpec{Name: "outage", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Command: []string{"/bin/true"}}, Resources: &meghav1.Resources{Workers: 1}}, "o1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job reports the outage", 10*time.Second, func() bool {
		j, _ := s.Node().FSM().State().Job(sub.Job.Id)
		return strings.Contains(j.Status.LastError, "market not answering") && strings.Contains(j.Status.LastError, "retry 2")
	})
	// The coordinator still serves.
	if _, err := admin.Submit(ctxT(t), &meghav1.JobSpec{Name: "other", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Command: []string{"/bin/true"}}}, "o2"); err != nil {
		t.Fatalf("submit during the market outage: %v", err)
	}
	mkt.setDown(false)
	waitFor(t, "leased once the market is back", 20*time.Second, func() bool { return len(activeLeases(s, sub.Job.Id)) == 1 })
}

// deafMarket delivers no events, like a market whose event stream is down.
type deafMarket struct{ lease.Market }

func (deafMarket) Events(ctx context.Context, _ func(lease.Event) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestLeaseManagerReconcilesMissedClose: a lease the market closed while
// no event reached the coordinator is found closed by the periodic spend
// check, recorded, and replaced.
func TestLeaseManagerReconcilesMissedClose(t *testing.T) {
	inner := newSim(t, sim.Config{Seed: 4, BlockTime: 100 * time.Millisecond, NoRandomFailures: true})
	s := serverWithMarket(t, deafMarket{inner}, 200*time.Millisecond)
	admin := newClient(t, tokAdmin, s.Addr())
	sub, err := admin.Submit(ctxT(t), &meghav1.JobSpec{Name: "deaf", Kind: meghav1.JobKind_JOB_KIND_TRAIN,
		Model: &meghav1.ModelSpec{Command: []string{"/bin/true"}}, Resources: &meghav1.Resources{Workers: 1}}, "d1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a lease", 10*time.Second, func() bool { return len(activeLeases(s, sub.Job.Id)) == 1 })
	first := activeLeases(s, sub.Job.Id)[0]
	if err := inner.Fail(first.ProviderName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missed close reconciled and replaced", 15*time.Second, func() bool {
		l, _ := s.Node().FSM().State().Lease(first.Id)
		ls := activeLeases(s, sub.Job.Id)
		return l.State == meghav1.LeaseState_LEASE_STATE_CLOSED && len(ls) == 1 && ls[0].Id != first.Id
	})
}
