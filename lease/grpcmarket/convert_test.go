package grpcmarket

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"cosmossdk.io/math"
	sdk "github.com/cosmos/cosmos-sdk/types"
	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"github.com/megha-ml/megha/lease"
)

func coin(t *testing.T, amount, denom string) sdk.DecCoin {
	t.Helper()
	c, err := lease.Coin(amount, denom)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCoinRoundTripIsExact(t *testing.T) {
	for _, amount := range []string{"0", "1", "2.5", "0.000000000000000001", "0.333333333333333333",
		"123456789012345678901234567890.123456789012345678", "1000000"} {
		c := coin(t, amount, "uusdc")
		w := toCoin(c)
		if w.Amount != c.Amount.String() || w.Denom != "uusdc" {
			t.Fatalf("%s: wire %+v, want amount %s", amount, w, c.Amount.String())
		}
		back, err := fromCoin(w)
		if err != nil {
			t.Fatal(err)
		}
		if !back.Amount.Equal(c.Amount) || back.Denom != c.Denom || back.String() != c.String() {
			t.Fatalf("%s: round trip gave %s, want %s", amount, back, c)
		}
	}
	// Arithmetic results that are not "nice" decimals survive too.
	third := sdk.NewDecCoinFromDec("uusdc", math.LegacyOneDec().QuoInt64(3))
	if back, _ := fromCoin(toCoin(third)); !back.Amount.Equal(third.Amount) {
		t.Fatalf("1/3: got %s", back)
	}
	// An unset coin stays unset, and a negative amount is carried (the
	// market, not the wire, refuses it).
	if w := toCoin(sdk.DecCoin{}); w != nil {
		t.Fatalf("unset coin on the wire: %+v", w)
	}
	if back, err := fromCoin(nil); err != nil || !back.Amount.IsNil() || back.Denom != "" {
		t.Fatalf("nil coin: %v %v", back, err)
	}
	neg := sdk.DecCoin{Denom: "uusdc", Amount: math.LegacyNewDec(-3)}
	if back, _ := fromCoin(toCoin(neg)); !back.Amount.Equal(neg.Amount) {
		t.Fatalf("negative: got %s", back)
	}
	if _, err := fromCoin(&meghav1.DecCoin{Denom: "uusdc", Amount: "1.5e3"}); !errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("bad amount: %v", err)
	}
}

func TestTypesRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC)
	order := lease.Order{ID: "o-1", Tenant: "akash1tenant", GPUModels: []string{"H100-SXM", "A100-80G"},
		GPUsPerWorker: 2, Workers: 3, MinVRAMGiB: 40, Region: "us-east",
		MaxPricePerGPUHour: coin(t, "2.1", "uusdc"), Deposit: coin(t, "5000000", "uusdc"), CreatedAt: at, Open: true}
	gotOrder, err := fromOrder(toOrder(order))
	if err != nil || !reflect.DeepEqual(gotOrder, order) {
		t.Fatalf("order:\n got %+v %v\nwant %+v", gotOrder, err, order)
	}
	// Zero times and empty slices.
	bare := lease.Order{Tenant: "akash1tenant", Workers: 1}
	if got, err := fromOrder(toOrder(bare)); err != nil || !reflect.DeepEqual(got, bare) {
		t.Fatalf("bare order:\n got %+v %v\nwant %+v", got, err, bare)
	}

	bid := lease.Bid{ID: "b-1", OrderID: "o-1", Provider: "akash1prov", ProviderName: "lambda-east", GPUModel: "H100-SXM",
		VRAMGiB: 80, GPUs: 2, Count: 4, PricePerBlock: coin(t, "0.000123456789012345", "uusdc"), Region: "us-east",
		Attributes: map[string]string{"tier": "datacenter", "audited": "true"}, Reliability: 0.995, LatencyMs: 12.5,
		BandwidthMbps: 10000, CreatedAt: at, PubKey: []byte{2, 1, 2, 3}, Signature: []byte{9, 8, 7}}
	if got, err := fromBid(toBid(bid)); err != nil || !reflect.DeepEqual(got, bid) {
		t.Fatalf("bid:\n got %+v %v\nwant %+v", got, err, bid)
	}
	// nil and empty attribute maps both come back nil; the sign bytes
	// (what a signature covers) are the same either way.
	for _, attrs := range []map[string]string{nil, {}} {
		b := bid
		b.Attributes = attrs
		got, err := fromBid(toBid(b))
		if err != nil || got.Attributes != nil || string(lease.BidSignBytes(got)) != string(lease.BidSignBytes(b)) {
			t.Fatalf("attributes %#v: got %#v %v", attrs, got.Attributes, err)
		}
	}

	l := lease.Lease{ID: "l-1", OrderID: "o-1", BidID: "b-1", Provider: "akash1prov", Tenant: "akash1tenant",
		ProviderName: "lambda-east", GPUModel: "H100-SXM", GPUs: 2, VRAMGiB: 80, Region: "us-east",
		PricePerBlock: coin(t, "0.35", "uusdc"), State: lease.LeaseClosed,
		Escrow: lease.Escrow{Deposit: coin(t, "100", "uusdc"), Drawn: coin(t, "3.5", "uusdc"),
			Balance: coin(t, "96.5", "uusdc"), Rate: coin(t, "0.35", "uusdc"), Blocks: 10},
		Endpoints: []string{"pid=123", "127.0.0.1:7200"}, CreatedAt: at, ClosedAt: at.Add(time.Minute), CloseReason: "provider failed"}
	if got, err := fromLease(toLease(l)); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("lease:\n got %+v %v\nwant %+v", got, err, l)
	}
	active := lease.Lease{ID: "l-2", State: lease.LeaseActive} // zero ClosedAt, unset coins
	if got, err := fromLease(toLease(active)); err != nil || !reflect.DeepEqual(got, active) {
		t.Fatalf("active lease:\n got %+v %v\nwant %+v", got, err, active)
	}
	if got, err := fromLeases(toLeases(nil)); err != nil || got != nil {
		t.Fatalf("no leases: %v %v", got, err)
	}

	for _, e := range []lease.Event{
		{Kind: lease.EventLeaseClosed, LeaseID: "l-1", Provider: "akash1prov", Reason: "escrow ran dry", At: at},
		{Kind: lease.EventReclaimNotice, LeaseID: "l-1", Deadline: at.Add(time.Hour), At: at},
		{Kind: lease.EventEscrowLow, LeaseID: "l-1", Balance: coin(t, "0.7", "uusdc"), At: at},
	} {
		if got, err := fromEvent(toEvent(e)); err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("event:\n got %+v %v\nwant %+v", got, err, e)
		}
	}

	p := lease.Params{Denom: "uusdc", BlockTime: 6 * time.Second}
	if got := fromParams(toParams(p)); got != p {
		t.Fatalf("params: %+v", got)
	}
	f := lease.LeaseFilter{Tenant: "akash1tenant", OrderID: "o-1", State: lease.LeaseActive}
	if got := fromFilter(toFilter(f)); got != f {
		t.Fatalf("filter: %+v", got)
	}
	pi := ProviderInfo{Name: "lambda-east", Address: "akash1prov", Region: "us-east",
		GPUs:  []GPUCount{{Model: "H100-SXM", Total: 8, Free: 6}, {Model: "A100-80G", Total: 4, Free: 4}},
		State: "reclaiming", FailsAt: at.Add(time.Hour), Reliability: 0.99,
		Attributes: map[string]string{"tier": "datacenter"}, BandwidthMbps: 25000, LatencyMs: 3}
	if got := fromProvider(toProvider(pi)); !reflect.DeepEqual(got, pi) {
		t.Fatalf("provider:\n got %+v\nwant %+v", got, pi)
	}
	if got := fromProvider(toProvider(ProviderInfo{Name: "bare", State: "down"})); !reflect.DeepEqual(got, ProviderInfo{Name: "bare", State: "down"}) {
		t.Fatalf("bare provider: %+v", got)
	}
	// Times in another zone come back as the same instant, in UTC.
	local := at.In(time.FixedZone("X", 3600))
	if got := fromTime(toTime(local)); !got.Equal(local) {
		t.Fatalf("time: %v != %v", got, local)
	}
}
