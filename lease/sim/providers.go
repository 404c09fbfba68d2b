package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/megha-ml/megha/lease"
)

// providerState is a provider's place in its failure cycle:
// up → (reclaiming →) down → up.
type providerState int

const (
	stateUp providerState = iota
	stateReclaiming
	stateDown
)

func (s providerState) String() string {
	switch s {
	case stateUp:
		return "up"
	case stateReclaiming:
		return "reclaiming"
	}
	return "down"
}

// reliabilityPrior is how many blocks the catalog's initial reliability
// weighs against observed ones.
const reliabilityPrior = 1000

type provider struct {
	spec   ProviderSpec
	signer *lease.Signer
	addr   string
	// slots holds, per model, the lease ID using each GPU ("" = free).
	slots    map[string][]string
	priceRNG *rand.Rand
	failRNG  *rand.Rand

	state      providerState
	shutdownAt int64 // height of the announced failure (reclaiming)
	downUntil  int64 // height it comes back (down)
	upBlocks   int64
	allBlocks  int64
}

func (p *provider) reliability() float64 {
	return (p.spec.Reliability*reliabilityPrior + float64(p.upBlocks)) / float64(reliabilityPrior+p.allBlocks)
}

func (p *provider) free(model string) int {
	n := 0
	for _, id := range p.slots[model] {
		if id == "" {
			n++
		}
	}
	return n
}

// reserve gives n free GPUs of model to leaseID and returns their indices.
func (p *provider) reserve(model string, n int, leaseID string) []int {
	idx := make([]int, 0, n)
	s := p.slots[model]
	for i := range s {
		if len(idx) == n {
			break
		}
		if s[i] == "" {
			s[i] = leaseID
			idx = append(idx, i)
		}
	}
	return idx
}

func (p *provider) release(model string, idx []int, leaseID string) {
	s := p.slots[model]
	for _, i := range idx {
		if s[i] == leaseID {
			s[i] = ""
		}
	}
}

// price draws a price in micro-units per GPU-hour for g, at most maxMicro;
// ok is false when the provider's floor is above the maximum.
func (p *provider) price(g GPUSpec, maxMicro float64) (micro int64, ok bool) {
	lo, hi := p.spec.priceRange(g)
	u := p.priceRNG.Float64() // drawn even when not bidding: one draw per offer
	floor := math.Ceil(lo * lease.MicrosPerUnit)
	if floor > maxMicro {
		return 0, false
	}
	x := math.Round((lo + u*(hi-lo)) * lease.MicrosPerUnit)
	x = math.Max(floor, math.Min(x, math.Floor(maxMicro)))
	return max(int64(x), 1), true
}

// ProviderStatus is a provider as the market sees it.
type ProviderStatus struct {
	Name    string
	Address string
	Region  string
	GPUs    []GPUStatus
	// State is "up", "reclaiming" (a failure is announced for
	// FailsAt) or "down" (back at UpAt).
	State         string
	FailsAt, UpAt time.Time
	Reliability   float64
	Attributes    map[string]string
	BandwidthMbps float64
	LatencyMs     float64
}

// GPUStatus counts one model's GPUs at a provider.
type GPUStatus struct {
	Model       string
	Total, Free int
}

// Providers lists the providers in catalog order.
func (m *Market) Providers() []ProviderStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProviderStatus, 0, len(m.providers))
	for _, p := range m.providers {
		st := ProviderStatus{
			Name: p.spec.Name, Address: p.addr, Region: p.spec.Region, State: p.state.String(),
			Reliability: p.reliability(), BandwidthMbps: p.spec.BandwidthMbps, LatencyMs: p.spec.LatencyMs,
			Attributes: cloneMap(p.spec.Attributes),
		}
		switch p.state {
		case stateReclaiming:
			st.FailsAt = m.timeAt(p.shutdownAt)
		case stateDown:
			st.UpAt = m.timeAt(p.downUntil)
		}
		for _, g := range p.spec.GPUs {
			st.GPUs = append(st.GPUs, GPUStatus{Model: g.Model, Total: g.Count, Free: p.free(g.Model)})
		}
		out = append(out, st)
	}
	return out
}

func (m *Market) timeAt(height int64) time.Time {
	return m.genesis.Add(time.Duration(height) * m.cfg.BlockTime)
}

// Fail makes provider name fail now: its leases close, its workers stop,
// and it is down for its MTTR. Failing a provider that is down is a no-op.
func (m *Market) Fail(name string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	p, ok := m.byName[name]
	if !ok {
		names := make([]string, len(m.providers))
		for i, p := range m.providers {
			names[i] = p.spec.Name
		}
		return fmt.Errorf("%w: no provider %q; providers: %s", lease.ErrNotFound, name, strings.Join(names, ", "))
	}
	if p.state != stateDown {
		m.shutdown(p)
	}
	return nil
}

// failDraw is one block's failure draw for p.
func (m *Market) failDraw(p *provider) {
	u, r := p.failRNG.Float64(), p.failRNG.Float64() // always two draws: the schedule depends on the seed only
	if m.cfg.NoRandomFailures || p.state != stateUp || p.spec.mtbf <= 0 {
		return
	}
	if u >= float64(m.cfg.BlockTime)/float64(p.spec.mtbf) {
		return
	}
	if r < p.spec.Reclaim.Probability && p.spec.notice > 0 {
		m.announce(p)
		return
	}
	m.shutdown(p)
}

// announce starts a reclaim: notices now, shutdown at the deadline.
func (m *Market) announce(p *provider) {
	p.state = stateReclaiming
	p.shutdownAt = m.height + m.blocksFor(p.spec.notice)
	deadline := m.timeAt(p.shutdownAt)
	m.log.Info("provider reclaim announced", "provider", p.spec.Name, "deadline", deadline)
	for _, l := range m.active {
		if l.prov == p {
			m.publish(lease.Event{Kind: lease.EventReclaimNotice, LeaseID: l.lease.ID, Provider: p.addr,
				Reason: fmt.Sprintf("provider %s reclaims its GPUs", p.spec.Name), Deadline: deadline, At: m.now()})
		}
	}
}

// shutdown fails p: its leases close and it goes down for its MTTR.
func (m *Market) shutdown(p *provider) {
	reason := fmt.Sprintf("provider %s failed", p.spec.Name)
	for i := 0; i < len(m.active); {
		if l := m.active[i]; l.prov == p {
			m.closeLease(l, reason) // removes it from m.active
			continue
		}
		i++
	}
	p.state = stateDown
	p.downUntil = m.height + m.blocksFor(p.spec.mttr)
	m.log.Warn("provider failed", "provider", p.spec.Name, "up_at", m.timeAt(p.downUntil))
}

func cloneMap(a map[string]string) map[string]string {
	if a == nil {
		return nil
	}
	b := make(map[string]string, len(a))
	for k, v := range a {
		b[k] = v
	}
	return b
}
