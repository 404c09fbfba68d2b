//go:build linux && cgo

package gpu

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// TestOpenWithoutDriver runs Open on the real machine. Where no NVIDIA
// driver is installed (CI, laptops) it must hand back a working fallback
// with the plain note; where one is, it must hand back NVML.
func TestOpenWithoutDriver(t *testing.T) {
	probe := nvml.New()
	ret := probe.Init()
	if ret == nvml.SUCCESS {
		probe.Shutdown()
	}

	d, err := Open()
	if err != nil || d == nil {
		t.Fatalf("Open() = %v, %v; want a driver and no error", d, err)
	}
	defer d.Close()
	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nvml Init here: %v; Open gave source %q, note %q", ret, inv.Source, inv.Note)
	switch ret {
	case nvml.SUCCESS:
		if inv.Source != SourceNVML {
			t.Errorf("NVML initialises here but Open gave source %q (%s)", inv.Source, inv.Note)
		}
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		want := "NVML library not found: no NVIDIA driver on this machine; reporting no GPUs"
		if inv.Source != SourceNone || len(inv.Devices) != 0 || inv.Note != want {
			t.Errorf("Inventory() = %+v; want no devices, source none, note %q", inv, want)
		}
	default:
		if inv.Source != SourceNone || len(inv.Devices) != 0 || !strings.HasSuffix(inv.Note, "reporting no GPUs") {
			t.Errorf("Init returned %v but Inventory() = %+v", ret, inv)
		}
	}
	if ds, err := d.Stats(); err != nil || (inv.Source == SourceNone && len(ds) != 0) {
		t.Errorf("Stats() = %v, %v", ds, err)
	}
}

func TestOpenLibraryInitFailures(t *testing.T) {
	cases := []struct {
		ret  nvml.Return
		note string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "NVML library not found: no NVIDIA driver on this machine; reporting no GPUs"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "NVIDIA driver installed but not loaded (NVML ERROR_DRIVER_NOT_LOADED); reporting no GPUs"},
		{nvml.ERROR_NO_PERMISSION, "no permission to use the NVIDIA driver (NVML ERROR_NO_PERMISSION); reporting no GPUs"},
		{nvml.ERROR_LIB_RM_VERSION_MISMATCH, "NVML library and NVIDIA kernel driver versions differ; reboot or reinstall the driver; reporting no GPUs"},
		{nvml.ERROR_UNKNOWN, "NVML failed to initialise (nvml Init: " + nvml.ErrorString(nvml.ERROR_UNKNOWN) + " (code 999)); reporting no GPUs"},
	}
	for _, tc := range cases {
		s := dgxa100.New()
		s.InitFunc = func() nvml.Return { return tc.ret }
		d, err := openLibrary(s)
		if err != nil {
			t.Fatalf("%v: %v", tc.ret, err)
		}
		inv, err := d.Inventory()
		if err != nil || inv.Source != SourceNone || len(inv.Devices) != 0 || inv.Note != tc.note {
			t.Errorf("Init %v: Inventory() = %+v, %v; want note %q", tc.ret, inv, err, tc.note)
		}
		if n := len(s.ShutdownCalls()); n != 0 {
			t.Errorf("Init %v: Shutdown called %d times after a failed Init", tc.ret, n)
		}
	}
}

func TestOpenLibraryCountFailure(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
	d, err := openLibrary(s)
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := d.Inventory()
	if inv.Source != SourceNone || !strings.Contains(inv.Note, "NVML initialised but cannot count GPUs (nvml DeviceGetCount: ") {
		t.Errorf("Inventory() = %+v", inv)
	}
	if n := len(s.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
}

func TestOpenLibraryMock(t *testing.T) {
	d, err := openLibrary(dgxa100.New())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	inv, err := d.Inventory()
	if err != nil || inv.Source != SourceNVML || len(inv.Devices) != 8 {
		t.Errorf("Inventory() = %d devices from %q, %v", len(inv.Devices), inv.Source, err)
	}
}
