// Package gpu reports the GPUs a worker can offer: what they are (a catalog of
// the models megha knows), how they are doing (NVML inventory, utilisation and
// health through go-nvml), and, where no NVIDIA driver exists, an explicitly
// emulated profile built from the catalog.
//
// Three drivers share one interface:
//
//	Open()           NVML when the library loads, else the fallback (no GPUs, a note)
//	NewNVML(lib)     NVML over any nvml.Interface (go-nvml's dgxa100 mock in tests)
//	NewEmulated(s)   catalog GPUs labelled as emulated, for `megha demo` and lease/sim
package gpu

// GiB is the number of bytes in a gibibyte.
const GiB = 1 << 30

// Model is one GPU model in the catalog.
//
// Performance figures are the vendors' data-sheet peaks for dense math (no
// structured sparsity), so they are upper bounds that real training never
// reaches; they serve as a first relative estimate until a worker measures its
// own throughput. Memory is the nominal capacity; NVML usually reports a little
// less. Prices are indicative ranges seen on decentralized and secondary GPU
// markets in 2025-2026, not quotes: use them for defaults and sanity checks,
// never for billing.
type Model struct {
	// ID is the canonical catalog ID, e.g. "H100-SXM".
	ID string `json:"id"`
	// Name is the display name.
	Name         string `json:"name"`
	Vendor       string `json:"vendor"`
	Architecture string `json:"architecture"`
	// MemoryBytes is the nominal memory capacity (MemoryGiB × GiB).
	MemoryBytes uint64 `json:"memory_bytes"`
	MemoryGiB   int    `json:"memory_gib"`
	MemoryType  string `json:"memory_type"`
	// BF16TFLOPS is the dense BF16 tensor-core peak (FP32 accumulate); 0 where
	// the architecture has no BF16 (Volta, Turing).
	BF16TFLOPS float64 `json:"bf16_tflops"`
	// FP16TFLOPS is the dense FP16 tensor-core peak with FP32 accumulate.
	FP16TFLOPS float64 `json:"fp16_tflops"`
	// FP32TFLOPS is the non-tensor FP32 peak.
	FP32TFLOPS float64 `json:"fp32_tflops"`
	// MemoryBandwidthGBs is the peak memory bandwidth in GB/s.
	MemoryBandwidthGBs float64 `json:"memory_bandwidth_gbs"`
	TDPWatts           int     `json:"tdp_watts"`
	// PriceLowUSD and PriceHighUSD bound the indicative market price in USD
	// per GPU-hour.
	PriceLowUSD  float64 `json:"price_low_usd"`
	PriceHighUSD float64 `json:"price_high_usd"`
}

