package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/coordinator/scheduler"
	"github.com/megha-ml/megha/internal/jobstate"
	"github.com/megha-ml/megha/lease"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MarketConfig connects the coordinator to a GPU market. With a nil
// Market the coordinator leases nothing and runs jobs on workers that
// registered by themselves.
type MarketConfig struct {
	Market lease.Market
	// Tenant signs the coordinator's orders, acceptances and closes. Every
	// node of a cluster must hold the same key, so that a new leader can
	// close the leases an old one opened.
	Tenant *lease.Signer
	// BidWindow is how long an order collects bids before the lease
	// manager chooses (default 2s).
	BidWindow time.Duration
	// DepositHours sizes each lease's escrow deposit: this many hours at
	// the bid's price (default 1), capped by what is left of the job's
	// budget.
	DepositHours float64
	// DefaultMaxPricePerGPUHourMicros caps bids for jobs that set no
	// maximum (default $10 per GPU-hour).
	DefaultMaxPricePerGPUHourMicros int64
	// Retry is the wait after a market call fails or an order ends unfilled
	// (default 2s, doubling to 30s while it keeps failing).
	Retry time.Duration
}

func (c MarketConfig) withDefaults() MarketConfig {
	if c.BidWindow <= 0 {
		c.BidWindow = 2 * time.Second
	}
	if c.DepositHours <= 0 {
		c.DepositHours = 1
	}
	if c.DefaultMaxPricePerGPUHourMicros <= 0 {
		c.DefaultMaxPricePerGPUHourMicros = 10_000_000
	}
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	return c
}

// leaseManager is the leader's market loop: it keeps each job's active
// leases at the number of workers it wants, within its price cap and
// budget, and closes them when the job ends. Orders in flight are leader
// memory: a new leader opens fresh ones (an order only collects bids; the
// leases it yielded are in Raft).
type leaseManager struct {
	n      *Node
	cfg    MarketConfig
	params lease.Params
	log    *slog.Logger

	mu      sync.Mutex
	orders  map[string]*openOrder // job → order collecting bids
	backoff map[string]time.Time  // job → no new order before
	fails   map[string]int        // job → consecutive market failures
	waiting map[string]string     // job → why it waits (last reported)
	// reclaiming holds leases whose provider announced it takes them back
	// (lease → deadline): they no longer count toward a job's workers, so
	// the replacement is leased before they go.
	reclaiming map[string]time.Time
}

type openOrder struct {
	id      string
	opened  time.Time
	want    int
	deposit int64 // µUSD put in escrow per lease accepted from it
}

func newLeaseManager(n *Node, cfg MarketConfig) *leaseManager {
	return &leaseManager{n: n, cfg: cfg.withDefaults(), log: n.logger.With("component", "leases"), orders: map[string]*openOrder{},
		backoff: map[string]time.Time{}, fails: map[string]int{}, waiting: map[string]string{},
		reclaiming: map[string]time.Time{}}
}

