package sim

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"cosmossdk.io/math"
	"github.com/megha-ml/megha/lease"
	"pgregory.net/rapid"
)

// propCatalog is small and failure-prone, so that random call sequences
// run into contention, exhausted escrow, reclaims and failures.
const propCatalog = `
providers:
  - name: big
    region: us-east
    gpus: [{model: H100-SXM, count: 4}, {model: RTX4090, count: 3}]
    pricing: {position: 0.5, spread: 0.5}
    mtbf: 200s
    mttr: 20s
    reclaim: {probability: 0.5, notice: 5s}
  - name: small
    region: eu-central
    gpus: [{model: RTX4090, count: 2}]
    pricing: {position: 0.1, spread: 0.1}
    mtbf: 100s
    mttr: 10s
  - name: steady
    region: us-west
    gpus: [{model: A100-80GB, count: 2}]
    pricing: {position: 0.9, spread: 0}
`

// TestProperties runs random sequences of market calls and checks the
// market's invariants after each: escrow never negative and consistent,
// no GPU in two leases, no lease priced above its order's maximum, no bid
// accepted beyond its count, no order over-filled, and money conserved.
func TestProperties(t *testing.T) {
	cat, err := ParseCatalog([]byte(propCatalog))
	if err != nil {
		t.Fatal(err)
	}
	kr := lease.NewKeyring()
	var tenants []*lease.Signer
	for i := range 2 {
		s, err := lease.GenerateSigner(kr, fmt.Sprint("t", i), fmt.Append(nil, "prop-tenant-", i))
		if err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, s)
	}
	models := []string{"H100-SXM", "RTX4090", "A100-80GB"}
	ctx := context.Background()

	rapid.Check(t, func(rt *rapid.T) {
		funds := lease.FromMicroUSD(rapid.Int64Range(1, 50).Draw(rt, "funds_usd") * lease.MicrosPerUnit)
		m, err := New(Config{Catalog: cat, Seed: rapid.Uint64Range(0, 3).Draw(rt, "seed"), BlockTime: time.Second,
			ManualBlocks: true, TenantFunds: funds, EscrowLowBlocks: 3})
		if err != nil {
			rt.Fatal(err)
		}
		defer m.Shutdown()
		offered := map[string]int{} // bid ID → count when first listed
		var orders []lease.Order
		var leaseIDs []string
		pick := func(label string, n int) int { return rapid.IntRange(0, n-1).Draw(rt, label) }

		rt.Repeat(map[string]func(*rapid.T){
			"order": func(rt *rapid.T) {
				tn := tenants[pick("tenant", len(tenants))]
				o := lease.Order{Tenant: tn.Address(), GPUsPerWorker: rapid.IntRange(1, 3).Draw(rt, "gpus"),
					Workers:            rapid.IntRange(1, 4).Draw(rt, "workers"),
					MaxPricePerGPUHour: lease.FromMicroUSD(rapid.Int64Range(50_000, 4_000_000).Draw(rt, "max")),
					Deposit:            lease.FromMicroUSD(rapid.Int64Range(1, 5_000).Draw(rt, "deposit"))}
				if rapid.Bool().Draw(rt, "one_model") {
					o.GPUModels = []string{models[pick("model", len(models))]}
				}
				req, _ := lease.SignOrder(tn, o)
				got, err := m.CreateOrder(ctx, req)
				if err != nil {
					if !errors.Is(err, lease.ErrInvalid) {
						rt.Fatalf("CreateOrder: %v", err)
					}
					return
				}
				orders = append(orders, got)
			},
			"accept": func(rt *rapid.T) {
				if len(orders) == 0 {
					rt.Skip("no orders")
				}
				o := orders[pick("order", len(orders))]
				bids, err := m.Bids(ctx, o.ID)
				if err != nil {
					rt.Fatal(err)
				}
				if len(bids) == 0 {
					rt.Skip("no bids")
				}
				for _, b := range bids {
					if _, ok := offered[b.ID]; !ok {
						offered[b.ID] = b.Count
					}
				}
				b := bids[pick("bid", len(bids))]
				tn := tenants[0]
				if tn.Address() != o.Tenant {
					tn = tenants[1]
				}
				req, _ := lease.SignAccept(tn, lease.AcceptRequest{Tenant: o.Tenant, OrderID: o.ID, BidID: b.ID,
					Count: rapid.IntRange(1, b.Count+1).Draw(rt, "count")})
				ls, err := m.Accept(ctx, req)
				switch {
				case err == nil:
					for _, l := range ls {
						leaseIDs = append(leaseIDs, l.ID)
					}
				case req.Count > b.Count && !errors.Is(err, lease.ErrBidExhausted):
					rt.Fatalf("accepting %d of a bid offering %d: %v, want ErrBidExhausted", req.Count, b.Count, err)
				case !errors.Is(err, lease.ErrInsufficient) && !errors.Is(err, lease.ErrBidExhausted):
					rt.Fatalf("Accept: %v", err)
				}
			},
			"close": func(rt *rapid.T) {
				if len(leaseIDs) == 0 {
					rt.Skip("no leases")
				}
				l, _ := m.Lease(ctx, leaseIDs[pick("lease", len(leaseIDs))])
				tn := tenants[0]
				if tn.Address() != l.Tenant {
					tn = tenants[1]
				}
				req, _ := lease.SignClose(tn, lease.CloseRequest{Tenant: l.Tenant, LeaseID: l.ID}, false)
				if _, err := m.Close(ctx, req); err != nil && (l.State == lease.LeaseActive || !errors.Is(err, lease.ErrLeaseClosed)) {
					rt.Fatalf("Close of %v lease: %v", l.State, err)
				}
			},
			"deposit": func(rt *rapid.T) {
				if len(leaseIDs) == 0 {
					rt.Skip("no leases")
				}
				l, _ := m.Lease(ctx, leaseIDs[pick("lease", len(leaseIDs))])
				tn := tenants[0]
				if tn.Address() != l.Tenant {
					tn = tenants[1]
				}
				req, _ := lease.SignDeposit(tn, lease.DepositRequest{Tenant: l.Tenant, LeaseID: l.ID,
					Amount: lease.FromMicroUSD(rapid.Int64Range(1, 100_000_000).Draw(rt, "amount"))})
				_, err := m.Deposit(ctx, req)
				if err != nil && !errors.Is(err, lease.ErrLeaseClosed) && !errors.Is(err, lease.ErrInsufficient) {
					rt.Fatalf("Deposit: %v", err)
				}
			},
			"advance": func(rt *rapid.T) { m.AdvanceBlocks(rapid.IntRange(1, 40).Draw(rt, "blocks")) },
			"fail": func(rt *rapid.T) {
				if err := m.Fail(cat.Providers[pick("provider", len(cat.Providers))].Name); err != nil {
					rt.Fatal(err)
				}
			},
			"": func(rt *rapid.T) { checkInvariants(rt, m, funds.Amount, offered) },
		})
	})
}