// catalog is ordered fastest first by EstimateThroughput, ties broken by
// memory bandwidth; TestModelsOrder keeps it so.
//
// Sparse data-sheet figures ("with sparsity") are halved to get the dense ones.
var catalog = []Model{
	{
		// H200 SXM data sheet: FP32 67; BF16/FP16 tensor 1,979 sparse;
		// 141 GB HBM3e at 4.8 TB/s; up to 700 W. (H200 NVL: 1,671 sparse, 600 W.)
		ID: "H200", Name: "NVIDIA H200", Vendor: "NVIDIA", Architecture: "Hopper",
		MemoryBytes: 141 * GiB, MemoryGiB: 141, MemoryType: "HBM3e",
		BF16TFLOPS: 989.5, FP16TFLOPS: 989.5, FP32TFLOPS: 67,
		MemoryBandwidthGBs: 4800, TDPWatts: 700,
		PriceLowUSD: 2.00, PriceHighUSD: 3.50,
	},
	{
		// H100 SXM5 data sheet: FP32 67; BF16/FP16 tensor 1,979 sparse;
		// 80 GB HBM3 at 3.35 TB/s; up to 700 W.
		ID: "H100-SXM", Name: "NVIDIA H100 SXM", Vendor: "NVIDIA", Architecture: "Hopper",
		MemoryBytes: 80 * GiB, MemoryGiB: 80, MemoryType: "HBM3",
		BF16TFLOPS: 989.5, FP16TFLOPS: 989.5, FP32TFLOPS: 67,
		MemoryBandwidthGBs: 3350, TDPWatts: 700,
		PriceLowUSD: 1.50, PriceHighUSD: 2.70,
	},
	{
		// H100 PCIe data sheet: FP32 51; BF16/FP16 tensor 1,513 sparse;
		// 80 GB HBM2e at 2 TB/s; 300-350 W.
		ID: "H100-PCIe", Name: "NVIDIA H100 PCIe", Vendor: "NVIDIA", Architecture: "Hopper",
		MemoryBytes: 80 * GiB, MemoryGiB: 80, MemoryType: "HBM2e",
		BF16TFLOPS: 756.5, FP16TFLOPS: 756.5, FP32TFLOPS: 51,
		MemoryBandwidthGBs: 2000, TDPWatts: 350,
		PriceLowUSD: 1.20, PriceHighUSD: 2.20,
	},
	{
		// L40S data sheet: FP32 91.6; BF16/FP16 tensor 362.05 dense (733 sparse);
		// 48 GB GDDR6 at 864 GB/s; 350 W.
		ID: "L40S", Name: "NVIDIA L40S", Vendor: "NVIDIA", Architecture: "Ada Lovelace",
		MemoryBytes: 48 * GiB, MemoryGiB: 48, MemoryType: "GDDR6",
		BF16TFLOPS: 362.05, FP16TFLOPS: 362.05, FP32TFLOPS: 91.6,
		MemoryBandwidthGBs: 864, TDPWatts: 350,
		PriceLowUSD: 0.50, PriceHighUSD: 1.00,
	},
	{
		// A100 80GB SXM data sheet: FP32 19.5; BF16/FP16 tensor 312 (624 sparse);
		// 80 GB HBM2e at 2,039 GB/s; 400 W. (PCIe: 1,935 GB/s, 300 W.)
		ID: "A100-80GB", Name: "NVIDIA A100 80GB", Vendor: "NVIDIA", Architecture: "Ampere",
		MemoryBytes: 80 * GiB, MemoryGiB: 80, MemoryType: "HBM2e",
		BF16TFLOPS: 312, FP16TFLOPS: 312, FP32TFLOPS: 19.5,
		MemoryBandwidthGBs: 2039, TDPWatts: 400,
		PriceLowUSD: 0.70, PriceHighUSD: 1.40,
	},
	{
		// A100 40GB SXM data sheet: FP32 19.5; BF16/FP16 tensor 312 (624 sparse);
		// 40 GB HBM2 at 1,555 GB/s; 400 W. (PCIe: 250 W.)
		ID: "A100-40GB", Name: "NVIDIA A100 40GB", Vendor: "NVIDIA", Architecture: "Ampere",
		MemoryBytes: 40 * GiB, MemoryGiB: 40, MemoryType: "HBM2",
		BF16TFLOPS: 312, FP16TFLOPS: 312, FP32TFLOPS: 19.5,
		MemoryBandwidthGBs: 1555, TDPWatts: 400,
		PriceLowUSD: 0.45, PriceHighUSD: 1.00,
	},
	{
		// Ada (AD102) whitepaper, RTX 4090: FP32 82.6; BF16/FP16 tensor with
		// FP32 accumulate 165.2 dense (330.3 with FP16 accumulate);
		// 24 GB GDDR6X at 1,008 GB/s; 450 W.
		ID: "RTX4090", Name: "NVIDIA GeForce RTX 4090", Vendor: "NVIDIA", Architecture: "Ada Lovelace",
		MemoryBytes: 24 * GiB, MemoryGiB: 24, MemoryType: "GDDR6X",
		BF16TFLOPS: 165.2, FP16TFLOPS: 165.2, FP32TFLOPS: 82.6,
		MemoryBandwidthGBs: 1008, TDPWatts: 450,
		PriceLowUSD: 0.25, PriceHighUSD: 0.60,
	},
	{
		// RTX A6000 data sheet: FP32 38.7; tensor 309.7 sparse, i.e. 154.8 dense
		// (no FP32-accumulate halving on professional GA102 boards);
		// 48 GB GDDR6 at 768 GB/s; 300 W.
		ID: "A6000", Name: "NVIDIA RTX A6000", Vendor: "NVIDIA", Architecture: "Ampere",
		MemoryBytes: 48 * GiB, MemoryGiB: 48, MemoryType: "GDDR6",
		BF16TFLOPS: 154.8, FP16TFLOPS: 154.8, FP32TFLOPS: 38.7,
		MemoryBandwidthGBs: 768, TDPWatts: 300,
		PriceLowUSD: 0.35, PriceHighUSD: 0.75,
	},
	{
		// V100 SXM2 32GB data sheet: FP32 15.7; FP16 tensor ("deep learning")
		// 125; no BF16; 32 GB HBM2 at 900 GB/s; 300 W. (PCIe: 14 / 112, 250 W.)
		ID: "V100", Name: "NVIDIA Tesla V100 32GB", Vendor: "NVIDIA", Architecture: "Volta",
		MemoryBytes: 32 * GiB, MemoryGiB: 32, MemoryType: "HBM2",
		BF16TFLOPS: 0, FP16TFLOPS: 125, FP32TFLOPS: 15.7,
		MemoryBandwidthGBs: 900, TDPWatts: 300,
		PriceLowUSD: 0.12, PriceHighUSD: 0.40,
	},
	{
		// A10 data sheet: FP32 31.2; BF16/FP16 tensor 125 (250 sparse);
		// 24 GB GDDR6 at 600 GB/s; 150 W.
		ID: "A10", Name: "NVIDIA A10", Vendor: "NVIDIA", Architecture: "Ampere",
		MemoryBytes: 24 * GiB, MemoryGiB: 24, MemoryType: "GDDR6",
		BF16TFLOPS: 125, FP16TFLOPS: 125, FP32TFLOPS: 31.2,
		MemoryBandwidthGBs: 600, TDPWatts: 150,
		PriceLowUSD: 0.25, PriceHighUSD: 0.60,
	},
	{
		// Ampere (GA102) whitepaper, RTX 3090: FP32 35.6; BF16/FP16 tensor with
		// FP32 accumulate 71 dense (142 with FP16 accumulate);
		// 24 GB GDDR6X at 936 GB/s; 350 W.
		ID: "RTX3090", Name: "NVIDIA GeForce RTX 3090", Vendor: "NVIDIA", Architecture: "Ampere",
		MemoryBytes: 24 * GiB, MemoryGiB: 24, MemoryType: "GDDR6X",
		BF16TFLOPS: 71, FP16TFLOPS: 71, FP32TFLOPS: 35.6,
		MemoryBandwidthGBs: 936, TDPWatts: 350,
		PriceLowUSD: 0.12, PriceHighUSD: 0.30,
	},
	{
		// T4 data sheet: FP32 8.1; mixed-precision FP16/FP32 tensor 65; no BF16;
		// 16 GB GDDR6 at 320 GB/s; 70 W.
		ID: "T4", Name: "NVIDIA Tesla T4", Vendor: "NVIDIA", Architecture: "Turing",
		MemoryBytes: 16 * GiB, MemoryGiB: 16, MemoryType: "GDDR6",
		BF16TFLOPS: 0, FP16TFLOPS: 65, FP32TFLOPS: 8.1,
		MemoryBandwidthGBs: 320, TDPWatts: 70,
		PriceLowUSD: 0.08, PriceHighUSD: 0.30,
	},
}

