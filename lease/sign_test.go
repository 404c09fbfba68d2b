package lease

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignAndVerify(t *testing.T) {
	kr := NewKeyring()
	tenant, err := GenerateSigner(kr, "tenant", []byte("t"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateSigner(kr, "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tenant.Address(), AddressPrefix+"1") || ValidAddress(tenant.Address()) != nil {
		t.Fatalf("address %q", tenant.Address())
	}
	// Deterministic from the seed, in another keyring too.
	again, err := GenerateSigner(NewKeyring(), "x", []byte("t"))
	if err != nil || again.Address() != tenant.Address() {
		t.Fatalf("same seed gave %s and %s (%v)", tenant.Address(), again.Address(), err)
	}
	price, _ := Coin("2.5", DefaultDenom)
	o := Order{Tenant: tenant.Address(), GPUModels: []string{"H100-SXM"}, GPUsPerWorker: 1, Workers: 3, MaxPricePerGPUHour: price}
	req, err := SignOrder(tenant, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(o.Tenant, OrderSignBytes(req.Order), req.Signed); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	// Tampering with a signed field, signing with another key, or a
	// malformed key is refused.
	tampered := req.Order
	tampered.Workers = 30
	if err := Verify(o.Tenant, OrderSignBytes(tampered), req.Signed); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("tampered order: %v", err)
	}
	forged, _ := SignOrder(other, o)
	if err := Verify(o.Tenant, OrderSignBytes(o), forged.Signed); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("order signed by another key: %v", err)
	}
	if err := Verify(o.Tenant, OrderSignBytes(o), Signed{PubKey: []byte{1, 2}, Signature: req.Signature}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("short public key: %v", err)
	}
	// Bids: attributes in any order sign the same bytes; a changed field
	// breaks the signature.
	b := Bid{ID: "b1", OrderID: "o1", Provider: other.Address(), GPUModel: "H100-SXM", GPUs: 1, Count: 2, PricePerBlock: price,
		Attributes: map[string]string{"tier": "datacenter", "audited": "true"}}
	if err := SignBid(other, &b); err != nil {
		t.Fatal(err)
	}
	if err := Verify(b.Provider, BidSignBytes(b), Signed{PubKey: b.PubKey, Signature: b.Signature}); err != nil {
		t.Fatal(err)
	}
	b.Count = 20
	if err := Verify(b.Provider, BidSignBytes(b), Signed{PubKey: b.PubKey, Signature: b.Signature}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("bid with a changed count: %v", err)
	}
	// An acceptance by someone else is refused.
	acc, _ := SignAccept(other, AcceptRequest{Tenant: tenant.Address(), OrderID: "o1", BidID: "b1", Count: 1})
	if err := Verify(tenant.Address(), AcceptSignBytes(acc), acc.Signed); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("acceptance by another key: %v", err)
	}
	if ValidAddress("cosmos1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnrql8a") == nil || ValidAddress("nonsense") == nil {
		t.Fatal("foreign or malformed address accepted")
	}
}

func TestMoney(t *testing.T) {
	perHour, err := Coin("2100000", DefaultDenom) // $2.10 per GPU-hour in uusdc
	if err != nil {
		t.Fatal(err)
	}
	bt := 6 * time.Second
	if got := BlocksPerHour(bt).String(); got != "600.000000000000000000" {
		t.Fatalf("blocks per hour %s", got)
	}
	pb := PerBlock(perHour, 4, bt) // 4 GPUs: $8.40/h → 14000 uusdc per block
	if pb.Amount.String() != "14000.000000000000000000" {
		t.Fatalf("per block %s", pb)
	}
	if back := PerGPUHour(pb, 4, bt); !back.IsEqual(perHour) {
		t.Fatalf("round trip %s ≠ %s", back, perHour)
	}
	if got := Format(perHour); got != "$2.10" {
		t.Fatalf("Format = %q", got)
	}
	third, _ := Coin("0.333333", DefaultDenom)
	if got := Format(third); got != "$0.000000333333" || ToMicroUSD(third) != 1 {
		t.Fatalf("Format(%s) = %q, micro %d", third, got, ToMicroUSD(third))
	}
	if _, err := Coin("-1", DefaultDenom); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative amount: %v", err)
	}
	if _, err := Coin("1.5", "US$"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad denom: %v", err)
	}
}
