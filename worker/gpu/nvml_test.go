//go:build linux && cgo

package gpu

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// mockDevice returns device i of a dgxa100 server, to set more of its funcs.
func mockDevice(s *dgxa100.Server, i int) *dgxa100.Device {
	return s.Devices[i].(*dgxa100.Device)
}

// TestDGXA100Inventory runs the driver against go-nvml's DGX A100 mock as
// shipped: 8 × "Mock NVIDIA A100-SXM4-40GB", 40 GiB each, driver 550.54.15,
// CUDA 12040, and nothing else (no utilisation, temperature, power, ECC or
// event sets: those mock methods panic, which the driver reads as absent).
func TestDGXA100Inventory(t *testing.T) {
	d := NewNVML(dgxa100.New())
	defer d.Close()
	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.Source != SourceNVML || inv.DriverVersion != "550.54.15" || inv.CUDAVersion != "12.4" {
		t.Errorf("source %q driver %q CUDA %q", inv.Source, inv.DriverVersion, inv.CUDAVersion)
	}
	if len(inv.Devices) != 8 {
		t.Fatalf("got %d devices, want 8", len(inv.Devices))
	}
	uuids := map[string]bool{}
	for i, dev := range inv.Devices {
		if dev.Index != i || dev.Model != "A100-40GB" || dev.Name != "Mock NVIDIA A100-SXM4-40GB" ||
			dev.MemoryBytes != 40*GiB || dev.Emulated {
			t.Errorf("device %d = %+v", i, dev)
		}
		if !dev.Healthy || dev.HealthReason != "" || len(dev.Errors) != 0 {
			t.Errorf("device %d unhealthy: %q %v", i, dev.HealthReason, dev.Errors)
		}
		if dev.DriverVersion != "550.54.15" || dev.CUDAVersion != "12.4" {
			t.Errorf("device %d driver %q CUDA %q", i, dev.DriverVersion, dev.CUDAVersion)
		}
		if want := []string{"utilization", "temperature", "power", "ecc", "xid_events"}; !equalStrings(dev.NotReported, want) {
			t.Errorf("device %d NotReported %v, want %v", i, dev.NotReported, want)
		}
		if !strings.HasPrefix(dev.UUID, "GPU-") || uuids[dev.UUID] {
			t.Errorf("device %d UUID %q missing or repeated", i, dev.UUID)
		}
		uuids[dev.UUID] = true
	}
	if !strings.Contains(inv.Note, "XID events not watched") || !strings.Contains(inv.Note, "EventSetCreate") {
		t.Errorf("note %q should say XID events are not watched", inv.Note)
	}
	if len(inv.Healthy()) != 8 {
		t.Errorf("Healthy() has %d devices, want 8", len(inv.Healthy()))
	}
}

func TestDGXA100With80GB(t *testing.T) {
	s := dgxa100.New()
	for i := range s.Devices {
		dev := mockDevice(s, i)
		dev.Name = "NVIDIA A100-SXM4-80GB"
		dev.MemoryInfo = nvml.Memory{Total: 81920 << 20, Used: 1 << 30}
	}
	d := NewNVML(s)
	defer d.Close()
	stats, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i, dev := range stats {
		if dev.Model != "A100-80GB" || dev.MemoryUsedBytes != 1<<30 {
			t.Errorf("device %d model %q used %d", i, dev.Model, dev.MemoryUsedBytes)
		}
	}
}