// byID indexes catalog by ID.
var byID = func() map[string]int {
	m := make(map[string]int, len(catalog))
	for i, mod := range catalog {
		m[mod.ID] = i
	}
	return m
}()

// Lookup returns the catalog model with exactly this canonical ID (case
// sensitive; use Normalize for free-form names).
func Lookup(id string) (Model, bool) {
	i, ok := byID[id]
	if !ok {
		return Model{}, false
	}
	return catalog[i], true
}

// Models returns every catalog model, fastest first by EstimateThroughput,
// ties broken by memory bandwidth. The slice is a copy.
func Models() []Model {
	return append([]Model(nil), catalog...)
}

// ModelIDs returns the canonical IDs in the order of Models.
func ModelIDs() []string {
	ids := make([]string, len(catalog))
	for i, m := range catalog {
		ids[i] = m.ID
	}
	return ids
}

// EstimateThroughput returns a first relative throughput figure for m: its
// dense BF16 tensor peak in TFLOPS, else its dense FP16 tensor peak (Volta,
// Turing), else its FP32 peak. Only ratios between models mean anything, and
// only until a worker measures its real throughput: peaks ignore memory
// bandwidth, interconnect and how well a workload fills the tensor cores (by
// peak an L40S ranks above an A100, which it rarely is for training).
func EstimateThroughput(m Model) float64 {
	switch {
	case m.BF16TFLOPS > 0:
		return m.BF16TFLOPS
	case m.FP16TFLOPS > 0:
		return m.FP16TFLOPS
	default:
		return m.FP32TFLOPS
	}
}

// RelativeSpeed is the combined estimated throughput of the given catalog
// models (one entry per GPU) relative to the fastest single catalog GPU,
// or 0 if any model is unknown. Emulated workers throttle their step rate
// by it (capped at 1: the host CPU cannot run faster than it does).
func RelativeSpeed(models []string) float64 {
	if len(models) == 0 {
		return 0
	}
	var sum float64
	for _, id := range models {
		m, ok := Lookup(id)
		if !ok {
			return 0
		}
		sum += EstimateThroughput(m)
	}
	return sum / EstimateThroughput(catalog[0])
}
