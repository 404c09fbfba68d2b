package gpu

import (
	"fmt"
	"slices"
	"time"
)

// Inventory sources.
const (
	// SourceNVML marks an inventory read from the NVIDIA driver through NVML.
	SourceNVML = "nvml"
	// SourceEmulated marks an inventory of catalog GPUs that do not exist.
	SourceEmulated = "emulated"
	// SourceNone marks an inventory with no GPUs because no driver could be used.
	SourceNone = "none"
)

// Driver reports a machine's GPUs. Implementations are safe for concurrent use.
//
// Inventory is the fingerprint a worker registers with; Stats refreshes the
// changing fields (utilisation, temperature, power, memory used, ECC, XID
// events, health) of the same devices; Close releases the driver, after which
// both return ErrClosed. Every call returns fresh copies the caller may keep.
type Driver interface {
	Inventory() (Inventory, error)
	Stats() ([]Device, error)
	Close() error
}

// Inventory is what a worker knows about its GPUs at one moment.
type Inventory struct {
	Devices []Device `json:"devices"`
	// DriverVersion is the NVIDIA driver version, e.g. "550.54.15".
	DriverVersion string `json:"driver_version,omitempty"`
	// CUDAVersion is the highest CUDA version the driver supports, e.g. "12.4".
	CUDAVersion string `json:"cuda_version,omitempty"`
	// Source is SourceNVML, SourceEmulated or SourceNone.
	Source string `json:"source"`
	// Note says in plain words anything a user should know about this
	// inventory: why it is empty, that it is emulated, what NVML could not
	// report.
	Note string `json:"note,omitempty"`
}

// Healthy returns the devices that are healthy.
func (inv Inventory) Healthy() []Device {
	var out []Device
	for _, d := range inv.Devices {
		if d.Healthy {
			out = append(out, d)
		}
	}
	return out
}

// Device is one GPU. Fields NVML could not report for this device are zero
// and named in NotReported.
type Device struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	// Name is the name the driver reports, e.g. "NVIDIA A100-SXM4-40GB"; for
	// an emulated device it ends in " (emulated)".
	Name string `json:"name"`
	// Model is the catalog ID Name and memory normalise to, or "" for a model
	// the catalog does not know.
	Model           string `json:"model"`
	MemoryBytes     uint64 `json:"memory_bytes"`
	MemoryUsedBytes uint64 `json:"memory_used_bytes"`
	DriverVersion   string `json:"driver_version,omitempty"`
	CUDAVersion     string `json:"cuda_version,omitempty"`
	// UtilizationGPU and UtilizationMem are percentages over the driver's
	// last sample period.
	UtilizationGPU uint32  `json:"utilization_gpu"`
	UtilizationMem uint32  `json:"utilization_mem"`
	TemperatureC   uint32  `json:"temperature_c"`
	PowerWatts     float64 `json:"power_watts"`
	// ECCErrorsUncorrected and ECCErrorsCorrected count volatile ECC errors,
	// those since the driver last loaded.
	ECCErrorsUncorrected uint64 `json:"ecc_errors_uncorrected"`
	ECCErrorsCorrected   uint64 `json:"ecc_errors_corrected"`
	// XIDEvents are the most recent XID events seen for this device since
	// the driver was opened, oldest first, at most maxXIDEvents.
	XIDEvents    []XIDEvent `json:"xid_events,omitempty"`
	Healthy      bool       `json:"healthy"`
	HealthReason string     `json:"health_reason,omitempty"`
	// NotReported names the optional fields this device's driver does not
	// support ("temperature", "power", "utilization", "ecc", "xid_events").
	NotReported []string `json:"not_reported,omitempty"`
	// Errors lists optional queries that failed for another reason, each
	// with its NVML code.
	Errors   []string `json:"errors,omitempty"`
	Emulated bool     `json:"emulated"`
}

// XIDEvent is one XID error the NVIDIA driver reported for a device.
type XIDEvent struct {
	XID  uint64    `json:"xid"`
	Time time.Time `json:"time"`
	// Critical is true when the XID means the GPU or its memory failed (as
	// opposed to an application error such as an illegal memory access).
	Critical bool `json:"critical"`
}

// maxXIDEvents bounds the XID history kept per device.
const maxXIDEvents = 32

// applicationXIDs are the XIDs caused by the workload rather than the GPU:
// graphics and compute exceptions (13), MMU faults from a bad address (31),
// a stopped channel (43), preemptive cleanup after an error (45), decoder
// exceptions (68) and context-switch timeouts (109). NVIDIA's k8s device
// plugin skips the same set; every other XID marks the device unhealthy.
var applicationXIDs = []uint64{13, 31, 43, 45, 68, 109}

// IsCriticalXID reports whether an XID means the device should not take more
// work until an operator has looked at it.
func IsCriticalXID(xid uint64) bool {
	return !slices.Contains(applicationXIDs, xid)
}

// assessHealth sets Healthy and HealthReason from the ECC counters and XID
// history. A device already marked unhealthy (a failed query) stays so.
func assessHealth(d *Device) {
	if d.HealthReason != "" {
		d.Healthy = false
		return
	}
	d.Healthy = true
	if d.ECCErrorsUncorrected > 0 {
		d.Healthy = false
		d.HealthReason = fmt.Sprintf("%d uncorrected ECC errors since the driver loaded", d.ECCErrorsUncorrected)
		return
	}
	for i := len(d.XIDEvents) - 1; i >= 0; i-- {
		if e := d.XIDEvents[i]; e.Critical {
			d.Healthy = false
			d.HealthReason = fmt.Sprintf("critical XID %d at %s", e.XID, e.Time.UTC().Format(time.RFC3339))
			return
		}
	}
}

// cloneDevices returns a deep copy of ds, so callers can keep or change what
// a driver returns.
func cloneDevices(ds []Device) []Device {
	out := make([]Device, len(ds))
	for i, d := range ds {
		d.XIDEvents = slices.Clone(d.XIDEvents)
		d.NotReported = slices.Clone(d.NotReported)
		d.Errors = slices.Clone(d.Errors)
		out[i] = d
	}
	return out
}
