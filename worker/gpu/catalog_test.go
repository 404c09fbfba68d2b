package gpu

import (
	"slices"
	"testing"
)

func TestCatalogIDs(t *testing.T) {
	want := []string{"H200", "H100-SXM", "H100-PCIe", "A100-80GB", "A100-40GB", "L40S",
		"A10", "A6000", "RTX4090", "RTX3090", "V100", "T4"}
	got := ModelIDs()
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Errorf("catalog lacks %s", id)
		}
		if m, ok := Lookup(id); !ok || m.ID != id {
			t.Errorf("Lookup(%q) = %+v, %v", id, m, ok)
		}
	}
	if len(got) != len(want) {
		t.Errorf("catalog has %d models %v, want %d", len(got), got, len(want))
	}
}

func TestCatalogSanity(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Models() {
		if seen[m.ID] {
			t.Errorf("%s listed twice", m.ID)
		}
		seen[m.ID] = true
		if m.Name == "" || m.Vendor == "" || m.Architecture == "" || m.MemoryType == "" {
			t.Errorf("%s: missing name, vendor, architecture or memory type: %+v", m.ID, m)
		}
		if m.MemoryGiB <= 0 || m.MemoryBytes != uint64(m.MemoryGiB)*GiB {
			t.Errorf("%s: memory %d bytes vs %d GiB", m.ID, m.MemoryBytes, m.MemoryGiB)
		}
		if m.FP32TFLOPS <= 0 || m.FP16TFLOPS <= 0 || m.BF16TFLOPS < 0 {
			t.Errorf("%s: FP32 %g FP16 %g BF16 %g", m.ID, m.FP32TFLOPS, m.FP16TFLOPS, m.BF16TFLOPS)
		}
		if m.BF16TFLOPS > 0 && m.BF16TFLOPS < m.FP32TFLOPS {
			t.Errorf("%s: BF16 tensor %g below FP32 %g", m.ID, m.BF16TFLOPS, m.FP32TFLOPS)
		}
		if EstimateThroughput(m) <= 0 {
			t.Errorf("%s: throughput estimate %g", m.ID, EstimateThroughput(m))
		}
		if m.MemoryBandwidthGBs <= 0 || m.TDPWatts <= 0 {
			t.Errorf("%s: bandwidth %g GB/s, TDP %d W", m.ID, m.MemoryBandwidthGBs, m.TDPWatts)
		}
		if m.PriceLowUSD <= 0 || m.PriceLowUSD >= m.PriceHighUSD {
			t.Errorf("%s: price range %g..%g", m.ID, m.PriceLowUSD, m.PriceHighUSD)
		}
	}
}

func TestModelsOrder(t *testing.T) {
	ms := Models()
	for i := 1; i < len(ms); i++ {
		a, b := ms[i-1], ms[i]
		ea, eb := EstimateThroughput(a), EstimateThroughput(b)
		if ea < eb || ea == eb && a.MemoryBandwidthGBs < b.MemoryBandwidthGBs {
			t.Errorf("%s (%g, %g GB/s) listed before faster %s (%g, %g GB/s)",
				a.ID, ea, a.MemoryBandwidthGBs, b.ID, eb, b.MemoryBandwidthGBs)
		}
	}
	if ms[0].ID != "H200" || ms[len(ms)-1].ID != "T4" {
		t.Errorf("order %v, want H200 first and T4 last", ModelIDs())
	}
}

func TestModelsIsACopy(t *testing.T) {
	ms := Models()
	ms[0].ID = "changed"
	if Models()[0].ID == "changed" {
		t.Fatal("Models returned the catalog itself")
	}
}

func TestEstimateThroughputFallbacks(t *testing.T) {
	h100, _ := Lookup("H100-SXM")
	v100, _ := Lookup("V100")
	for _, tc := range []struct {
		m    Model
		want float64
	}{
		{h100, h100.BF16TFLOPS},
		{v100, v100.FP16TFLOPS},
		{Model{FP32TFLOPS: 10}, 10},
	} {
		if got := EstimateThroughput(tc.m); got != tc.want {
			t.Errorf("EstimateThroughput(%s) = %g, want %g", tc.m.ID, got, tc.want)
		}
	}
}

func TestLookupIsExact(t *testing.T) {
	for _, id := range []string{"h100-sxm", "H100", "", "A100"} {
		if m, ok := Lookup(id); ok {
			t.Errorf("Lookup(%q) = %s, want no match (Lookup takes canonical IDs only)", id, m.ID)
		}
	}
}