func checkInvariants(rt *rapid.T, m *Market, funds math.LegacyDec, offered map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := math.LegacyZeroDec()
	for _, b := range m.accounts {
		if b.IsNegative() {
			rt.Fatalf("an account is negative: %s", b)
		}
		total = total.Add(b)
	}
	perBid := map[string]int{}
	perOrder := map[string]int{}
	for _, ls := range m.leaseList {
		l := ls.lease
		e := l.Escrow
		if e.Balance.Amount.IsNegative() {
			rt.Fatalf("lease %s: escrow balance %s is negative", l.ID, e.Balance)
		}
		if !e.Balance.Amount.Equal(e.Deposit.Amount.Sub(e.Drawn.Amount)) || !e.Drawn.Amount.Equal(e.Rate.Amount.MulInt64(e.Blocks)) {
			rt.Fatalf("lease %s: escrow %+v is not consistent", l.ID, e)
		}
		o := m.orders[l.OrderID].order
		if cap := lease.PerBlock(o.MaxPricePerGPUHour, l.GPUs, m.cfg.BlockTime); l.PricePerBlock.Amount.GT(cap.Amount) {
			rt.Fatalf("lease %s at %s per block, above its order's max %s", l.ID, l.PricePerBlock, cap)
		}
		perBid[l.BidID]++
		perOrder[l.OrderID]++
		if l.State == lease.LeaseActive {
			total = total.Add(e.Balance.Amount)
			for _, i := range ls.gpus {
				if ls.prov.slots[l.GPUModel][i] != l.ID {
					rt.Fatalf("lease %s: GPU %s#%d of %s is held by %q", l.ID, l.GPUModel, i, ls.prov.spec.Name, ls.prov.slots[l.GPUModel][i])
				}
			}
			if len(ls.gpus) != l.GPUs {
				rt.Fatalf("lease %s holds %d GPUs, wants %d", l.ID, len(ls.gpus), l.GPUs)
			}
		}
	}
	for _, p := range m.providers {
		for model, s := range p.slots {
			for i, id := range s {
				if id != "" && (m.leases[id] == nil || m.leases[id].lease.State != lease.LeaseActive) {
					rt.Fatalf("%s GPU %s#%d is held by %s, which is not active", p.spec.Name, model, i, id)
				}
			}
		}
	}
	for id, n := range perBid {
		if n > offered[id] {
			rt.Fatalf("bid %s offered %d leases, %d accepted", id, offered[id], n)
		}
	}
	for id, n := range perOrder {
		if w := m.orders[id].order.Workers; n > w {
			rt.Fatalf("order %s wants %d workers, has %d leases", id, w, n)
		}
	}
	if want := funds.MulInt64(int64(len(m.accounts) - countEarners(m))); !total.Equal(want) {
		rt.Fatalf("money not conserved: accounts + escrows = %s, tenants were given %s", total, want)
	}
}

// countEarners counts provider accounts.
func countEarners(m *Market) int {
	n := 0
	for _, p := range m.providers {
		if _, ok := m.accounts[p.addr]; ok {
			n++
		}
	}
	return n
}