// run is the leader duty.
func (m *leaseManager) run(ctx context.Context) {
	for ctx.Err() == nil {
		p, err := m.cfg.Market.Params(ctx)
		if err == nil {
			m.params = p
			break
		}
		m.log.Warn("market unreachable; retrying", "error", err)
		if !sleepCtx(ctx, m.cfg.Retry) {
			return
		}
	}
	go m.watchEvents(ctx)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	spendEvery := time.NewTicker(2 * time.Second)
	defer spendEvery.Stop()
	for {
		changed := m.n.fsm.State().Watch()
		m.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		case <-spendEvery.C:
			m.recordSpend(ctx)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (m *leaseManager) apply(ctx context.Context, c *meghav1.Command) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := m.n.Apply(actx, c)
	return err
}

// pass reconciles every job once.
func (m *leaseManager) pass(ctx context.Context) {
	st := m.n.fsm.State()
	jobs := st.marketJobs()
	m.forget(jobs)
	for _, j := range jobs {
		active := 0
		for _, l := range st.Leases(j.Id) {
			if l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE {
				continue
			}
			if jobstate.Terminal(j.Status.GetState()) {
				if awaitingFinalCheckpoint(j, time.Now()) {
					continue // its worker is still uploading the final state
				}
				m.closeLease(ctx, l, "job "+jobstate.Name(j.Status.GetState()))
				continue
			}
			if m.isReclaiming(l.Id) {
				continue // its replacement is due now
			}
			active++
		}
		if jobstate.Terminal(j.Status.GetState()) {
			m.dropOrder(ctx, j.Id)
			continue
		}
		want := int(max(j.Spec.GetResources().GetWorkers(), 1))
		if active >= want {
			m.dropOrder(ctx, j.Id)
			continue
		}
		m.lease(ctx, j, want-active)
	}
}

// lease advances a job's order for gap more workers: open one, or choose
// from its bids once the bid window has passed.
func (m *leaseManager) lease(ctx context.Context, j *meghav1.Job, gap int) {
	m.mu.Lock()
	o := m.orders[j.Id]
	wait := m.backoff[j.Id]
	m.mu.Unlock()
	now := time.Now()
	if o == nil {
		if now.Before(wait) {
			return
		}
		m.openOrder(ctx, j, gap)
		return
	}
	if now.Sub(o.opened) < m.cfg.BidWindow {
		return
	}
	m.choose(ctx, j, o, gap)
}

func (m *leaseManager) denomCoin(micros int64) sdk.DecCoin {
	if m.params.Denom == lease.DefaultDenom || m.params.Denom == "" {
		return lease.FromMicroUSD(micros)
	}
	return sdk.NewDecCoinFromDec(m.params.Denom, math.LegacyNewDec(micros))
}

func (m *leaseManager) openOrder(ctx context.Context, j *meghav1.Job, gap int) {
	res := j.Spec.GetResources()
	gpus := int(max(res.GetGpusPerWorker(), 1))
	maxPrice := res.GetMaxPricePerGpuHourMicros()
	if maxPrice <= 0 {
		maxPrice = m.cfg.DefaultMaxPricePerGPUHourMicros
	}
	deposit := int64(float64(maxPrice*int64(gpus)) * m.cfg.DepositHours)
	if b := j.Spec.GetBudget().GetMaxSpendMicros(); b > 0 {
		left := b - m.n.fsm.State().committedMicros(j.Id)
		deposit = min(deposit, max(left, 0)/int64(gap))
	}
	// A deposit that pays for fewer than minBlocks blocks at the price cap
	// would close its lease almost at once: the budget is as good as spent.
	const minBlocks = 10
	minDeposit := int64(float64(maxPrice*int64(gpus)) * float64(minBlocks) * m.params.BlockTime.Hours())
	if deposit < max(minDeposit, 1) {
		m.wait(ctx, j, fmt.Sprintf("budget exhausted: %s left, less than %d blocks of a lease at the price cap",
			usdMicros(max(deposit*int64(gap), 0)), minBlocks))
		return
	}
	order := lease.Order{Tenant: m.cfg.Tenant.Address(), GPUModels: res.GetGpuModels(), GPUsPerWorker: gpus, Workers: gap,
		MinVRAMGiB: int(res.GetMinVramGib()), MaxPricePerGPUHour: m.denomCoin(maxPrice), Deposit: m.denomCoin(deposit)}
	req, err := lease.SignOrder(m.cfg.Tenant, order)
	if err == nil {
		order, err = m.cfg.Market.CreateOrder(ctx, req)
	}
	if err != nil {
		if errors.Is(err, lease.ErrInvalid) || errors.Is(err, lease.ErrNoSuchGPUType) {
			m.wait(ctx, j, "the market refuses the order: "+err.Error())
			m.retryLater(j.Id, 30*time.Second)
			return
		}
		m.marketFailed(ctx, j, "opening an order", err)
		return
	}
	m.mu.Lock()
	m.orders[j.Id] = &openOrder{id: order.ID, opened: time.Now(), want: gap, deposit: deposit}
	m.fails[j.Id] = 0
	m.mu.Unlock()
	m.wait(ctx, j, fmt.Sprintf("order %s open for %d workers; collecting bids for %v", order.ID, gap, m.cfg.BidWindow))
}

// choose ranks the order's bids with the job's selector and accepts as
// many as fill the gap within the budget.
func (m *leaseManager) choose(ctx context.Context, j *meghav1.Job, o *openOrder, gap int) {
	bids, err := m.cfg.Market.Bids(ctx, o.id)
	if err != nil {
		m.marketFailed(ctx, j, "listing bids", err)
		return
	}
	spec := j.Spec.GetResources().GetBidSelector()
	if spec == "" {
		spec = "throughput-per-dollar"
	}
	sel, err := lease.ParseSelector(spec)
	if err != nil {
		m.wait(ctx, j, "bad bid selector: "+err.Error())
		return
	}
	order := lease.Order{ID: o.id, GPUModels: j.Spec.GetResources().GetGpuModels(),
		GPUsPerWorker: int(max(j.Spec.GetResources().GetGpusPerWorker(), 1)), Workers: gap,
		MinVRAMGiB: int(j.Spec.GetResources().GetMinVramGib())}
	maxPrice := j.Spec.GetResources().GetMaxPricePerGpuHourMicros()
	if maxPrice <= 0 {
		maxPrice = m.cfg.DefaultMaxPricePerGPUHourMicros
	}
	order.MaxPricePerGPUHour = m.denomCoin(maxPrice)
	bph, _ := lease.BlocksPerHour(m.params.BlockTime).Float64()
	held := map[string]int{}
	for _, l := range m.n.fsm.State().Leases(j.Id) {
		if l.State == meghav1.LeaseState_LEASE_STATE_ACTIVE {
			held[l.Provider]++
		}
	}
	selection := sel.Select(lease.SelectInput{Order: order, Bids: bids, Want: gap,
		Throughput: m.n.fsm.State().throughputByModel(), BlocksPerHour: bph, Held: held})
	why := map[string]string{}
	for _, e := range selection.Explanations {
		why[e.BidID] = e.Line
	}
	got := 0
	for _, p := range selection.Picks {
		for k := 0; k < p.Count && got < gap; k++ {
			if err := m.accept(ctx, j, o, p.Bid, why[p.Bid.ID]); err != nil {
				m.log.Warn("lease not accepted", "job_id", j.Id, "bid", p.Bid.ID, "error", err)
				if errors.Is(err, ErrBudget) {
					m.wait(ctx, j, "budget: "+err.Error())
				}
				break
			}
			got++
		}
	}
	m.dropOrder(ctx, j.Id)
	if got < gap {
		reason := fmt.Sprintf("%d of %d workers leased from order %s; ", got, gap, o.id)
		if len(bids) == 0 {
			reason += fmt.Sprintf("no bid at or below %s per GPU-hour within %v", lease.Format(order.MaxPricePerGPUHour), m.cfg.BidWindow)
		} else {
			reason += fmt.Sprintf("%d bids, none more acceptable (see megha market bids)", len(bids))
		}
		m.wait(ctx, j, reason+"; ordering again")
		m.retryLater(j.Id, m.cfg.Retry)
	}
}

// accept takes one lease from a bid and records it in Raft.
func (m *leaseManager) accept(ctx context.Context, j *meghav1.Job, o *openOrder, b lease.Bid, why string) error {
	perHour := lease.PerGPUHour(b.PricePerBlock, max(b.GPUs, 1), m.params.BlockTime)
	if bud := j.Spec.GetBudget().GetMaxSpendMicros(); bud > 0 {
		if left := bud - m.n.fsm.State().committedMicros(j.Id); o.deposit > left {
			return fmt.Errorf("%w: a lease from %s needs %s in escrow, %s of the budget is left", ErrBudget, b.ProviderName,
				usdMicros(o.deposit), usdMicros(left))
		}
	}
	req, err := lease.SignAccept(m.cfg.Tenant, lease.AcceptRequest{Tenant: m.cfg.Tenant.Address(), OrderID: o.id, BidID: b.ID, Count: 1})
	if err != nil {
		return err
	}
	leases, err := m.cfg.Market.Accept(ctx, req)
	if err != nil {
		return err
	}
	for _, l := range leases {
		rec := &meghav1.Lease{Id: l.ID, JobId: j.Id, OrderId: l.OrderID, Provider: l.Provider, ProviderName: l.ProviderName,
			GpuModel: l.GPUModel, Gpus: uint32(l.GPUs), Region: l.Region, PricePerBlock: l.PricePerBlock.String(),
			PricePerGpuHourMicros: lease.ToMicroUSD(perHour), DepositMicros: lease.ToMicroUSD(l.Escrow.Deposit),
			Selection: why, Emulated: true}
		if err := m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_LeaseCreated{LeaseCreated: &meghav1.LeaseCreatedCommand{
			Lease: rec, At: timestamppb.Now()}}}); err != nil {
			// Not recorded: give it back rather than pay for a worker we
			// do not know about.
			m.closeLease(ctx, rec, "not recorded: "+err.Error())
			return err
		}
		m.log.Info("lease accepted", "job_id", j.Id, "lease_id", l.ID, "provider", l.ProviderName,
			"gpu", fmt.Sprintf("%d×%s", l.GPUs, l.GPUModel), "price_per_gpu_hour", lease.Format(perHour))
	}
	return nil
}