func TestStatsReportsOptionalFields(t *testing.T) {
	s := dgxa100.New()
	for i := range s.Devices {
		dev := mockDevice(s, i)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 97, Memory: 40}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 61, nvml.SUCCESS }
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 312500, nvml.SUCCESS }
		dev.GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
			if typ == nvml.MEMORY_ERROR_TYPE_CORRECTED {
				return 3, nvml.SUCCESS
			}
			return 0, nvml.SUCCESS
		}
	}
	d := NewNVML(s)
	defer d.Close()
	stats, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i, dev := range stats {
		if dev.UtilizationGPU != 97 || dev.UtilizationMem != 40 || dev.TemperatureC != 61 ||
			dev.PowerWatts != 312.5 || dev.ECCErrorsCorrected != 3 || dev.ECCErrorsUncorrected != 0 {
			t.Errorf("device %d = %+v", i, dev)
		}
		if !dev.Healthy {
			t.Errorf("device %d unhealthy (%s); corrected ECC errors are not a failure", i, dev.HealthReason)
		}
		if !equalStrings(dev.NotReported, []string{"xid_events"}) {
			t.Errorf("device %d NotReported %v", i, dev.NotReported)
		}
	}
}

func TestDeviceCountFailureIsDecoded(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	d := NewNVML(s)
	defer d.Close()
	_, err := d.Inventory()
	var ne *NVMLError
	if !errors.As(err, &ne) || ne.Op != "DeviceGetCount" || ne.Device != -1 || ne.Ret != nvml.ERROR_UNKNOWN {
		t.Fatalf("Inventory error = %#v, want an NVMLError for DeviceGetCount", err)
	}
	if !errors.Is(err, nvml.ERROR_UNKNOWN) {
		t.Error("error does not unwrap to nvml.ERROR_UNKNOWN")
	}
	want := "gpu: nvml DeviceGetCount: " + nvml.ErrorString(nvml.ERROR_UNKNOWN) + " (code 999)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := d.Stats(); !errors.Is(err, nvml.ERROR_UNKNOWN) {
		t.Errorf("Stats error %v", err)
	}
}

func TestUncorrectedECCMarksUnhealthy(t *testing.T) {
	s := dgxa100.New()
	mockDevice(s, 5).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
		if typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC {
			return 2, nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	d := NewNVML(s)
	defer d.Close()
	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	for i, dev := range inv.Devices {
		if i == 5 {
			if dev.Healthy || dev.ECCErrorsUncorrected != 2 ||
				dev.HealthReason != "2 uncorrected ECC errors since the driver loaded" {
				t.Errorf("device 5 = healthy %v, reason %q, ECC %d", dev.Healthy, dev.HealthReason, dev.ECCErrorsUncorrected)
			}
		} else if !dev.Healthy {
			t.Errorf("device %d unhealthy: %s", i, dev.HealthReason)
		}
	}
	if !strings.Contains(inv.Note, "1 of 8 GPUs unhealthy") {
		t.Errorf("note %q", inv.Note)
	}
}

func TestLostGPUIsListedUnhealthy(t *testing.T) {
	s := dgxa100.New()
	mockDevice(s, 3).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	mockDevice(s, 4).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return 0, nvml.ERROR_UNKNOWN
	}
	s.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 6 {
			return nil, nvml.ERROR_UNKNOWN
		}
		return s.Devices[i], nvml.SUCCESS
	}
	d := NewNVML(s)
	defer d.Close()
	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Devices) != 8 {
		t.Fatalf("got %d devices, want all 8 listed", len(inv.Devices))
	}
	lost := inv.Devices[3]
	want := "nvml GetUUID (device 3): " + nvml.ErrorString(nvml.ERROR_GPU_IS_LOST) + " (code 15)"
	if lost.Healthy || lost.HealthReason != want || lost.Model != "A100-40GB" {
		t.Errorf("device 3 = healthy %v reason %q model %q; want reason %q", lost.Healthy, lost.HealthReason, lost.Model, want)
	}
	// A failed optional query is listed but does not make the GPU unhealthy.
	hot := inv.Devices[4]
	if !hot.Healthy || len(hot.Errors) != 1 || !strings.Contains(hot.Errors[0], "GetTemperature (device 4)") {
		t.Errorf("device 4 = healthy %v errors %v", hot.Healthy, hot.Errors)
	}
	noHandle := inv.Devices[6]
	if noHandle.Healthy || noHandle.Index != 6 || !strings.Contains(noHandle.HealthReason, "DeviceGetHandleByIndex (device 6)") {
		t.Errorf("device 6 = %+v", noHandle)
	}
	if !strings.Contains(inv.Note, "2 of 8 GPUs unhealthy") {
		t.Errorf("note %q", inv.Note)
	}
}

