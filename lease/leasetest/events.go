package leasetest

import (
	"context"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
)

// eventWait bounds every wait for an event.
const eventWait = 10 * time.Second

// subscribe starts an Events subscriber and returns once it is known to
// be live. The interface cannot say when a subscription starts (over gRPC
// it is a stream being set up), so it opens and closes throwaway leases
// until the subscriber sees one close.
func (s *suite) subscribe(t *testing.T) <-chan lease.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	ch := make(chan lease.Event, 4096)
	errc := make(chan error, 1)
	go func() {
		errc <- s.h.Market.Events(ctx, func(e lease.Event) error {
			select {
			case ch <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(eventWait):
			t.Errorf("Events did not return within %v of its context ending", eventWait)
		}
	})
	deadline := time.Now().Add(eventWait)
	for try := 0; time.Now().Before(deadline); try++ {
		_, l := s.lease1(t, func(o *lease.Order) { o.Workers = 1 })
		if _, err := s.close(t, s.h.Tenant, l.ID); err != nil {
			t.Fatalf("closing throwaway lease %s: %v", l.ID, err)
		}
		wait := time.NewTimer(time.Duration(20<<min(try, 4)) * time.Millisecond)
	drain:
		for {
			select {
			case err := <-errc:
				t.Fatalf("Events returned before the test ended: %v", err)
			case e := <-ch:
				if e.Kind == lease.EventLeaseClosed && e.LeaseID == l.ID {
					wait.Stop()
					return ch
				}
			case <-wait.C:
				break drain
			}
		}
	}
	t.Fatalf("Events subscriber saw no lease close within %v", eventWait)
	return nil
}

// waitEvent returns the first event from ch that match accepts, failing
// the test after eventWait.
func waitEvent(t *testing.T, ch <-chan lease.Event, match func(lease.Event) bool) lease.Event {
	t.Helper()
	deadline := time.NewTimer(eventWait)
	defer deadline.Stop()
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
		case <-deadline.C:
			t.Fatalf("no matching event within %v", eventWait)
			return lease.Event{}
		}
	}
}
