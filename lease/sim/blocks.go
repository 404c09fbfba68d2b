package sim

import (
	"context"
	"fmt"

	"github.com/megha-ml/megha/lease"
)

// AdvanceBlocks makes n blocks. Each block: every active lease pays one
// block from its escrow (closing when it cannot), then each provider's
// failure cycle moves (announced failures strike, failed providers come
// back, new failures are drawn), then providers with freed GPUs bid on
// open orders.
func (m *Market) AdvanceBlocks(n int) {
	for range n {
		if m.lock() != nil {
			return
		}
		m.block()
		m.mu.Unlock()
	}
}

func (m *Market) block() {
	m.height++
	for i := 0; i < len(m.active); {
		ls := m.active[i]
		m.draw(ls)
		if ls.lease.State == lease.LeaseActive {
			i++
		}
	}
	for _, p := range m.providers {
		p.allBlocks++
		switch p.state {
		case stateUp:
			p.upBlocks++
		case stateReclaiming:
			p.upBlocks++
			if m.height >= p.shutdownAt {
				m.shutdown(p)
			}
		case stateDown:
			if m.height >= p.downUntil {
				p.state = stateUp
				m.rebid = true
				m.log.Info("provider back", "provider", p.spec.Name)
			}
		}
		m.failDraw(p)
	}
	if m.rebid {
		m.rebid = false
		for _, os := range m.open {
			for _, p := range m.providers {
				m.offer(os, p)
			}
		}
	}
}

// subscriber is one Events call.
type subscriber struct {
	ch     chan lease.Event
	lagged chan struct{} // closed when it fell a full buffer behind
}

// publish hands ev to every subscriber without blocking; one whose buffer
// is full is disconnected.
func (m *Market) publish(ev lease.Event) {
	for s := range m.subs {
		select {
		case s.ch <- ev:
		default:
			delete(m.subs, s)
			close(s.lagged)
			m.dropped++
			m.log.Warn("event subscriber fell behind; disconnected", "buffer", m.cfg.EventBuffer)
		}
	}
}

// Events streams lease news to fn until ctx ends, fn fails, the market
// closes, or the subscriber falls Config.EventBuffer events behind (an error
// wrapping lease.ErrUnavailable: resubscribe and reconcile with Leases).
// The subscription is in place when Events is entered: events from then
// on are delivered.
func (m *Market) Events(ctx context.Context, fn func(lease.Event) error) error {
	s := &subscriber{ch: make(chan lease.Event, m.cfg.EventBuffer), lagged: make(chan struct{})}
	if err := m.lock(); err != nil {
		return err
	}
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs, s)
		m.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return errClosed
		case <-s.lagged:
			return fmt.Errorf("%w: event subscriber fell %d events behind; resubscribe and reconcile with Leases", lease.ErrUnavailable, m.cfg.EventBuffer)
		case ev := <-s.ch:
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}

// Subscribers is the number of Events calls in progress.
func (m *Market) Subscribers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs)
}