func (m *leaseManager) closeLease(ctx context.Context, l *meghav1.Lease, reason string) {
	req, err := lease.SignClose(m.cfg.Tenant, lease.CloseRequest{Tenant: m.cfg.Tenant.Address(), LeaseID: l.Id, Reason: reason}, false)
	var closed lease.Lease
	if err == nil {
		closed, err = m.cfg.Market.Close(ctx, req)
	}
	if err != nil && !errors.Is(err, lease.ErrLeaseClosed) && !errors.Is(err, lease.ErrNotFound) {
		m.log.Warn("closing lease failed; will retry", "lease_id", l.Id, "error", err)
		return
	}
	spent := l.SpentMicros
	if err == nil {
		spent = max(spent, lease.ToMicroUSD(closed.Escrow.Drawn))
	}
	if err := m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_LeaseClosed{LeaseClosed: &meghav1.LeaseClosedCommand{
		LeaseId: l.Id, Reason: reason, SpentMicros: spent, At: timestamppb.Now()}}}); err == nil {
		m.log.Info("lease closed", "lease_id", l.Id, "job_id", l.JobId, "reason", reason)
	}
}

func (m *leaseManager) dropOrder(ctx context.Context, jobID string) {
	m.mu.Lock()
	o := m.orders[jobID]
	delete(m.orders, jobID)
	m.mu.Unlock()
	if o == nil {
		return
	}
	req, err := lease.SignClose(m.cfg.Tenant, lease.CloseRequest{Tenant: m.cfg.Tenant.Address(), LeaseID: o.id, Reason: "done"}, true)
	if err == nil {
		err = m.cfg.Market.CloseOrder(ctx, req)
	}
	if err != nil && !errors.Is(err, lease.ErrOrderClosed) && !errors.Is(err, lease.ErrNotFound) {
		m.log.Debug("withdrawing order failed", "order", o.id, "error", err)
	}
}

