package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/megha-ml/megha/lease"
	"github.com/megha-ml/megha/lease/leasetest"
)

// newTestMarket is a deterministic market: manual blocks, no random
// failures, 1 s blocks.
func newTestMarket(t testing.TB, edit func(*Config)) *Market {
	t.Helper()
	cfg := Config{Seed: 42, BlockTime: time.Second, ManualBlocks: true, NoRandomFailures: true}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// signers returns a tenant and a stranger with keys from fixed seeds.
func signers(t testing.TB) (tenant, stranger *lease.Signer) {
	t.Helper()
	kr := lease.NewKeyring()
	var err error
	if tenant, err = lease.GenerateSigner(kr, "tenant", []byte("tenant")); err != nil {
		t.Fatal(err)
	}
	if stranger, err = lease.GenerateSigner(kr, "stranger", []byte("stranger")); err != nil {
		t.Fatal(err)
	}
	return tenant, stranger
}

func TestConformance(t *testing.T) {
	leasetest.Run(t, func(t *testing.T) leasetest.Harness {
		m := newTestMarket(t, nil)
		tenant, stranger := signers(t)
		return leasetest.Harness{
			Market: m, Tenant: tenant, Stranger: stranger,
			Advance: func(t *testing.T, n int) { m.AdvanceBlocks(n) },
			Fail: func(t *testing.T, p string) {
				if err := m.Fail(p); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func TestDefaultCatalogOffersEveryTier(t *testing.T) {
	c := DefaultCatalog()
	if n := len(c.Providers); n < 10 || n > 16 {
		t.Errorf("default catalog has %d providers, want about a dozen", n)
	}
	models := map[string]bool{}
	tiers := map[string]bool{}
	for _, p := range c.Providers {
		tiers[p.Attributes["tier"]] = true
		for _, g := range p.GPUs {
			models[g.Model] = true
		}
	}
	for _, want := range []string{"H100-SXM", "A100-80GB", "L40S", "RTX4090", "RTX3090", "A6000"} {
		if !models[want] {
			t.Errorf("default catalog has no %s", want)
		}
	}
	if !tiers["datacenter"] || !tiers["consumer"] {
		t.Errorf("default catalog tiers: %v, want datacenter and consumer", tiers)
	}
}

func TestUnknownGPUModelListsKnownOnes(t *testing.T) {
	m := newTestMarket(t, nil)
	tenant, _ := signers(t)
	req, _ := lease.SignOrder(tenant, lease.Order{Tenant: tenant.Address(), GPUModels: []string{"h100"}, GPUsPerWorker: 1, Workers: 1,
		MaxPricePerGPUHour: lease.FromMicroUSD(5e6), Deposit: lease.FromMicroUSD(1e6)})
	_, err := m.CreateOrder(context.Background(), req)
	if !errors.Is(err, lease.ErrNoSuchGPUType) || !strings.Contains(err.Error(), "H100-SXM") || !strings.Contains(err.Error(), `"h100"`) {
		t.Errorf("got %v, want ErrNoSuchGPUType naming h100 and listing H100-SXM", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*lease.Order)
		want string
	}{
		{"region", func(o *lease.Order) { o.Region = "moon" }, "regions:"},
		{"too many GPUs on one machine", func(o *lease.Order) { o.GPUsPerWorker = 16 }, "16 × any GPU model"},
		{"VRAM", func(o *lease.Order) { o.MinVRAMGiB = 200 }, "200 GiB"},
	} {
		o := lease.Order{Tenant: tenant.Address(), GPUsPerWorker: 1, Workers: 1, MaxPricePerGPUHour: lease.FromMicroUSD(5e6), Deposit: lease.FromMicroUSD(1e6)}
		tc.edit(&o)
		req, _ := lease.SignOrder(tenant, o)
		_, err := m.CreateOrder(context.Background(), req)
		if !errors.Is(err, lease.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
