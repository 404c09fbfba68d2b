package sim

import (
	"testing"

	"github.com/megha-ml/megha/lease"
)

// openOrder opens an order for 1 GPU, 2 workers, ≤ $5/GPU-hour, $1
// deposit (edit adjusts it) and returns it with its bids.
func openOrder(t *testing.T, m *Market, tenant *lease.Signer, edit func(*lease.Order)) (lease.Order, []lease.Bid) {
	t.Helper()
	o := lease.Order{Tenant: tenant.Address(), GPUsPerWorker: 1, Workers: 2,
		MaxPricePerGPUHour: lease.FromMicroUSD(5_000_000), Deposit: lease.FromMicroUSD(1_000_000)}
	if edit != nil {
		edit(&o)
	}
	req, err := lease.SignOrder(tenant, o)
	if err != nil {
		t.Fatal(err)
	}
	o, err = m.CreateOrder(t.Context(), req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	bids, err := m.Bids(t.Context(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	return o, bids
}

func accept(t *testing.T, m *Market, tenant *lease.Signer, b lease.Bid, n int) []lease.Lease {
	t.Helper()
	req, _ := lease.SignAccept(tenant, lease.AcceptRequest{Tenant: tenant.Address(), OrderID: b.OrderID, BidID: b.ID, Count: n})
	ls, err := m.Accept(t.Context(), req)
	if err != nil {
		t.Fatalf("Accept(%s, %d): %v", b.ID, n, err)
	}
	return ls
}

func closeLease(t *testing.T, m *Market, tenant *lease.Signer, id string) lease.Lease {
	t.Helper()
	req, _ := lease.SignClose(tenant, lease.CloseRequest{Tenant: tenant.Address(), LeaseID: id}, false)
	l, err := m.Close(t.Context(), req)
	if err != nil {
		t.Fatalf("Close(%s): %v", id, err)
	}
	return l
}
