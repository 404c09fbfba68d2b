//go:build linux && cgo

package gpu

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVMLError is a failed NVML call, decoded into the call's name and NVML's
// name for the return code. It unwraps to the nvml.Return, so
// errors.Is(err, nvml.ERROR_GPU_IS_LOST) works.
type NVMLError struct {
	// Op is the NVML call, e.g. "DeviceGetCount" or "GetMemoryInfo".
	Op string
	// Device is the device index, or -1 for a system-wide call.
	Device int
	Ret    nvml.Return
}

// Error returns e.g. "gpu: nvml GetUUID (device 3): ERROR_GPU_IS_LOST (code 15)".
func (e *NVMLError) Error() string { return "gpu: " + e.reason() }

// Unwrap returns the NVML return code.
func (e *NVMLError) Unwrap() error { return e.Ret }

// reason is the error without the package prefix, for health reasons and
// notes that quote it.
func (e *NVMLError) reason() string {
	where := e.Op
	if e.Device >= 0 {
		where = fmt.Sprintf("%s (device %d)", e.Op, e.Device)
	}
	return fmt.Sprintf("nvml %s: %s (code %d)", where, nvml.ErrorString(e.Ret), int32(e.Ret))
}

func nvmlErr(op string, device int, ret nvml.Return) *NVMLError {
	return &NVMLError{Op: op, Device: device, Ret: ret}
}

// Open returns the machine's GPU driver: NVML when the NVIDIA library loads
// and initialises, otherwise a Fallback whose note says in plain words why
// there are no GPUs ("NVML library not found: no NVIDIA driver on this
// machine; reporting no GPUs"). A machine without GPUs is not an error; the
// returned error is always nil today and is kept so callers are ready for
// drivers whose opening can fail.
func Open() (Driver, error) {
	return openLibrary(nvml.New())
}

// openLibrary is Open over any library, so tests can make Init fail.
func openLibrary(lib nvml.Interface) (Driver, error) {
	if ret := guard0(lib.Init); ret != nvml.SUCCESS {
		return NewFallback(initNote(ret)), nil
	}
	if _, ret := guard(lib.DeviceGetCount); ret != nvml.SUCCESS {
		guard0(lib.Shutdown)
		note := "NVML initialised but cannot count GPUs (" + nvmlErr("DeviceGetCount", -1, ret).reason() +
			"); reporting no GPUs"
		return NewFallback(note), nil
	}
	return NewNVML(lib), nil
}

// initNote explains a failed nvml.Init to someone running a worker.
func initNote(ret nvml.Return) string {
	const tail = "; reporting no GPUs"
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "NVML library not found: no NVIDIA driver on this machine" + tail
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVIDIA driver installed but not loaded (NVML ERROR_DRIVER_NOT_LOADED)" + tail
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to use the NVIDIA driver (NVML ERROR_NO_PERMISSION)" + tail
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "NVML library and NVIDIA kernel driver versions differ; reboot or reinstall the driver" + tail
	default:
		return "NVML failed to initialise (" + nvmlErr("Init", -1, ret).reason() + ")" + tail
	}
}

// NVMLDriver reads GPUs through NVML. Optional fields the driver or device
// does not support (temperature, power, ECC, XID events on consumer boards)
// are left zero and named in Device.NotReported rather than failing the
// inventory; a device whose handle, UUID, name or memory cannot be read is
// listed unhealthy with the NVML error as its reason, so one lost GPU does not
// hide the others.
type NVMLDriver struct {
	lib nvml.Interface
	now func() time.Time

	mu     sync.Mutex
	closed bool
	// watchTried is set once XID event registration has been attempted.
	watchTried bool
	events     nvml.EventSet
	watched    map[string]bool
	eventsNote string
	xids       map[string][]XIDEvent
	lostXIDs   int
}

// NewNVML returns a driver over lib, which must already be initialised
// (Open does that for the system library; go-nvml's mocks need nothing).
// The driver owns lib from then on: Close shuts it down.
func NewNVML(lib nvml.Interface) *NVMLDriver {
	return &NVMLDriver{
		lib:     lib,
		now:     time.Now,
		watched: make(map[string]bool),
		xids:    make(map[string][]XIDEvent),
	}
}

// Inventory reads every device with its current stats and health.
func (d *NVMLDriver) Inventory() (Inventory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.collect()
}

// Stats refreshes every device's utilisation, temperature, power, memory,
// ECC counters, XID events and health.
func (d *NVMLDriver) Stats() ([]Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	inv, err := d.collect()
	return inv.Devices, err
}

// Close stops watching XID events and shuts NVML down. It is safe to call
// more than once.
func (d *NVMLDriver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.events != nil {
		guard0(d.events.Free)
		d.events = nil
	}
	if ret := guard0(d.lib.Shutdown); ret != nvml.SUCCESS && !notSupported(ret) {
		return nvmlErr("Shutdown", -1, ret)
	}
	return nil
}

// collect reads the whole inventory; d.mu is held.
func (d *NVMLDriver) collect() (Inventory, error) {
	if d.closed {
		return Inventory{}, ErrClosed
	}
	count, ret := guard(d.lib.DeviceGetCount)
	if ret != nvml.SUCCESS {
		return Inventory{}, nvmlErr("DeviceGetCount", -1, ret)
	}
	inv := Inventory{Source: SourceNVML}
	if v, ret := guard(d.lib.SystemGetDriverVersion); ret == nvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := guard(d.lib.SystemGetCudaDriverVersion); ret == nvml.SUCCESS {
		inv.CUDAVersion = cudaVersion(v)
	}
	devices := make([]Device, count)
	handles := make([]nvml.Device, count)
	for i := range count {
		devices[i], handles[i] = d.readDevice(i)
		devices[i].DriverVersion = inv.DriverVersion
		devices[i].CUDAVersion = inv.CUDAVersion
	}
	if !d.watchTried {
		d.watchTried = true
		d.watch(handles, devices)
	}
	d.poll()
	for i := range devices {
		dev := &devices[i]
		if !d.watched[dev.UUID] {
			notReported(dev, "xid_events")
		}
		dev.XIDEvents = append([]XIDEvent(nil), d.xids[dev.UUID]...)
		assessHealth(dev)
	}
	inv.Devices = devices
	inv.Note = d.note(devices)
	return inv, nil
}

// note sums up what a user should know about an NVML inventory.
func (d *NVMLDriver) note(devices []Device) string {
	var parts []string
	if len(devices) == 0 {
		parts = append(parts, "NVML found no NVIDIA GPUs")
	}
	unhealthy := 0
	for _, dev := range devices {
		if !dev.Healthy {
			unhealthy++
		}
	}
	if unhealthy > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d GPUs unhealthy", unhealthy, len(devices)))
	}
	if d.eventsNote != "" {
		parts = append(parts, d.eventsNote)
	}
	if d.lostXIDs > 0 {
		parts = append(parts, fmt.Sprintf("%d XID events could not be matched to a GPU", d.lostXIDs))
	}
	return strings.Join(parts, "; ")
}

// cudaVersion formats NVML's CUDA driver version (12040) as "12.4".
func cudaVersion(v int) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}