func (m *leaseManager) retryLater(jobID string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backoff[jobID] = time.Now().Add(d)
}

// marketFailed backs off (2s doubling to 30s) and says so in the job.
func (m *leaseManager) marketFailed(ctx context.Context, j *meghav1.Job, what string, err error) {
	m.mu.Lock()
	m.fails[j.Id]++
	n := m.fails[j.Id]
	delete(m.orders, j.Id)
	m.mu.Unlock()
	d := min(m.cfg.Retry<<min(n-1, 4), 30*time.Second)
	m.retryLater(j.Id, d)
	m.wait(ctx, j, fmt.Sprintf("market not answering (%s: %v); retry %d in %v", what, err, n, d.Round(100*time.Millisecond)))
}

// wait records why a job is not fully leased, moving a pending job to
// Leasing; the reason is written once per change.
func (m *leaseManager) wait(ctx context.Context, j *meghav1.Job, why string) {
	m.mu.Lock()
	same := m.waiting[j.Id] == why
	m.waiting[j.Id] = why
	m.mu.Unlock()
	if same {
		return
	}
	c := &meghav1.UpdateJobStatusCommand{Id: j.Id, LastError: "leasing: " + why, At: timestamppb.Now()}
	if j.Status.GetState() == meghav1.JobState_JOB_STATE_PENDING {
		c.State = meghav1.JobState_JOB_STATE_LEASING
	}
	if err := m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_UpdateJobStatus{UpdateJobStatus: c}}); err != nil {
		m.log.Debug("job status not updated", "job_id", j.Id, "error", err)
	}
}

