package gpu

import "testing"

func TestNormalize(t *testing.T) {
	cases := []struct{ name, want string }{
		// Every catalog ID and display name.
		{"H200", "H200"}, {"H100-SXM", "H100-SXM"}, {"H100-PCIe", "H100-PCIe"},
		{"A100-80GB", "A100-80GB"}, {"A100-40GB", "A100-40GB"}, {"L40S", "L40S"},
		{"A10", "A10"}, {"A6000", "A6000"}, {"RTX4090", "RTX4090"}, {"RTX3090", "RTX3090"},
		{"V100", "V100"}, {"T4", "T4"},
		// NVML names.
		{"NVIDIA H200", "H200"},
		{"NVIDIA H200 NVL", "H200"},
		{"NVIDIA H100 80GB HBM3", "H100-SXM"},
		{"NVIDIA H100 PCIe", "H100-PCIe"},
		{"NVIDIA H100 NVL", "H100-PCIe"},
		{"NVIDIA A100-SXM4-80GB", "A100-80GB"},
		{"NVIDIA A100 80GB PCIe", "A100-80GB"},
		{"NVIDIA A100-SXM4-40GB", "A100-40GB"},
		{"NVIDIA A100-PCIE-40GB", "A100-40GB"},
		{"A100-PCIE-40GB", "A100-40GB"},
		{"Mock NVIDIA A100-SXM4-40GB", "A100-40GB"},
		{"NVIDIA L40S", "L40S"},
		{"NVIDIA A10", "A10"},
		{"NVIDIA A10G", "A10"},
		{"NVIDIA RTX A6000", "A6000"},
		{"NVIDIA GeForce RTX 4090", "RTX4090"},
		{"NVIDIA GeForce RTX 3090", "RTX3090"},
		{"Tesla V100-SXM2-32GB", "V100"},
		{"Tesla V100-PCIE-16GB", "V100"},
		{"Tesla T4", "T4"},
		// User spellings.
		{"h100", "H100-SXM"}, {"H100 SXM", "H100-SXM"}, {"h100 pcie", "H100-PCIe"},
		{"a100", "A100-80GB"}, {"a100-80gb", "A100-80GB"}, {"A100 40GB", "A100-40GB"},
		{"a100 40 GB", "A100-40GB"}, {"rtx 4090", "RTX4090"}, {"4090", "RTX4090"},
		{"rtx3090", "RTX3090"}, {"3090", "RTX3090"}, {"l40s", "L40S"}, {"t4", "T4"},
		{"  nvidia   h200  ", "H200"}, {"rtx a6000", "A6000"},
	}
	for _, tc := range cases {
		m, ok := Normalize(tc.name)
		if !ok || m.ID != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.name, m.ID, ok, tc.want)
		}
	}
}

func TestNormalizeUnknown(t *testing.T) {
	for _, name := range []string{
		"", "   ", "NVIDIA", "Mock NVIDIA", "banana", "NVIDIA L40", "NVIDIA L4",
		"NVIDIA GH200 480GB", "NVIDIA RTX 6000 Ada Generation", "NVIDIA RTX A1000",
		"NVIDIA A800-SXM4-80GB", "NVIDIA H800", "NVIDIA GeForce RTX 4080",
		"AMD Instinct MI300X", "Tesla P100-PCIE-16GB", "A1000",
	} {
		if m, ok := Normalize(name); ok {
			t.Errorf("Normalize(%q) = %s, want no match", name, m.ID)
		}
	}
}

func TestNormalizeWithMemory(t *testing.T) {
	cases := []struct {
		name string
		mem  uint64
		want string
	}{
		{"NVIDIA A100-SXM4-40GB", 40 * GiB, "A100-40GB"},
		{"Mock NVIDIA A100-SXM4-40GB", 42949672960, "A100-40GB"},
		{"NVIDIA A100-SXM4-80GB", 81920 << 20, "A100-80GB"},
		// Memory decides when the name does not say...
		{"A100", 40 * GiB, "A100-40GB"},
		{"A100", 79 * GiB, "A100-80GB"},
		// ...and wins when it contradicts the name: it was measured.
		{"NVIDIA A100-SXM4-40GB", 80 * GiB, "A100-80GB"},
		// Memory does not move other models.
		{"NVIDIA H100 80GB HBM3", 40 * GiB, "H100-SXM"},
		{"Tesla V100-PCIE-16GB", 16 * GiB, "V100"},
		{"A100", 0, "A100-80GB"},
	}
	for _, tc := range cases {
		m, ok := NormalizeWithMemory(tc.name, tc.mem)
		if !ok || m.ID != tc.want {
			t.Errorf("NormalizeWithMemory(%q, %d) = %q, %v; want %q", tc.name, tc.mem, m.ID, ok, tc.want)
		}
	}
}

func TestNormalizeRoundTripsDisplayNames(t *testing.T) {
	for _, m := range Models() {
		got, ok := Normalize(m.Name)
		if !ok || got.ID != m.ID {
			t.Errorf("Normalize(%q) = %q, %v; want %q", m.Name, got.ID, ok, m.ID)
		}
		got, ok = Normalize(m.Name + " (emulated)")
		if !ok || got.ID != m.ID {
			t.Errorf("Normalize(%q) = %q, %v; want %q", m.Name+" (emulated)", got.ID, ok, m.ID)
		}
	}
}