// xidMock gives a dgxa100 server an event set that hands out queued events.
type xidMock struct {
	mu     sync.Mutex
	queue  []nvml.EventData
	freed  bool
	server *dgxa100.Server
}

func newXIDMock() *xidMock {
	x := &xidMock{server: dgxa100.New()}
	set := &mock.EventSet{
		WaitFunc: func(uint32) (nvml.EventData, nvml.Return) {
			x.mu.Lock()
			defer x.mu.Unlock()
			if len(x.queue) == 0 {
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
			e := x.queue[0]
			x.queue = x.queue[1:]
			return e, nvml.SUCCESS
		},
		FreeFunc: func() nvml.Return {
			x.mu.Lock()
			defer x.mu.Unlock()
			x.freed = true
			return nvml.SUCCESS
		},
	}
	x.server.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return set, nvml.SUCCESS }
	for i := range x.server.Devices {
		dev := mockDevice(x.server, i)
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	return x
}

func (x *xidMock) push(device, xid int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.queue = append(x.queue, nvml.EventData{
		Device: x.server.Devices[device], EventType: nvml.EventTypeXidCriticalError, EventData: uint64(xid),
	})
}

func TestXIDEvents(t *testing.T) {
	x := newXIDMock()
	d := NewNVML(x.server)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return at }

	inv, err := d.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.Note != "" {
		t.Errorf("note %q, want none", inv.Note)
	}
	for i, dev := range inv.Devices {
		if !dev.Healthy || len(dev.NotReported) != 4 { // all but xid_events
			t.Errorf("device %d healthy %v NotReported %v", i, dev.Healthy, dev.NotReported)
		}
		if got := mockDevice(x.server, i).RegisterEventsCalls(); len(got) != 1 || got[0].V != nvml.EventTypeXidCriticalError {
			t.Errorf("device %d RegisterEvents calls %+v", i, got)
		}
	}

	x.push(2, 79) // fallen off the bus: critical
	x.push(5, 13) // graphics engine exception: the application's fault
	stats, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if dev := stats[2]; dev.Healthy || dev.HealthReason != "critical XID 79 at 2026-03-01T12:00:00Z" ||
		len(dev.XIDEvents) != 1 || dev.XIDEvents[0] != (XIDEvent{XID: 79, Time: at, Critical: true}) {
		t.Errorf("device 2 = healthy %v reason %q events %+v", dev.Healthy, dev.HealthReason, dev.XIDEvents)
	}
	if dev := stats[5]; !dev.Healthy || len(dev.XIDEvents) != 1 || dev.XIDEvents[0].Critical {
		t.Errorf("device 5 = healthy %v events %+v", dev.Healthy, dev.XIDEvents)
	}

	// The XID is remembered: device 2 stays unhealthy with no new events.
	if stats, _ := d.Stats(); stats[2].Healthy {
		t.Error("device 2 healthy again after its XID 79")
	}

	for range maxXIDEvents + 5 {
		x.push(0, 13)
	}
	if stats, _ := d.Stats(); len(stats[0].XIDEvents) != maxXIDEvents {
		t.Errorf("device 0 keeps %d XID events, want %d", len(stats[0].XIDEvents), maxXIDEvents)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !x.freed {
		t.Error("Close did not free the event set")
	}
}

func TestCloseShutsDown(t *testing.T) {
	s := dgxa100.New()
	d := NewNVML(s)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(s.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := d.Inventory(); !errors.Is(err, ErrClosed) {
		t.Errorf("Inventory after Close: %v", err)
	}
}

func TestConcurrentStats(t *testing.T) {
	d := NewNVML(newXIDMock().server)
	defer d.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if _, err := d.Stats(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}
