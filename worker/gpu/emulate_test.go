package gpu

import (
	"errors"
	"strings"
	"testing"
)

func TestParseEmulate(t *testing.T) {
	cases := []struct {
		spec  string
		model string
		count int
	}{
		{"H100x2", "H100-SXM", 2},
		{"h100X2", "H100-SXM", 2},
		{"H100 x 2", "H100-SXM", 2},
		{"H100×2", "H100-SXM", 2},
		{"H100*3", "H100-SXM", 3},
		{"A100-80GBx4", "A100-80GB", 4},
		{"a100-40gbx1", "A100-40GB", 1},
		{"rtx4090", "RTX4090", 1},
		{"RTX4090x2", "RTX4090", 2},
		{"rtx 3090 x 16", "RTX3090", 16},
		{"4090x8", "RTX4090", 8},
		{"L40Sx8", "L40S", 8},
		{"l40s", "L40S", 1},
		{"H100-PCIex2", "H100-PCIe", 2},
		{"t4x4", "T4", 4},
		{" V100 ", "V100", 1},
		{"A6000x2", "A6000", 2},
		{"a10x1", "A10", 1},
	}
	for _, tc := range cases {
		m, n, err := ParseEmulate(tc.spec)
		if err != nil || m.ID != tc.model || n != tc.count {
			t.Errorf("ParseEmulate(%q) = %s, %d, %v; want %s, %d", tc.spec, m.ID, n, err, tc.model, tc.count)
		}
	}
}

func TestParseEmulateErrors(t *testing.T) {
	models := strings.Join(ModelIDs(), ", ")
	cases := []struct{ spec, want string }{
		{"", "gpu: empty emulation spec; want MODEL or MODELxCOUNT such as H100x2 (models: " + models + ")"},
		{"B200x2", `gpu: emulation spec "B200x2": unknown GPU model "B200"; valid models: ` + models},
		{"banana", `gpu: emulation spec "banana": unknown GPU model "banana"; valid models: ` + models},
		{"H100x2x3", `gpu: emulation spec "H100x2x3": unknown GPU model "H100x2"; valid models: ` + models},
		{"NVIDIA H100 80GB HBM3x2", `unknown GPU model "NVIDIA H100 80GB HBM3"`},
		{"H100x0", `gpu: emulation spec "H100x0": GPU count 0 is out of range 1..16`},
		{"H100x17", `gpu: emulation spec "H100x17": GPU count 17 is out of range 1..16`},
		{"H100x99999999999999999999", `GPU count 99999999999999999999 is out of range 1..16`},
		{"H100x", `gpu: emulation spec "H100x": GPU count "" is not a whole number from 1 to 16`},
		{"H100x-1", `GPU count "-1" is not a whole number from 1 to 16`},
		{"H100x+2", `GPU count "+2" is not a whole number from 1 to 16`},
		{"H100xtwo", `GPU count "two" is not a whole number from 1 to 16`},
		{"x2", `unknown GPU model "x2"`},
	}
	for _, tc := range cases {
		m, n, err := ParseEmulate(tc.spec)
		if err == nil {
			t.Errorf("ParseEmulate(%q) = %s, %d, nil; want error %q", tc.spec, m.ID, n, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseEmulate(%q) error\n  %s\nwant it to contain\n  %s", tc.spec, err, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "gpu: ") {
			t.Errorf("ParseEmulate(%q) error %q lacks the gpu: prefix", tc.spec, err)
		}
	}
}

func TestNewEmulated(t *testing.T) {
	d, err := NewEmulated("H100x2")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.Source != SourceEmulated || !strings.Contains(inv.Note, "emulated GPUs, not real hardware: 2 × NVIDIA H100 SXM") {
		t.Errorf("source %q note %q", inv.Source, inv.Note)
	}
	if len(inv.Devices) != 2 {
		t.Fatalf("got %d devices, want 2", len(inv.Devices))
	}
	for i, dev := range inv.Devices {
		if want := []string{"EMU-H100-SXM-0", "EMU-H100-SXM-1"}[i]; dev.UUID != want {
			t.Errorf("device %d UUID %q, want %q", i, dev.UUID, want)
		}
		if dev.Index != i || !dev.Emulated || !dev.Healthy || dev.Model != "H100-SXM" ||
			dev.MemoryBytes != 80*GiB || dev.Name != "NVIDIA H100 SXM (emulated)" {
			t.Errorf("device %d = %+v", i, dev)
		}
	}

	// Callers may change what they get without changing the driver.
	inv.Devices[0].Healthy = false
	stats, err := d.Stats()
	if err != nil || len(stats) != 2 || !stats[0].Healthy {
		t.Errorf("Stats after caller mutation = %+v, %v", stats, err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := d.Inventory(); !errors.Is(err, ErrClosed) {
		t.Errorf("Inventory after Close: %v, want ErrClosed", err)
	}
	if _, err := d.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v, want ErrClosed", err)
	}
}

func TestNewEmulatedInstance(t *testing.T) {
	d, err := NewEmulatedInstance("rtx4090x2", "provider 7/worker-1")
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := d.Inventory()
	if got := inv.Devices[1].UUID; got != "EMU-provider7worker-1-RTX4090-1" {
		t.Errorf("UUID %q", got)
	}
}

func TestNewEmulatedBadSpec(t *testing.T) {
	d, err := NewEmulated("Z80x2")
	if err == nil || d != nil {
		t.Fatalf("NewEmulated(Z80x2) = %v, %v; want an error", d, err)
	}
}

func TestFallback(t *testing.T) {
	f := NewFallback("no GPUs here")
	var d Driver = f
	inv, err := d.Inventory()
	if err != nil || inv.Source != SourceNone || inv.Note != "no GPUs here" || len(inv.Devices) != 0 {
		t.Errorf("Inventory() = %+v, %v", inv, err)
	}
	if ds, err := d.Stats(); err != nil || len(ds) != 0 {
		t.Errorf("Stats() = %v, %v", ds, err)
	}
	if f.Note() != "no GPUs here" {
		t.Errorf("Note() = %q", f.Note())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Inventory(); !errors.Is(err, ErrClosed) {
		t.Errorf("Inventory after Close: %v", err)
	}
}

func TestIsCriticalXID(t *testing.T) {
	for xid, want := range map[uint64]bool{13: false, 31: false, 43: false, 45: false, 68: false,
		109: false, 48: true, 63: true, 74: true, 79: true, 94: true, 95: true, 119: true} {
		if got := IsCriticalXID(xid); got != want {
			t.Errorf("IsCriticalXID(%d) = %v, want %v", xid, got, want)
		}
	}
}