// watchEvents turns the market's news into Raft records: a lease the
// market closed is closed here (its worker is lost with it).
func (m *leaseManager) watchEvents(ctx context.Context) {
	for ctx.Err() == nil {
		err := m.cfg.Market.Events(ctx, func(e lease.Event) error {
			l, ok := m.n.fsm.State().Lease(e.LeaseID)
			if !ok {
				return nil
			}
			switch e.Kind {
			case lease.EventLeaseClosed:
				m.mu.Lock()
				delete(m.reclaiming, l.Id)
				m.mu.Unlock()
				spent := l.SpentMicros
				if got, err := m.cfg.Market.Lease(ctx, l.Id); err == nil {
					spent = max(spent, lease.ToMicroUSD(got.Escrow.Drawn))
				}
				return m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_LeaseClosed{LeaseClosed: &meghav1.LeaseClosedCommand{
					LeaseId: l.Id, Reason: "market: " + e.Reason, SpentMicros: spent, At: timestamppb.Now()}}})
			case lease.EventReclaimNotice:
				m.mu.Lock()
				m.reclaiming[l.Id] = e.Deadline
				m.mu.Unlock()
				// Its worker's state is lost with it: checkpoint at the
				// next round, so that the replacement has the newest to
				// restore.
				m.n.rounds.wantCheckpoint(l.JobId)
				m.log.Warn("reclaim notice: leasing a replacement before the provider takes this lease back",
					"lease_id", l.Id, "job_id", l.JobId, "provider", l.ProviderName, "deadline", e.Deadline)
			case lease.EventEscrowLow:
				m.log.Warn("escrow low", "lease_id", l.Id, "job_id", l.JobId, "balance", lease.Format(e.Balance))
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("market event stream ended; reconnecting", "error", err)
		if !sleepCtx(ctx, m.cfg.Retry) {
			return
		}
	}
}

// forget drops the per-job memory of jobs no longer looked after (ended,
// with every lease closed).
func (m *leaseManager) forget(jobs []*meghav1.Job) {
	keep := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		keep[j.Id] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keepOnly(m.backoff, keep)
	keepOnly(m.fails, keep)
	keepOnly(m.waiting, keep)
}

func (m *leaseManager) isReclaiming(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.reclaiming[id]
	return ok
}

// recordSpend asks the market what active leases have drawn.
func (m *leaseManager) recordSpend(ctx context.Context) {
	spent := map[string]int64{}
	for _, l := range m.n.fsm.State().Leases("") {
		if l.State != meghav1.LeaseState_LEASE_STATE_ACTIVE {
			continue
		}
		got, err := m.cfg.Market.Lease(ctx, l.Id)
		if err != nil {
			continue
		}
		if got.State == lease.LeaseClosed {
			// Closed while the event stream was down: reconcile.
			if err := m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_LeaseClosed{LeaseClosed: &meghav1.LeaseClosedCommand{
				LeaseId: l.Id, Reason: "market: " + got.CloseReason, SpentMicros: lease.ToMicroUSD(got.Escrow.Drawn),
				At: timestamppb.Now()}}}); err != nil {
				m.log.Warn("closed lease not recorded", "lease_id", l.Id, "error", err)
			}
			continue
		}
		if d := lease.ToMicroUSD(got.Escrow.Drawn); d > l.SpentMicros {
			spent[l.Id] = d
		}
	}
	if len(spent) == 0 {
		return
	}
	if err := m.apply(ctx, &meghav1.Command{Cmd: &meghav1.Command_LeaseSpend{LeaseSpend: &meghav1.LeaseSpendCommand{
		SpentMicros: spent, At: timestamppb.Now()}}}); err != nil {
		m.log.Warn("spend not recorded", "error", err)
	}
}

func usdMicros(m int64) string { return lease.Format(lease.FromMicroUSD(m)) }

// marketJobs returns copies of the jobs the lease manager looks after:
// runnable jobs that are not terminal, and terminal ones that still hold
// active leases.
func (s *State) marketJobs() []*meghav1.Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*meghav1.Job
	for _, j := range s.jobs {
		live := !jobstate.Terminal(j.Status.GetState()) && scheduler.Runnable(j)
		holds := false
		for id := range s.leasesBy[j.Id] {
			holds = holds || s.leases[id].State == meghav1.LeaseState_LEASE_STATE_ACTIVE
		}
		if live || holds {
			out = append(out, proto.Clone(j).(*meghav1.Job))
		}
	}
	return out
}

func (s *State) liveTasks(jobID string) []*meghav1.Task {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.liveTasksLocked(jobID)
}

func (s *State) committedMicros(jobID string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.committedMicrosLocked(jobID)
}

// throughputByModel is the mean measured throughput per GPU by model.
func (s *State) throughputByModel() map[string]float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]float64{}
	for _, t := range s.throughput {
		if t.Mean > out[t.Model] {
			out[t.Model] = t.Mean
		}
	}
	return out
}

// finalCheckpointWait bounds how long the leases of a finished training
// job stay open for its final checkpoint to be written and recorded.
const finalCheckpointWait = time.Minute

// awaitingFinalCheckpoint reports whether a training job that succeeded
// has yet to record the checkpoint of its last round (its rank 0 writes it
// after the commit that ended the job), within finalCheckpointWait.
func awaitingFinalCheckpoint(j *meghav1.Job, now time.Time) bool {
	if j.Status.GetState() != meghav1.JobState_JOB_STATE_SUCCEEDED || !scheduler.BuiltinTrain(j) {
		return false
	}
	if ck := latestCheckpoint(j); ck != nil && ck.Round >= j.Status.GetTrain().GetCommitted() {
		return false
	}
	f := j.Status.GetFinishedAt()
	return f != nil && now.Sub(f.AsTime()) < finalCheckpointWait
}
