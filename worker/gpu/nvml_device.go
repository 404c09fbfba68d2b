//go:build linux && cgo

package gpu

import (
	"slices"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// xidPollTimeoutMS is how long one EventSet.Wait may block when polling XID
// events; polls run inside Inventory and Stats, so they must not stall.
const xidPollTimeoutMS = 1

// maxXIDPoll bounds the events drained in one poll, so a GPU flooding XIDs
// cannot keep Stats from returning.
const maxXIDPoll = 256

// guard calls f, turning a panic into ERROR_FUNCTION_NOT_FOUND ("this NVML
// does not implement the function"). go-nvml's generated mocks panic on every
// method they were not given, and a partial nvml.Interface is exactly that:
// one that lacks the function.
func guard[T any](f func() (T, nvml.Return)) (v T, ret nvml.Return) {
	defer func() {
		if recover() != nil {
			var zero T
			v, ret = zero, nvml.ERROR_FUNCTION_NOT_FOUND
		}
	}()
	return f()
}

// guard0 is guard for calls that return only a code.
func guard0(f func() nvml.Return) (ret nvml.Return) {
	defer func() {
		if recover() != nil {
			ret = nvml.ERROR_FUNCTION_NOT_FOUND
		}
	}()
	return f()
}

// notSupported reports whether ret means the query has no answer on this
// device or driver, as opposed to failing.
func notSupported(ret nvml.Return) bool {
	switch ret {
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND, nvml.ERROR_NO_DATA:
		return true
	}
	return false
}

// gone reports whether ret means the device itself has failed.
func gone(ret nvml.Return) bool {
	switch ret {
	case nvml.ERROR_GPU_IS_LOST, nvml.ERROR_RESET_REQUIRED, nvml.ERROR_CORRUPTED_INFOROM:
		return true
	}
	return false
}

func notReported(dev *Device, field string) {
	if !slices.Contains(dev.NotReported, field) {
		dev.NotReported = append(dev.NotReported, field)
	}
}

// required runs a query the device cannot be used without; a failure becomes
// the device's health reason (the first one wins).
func required[T any](dev *Device, op string, f func() (T, nvml.Return)) (T, bool) {
	v, ret := guard(f)
	if ret == nvml.SUCCESS {
		return v, true
	}
	if dev.HealthReason == "" {
		dev.HealthReason = nvmlErr(op, dev.Index, ret).reason()
	}
	return v, false
}

// optional runs a query whose field may be missing: unsupported leaves the
// field unreported, a failed device makes it unhealthy, anything else is
// listed in dev.Errors.
func optional[T any](dev *Device, field, op string, f func() (T, nvml.Return)) (T, bool) {
	v, ret := guard(f)
	switch {
	case ret == nvml.SUCCESS:
		return v, true
	case notSupported(ret):
		notReported(dev, field)
	case gone(ret):
		if dev.HealthReason == "" {
			dev.HealthReason = nvmlErr(op, dev.Index, ret).reason()
		}
	default:
		dev.Errors = append(dev.Errors, nvmlErr(op, dev.Index, ret).reason())
	}
	return v, false
}

// readDevice reads device i. It returns a nil handle when even the handle
// could not be had; the device is then listed with only its index and the
// reason.
func (d *NVMLDriver) readDevice(i int) (Device, nvml.Device) {
	dev := Device{Index: i}
	h, ok := required(&dev, "DeviceGetHandleByIndex", func() (nvml.Device, nvml.Return) {
		return d.lib.DeviceGetHandleByIndex(i)
	})
	if !ok || h == nil {
		return dev, nil
	}
	dev.UUID, _ = required(&dev, "GetUUID", h.GetUUID)
	dev.Name, _ = required(&dev, "GetName", h.GetName)
	if mem, ok := required(&dev, "GetMemoryInfo", h.GetMemoryInfo); ok {
		dev.MemoryBytes, dev.MemoryUsedBytes = mem.Total, mem.Used
	}
	if m, ok := NormalizeWithMemory(dev.Name, dev.MemoryBytes); ok {
		dev.Model = m.ID
	}
	if u, ok := optional(&dev, "utilization", "GetUtilizationRates", h.GetUtilizationRates); ok {
		dev.UtilizationGPU, dev.UtilizationMem = u.Gpu, u.Memory
	}
	dev.TemperatureC, _ = optional(&dev, "temperature", "GetTemperature", func() (uint32, nvml.Return) {
		return h.GetTemperature(nvml.TEMPERATURE_GPU)
	})
	if mw, ok := optional(&dev, "power", "GetPowerUsage", h.GetPowerUsage); ok {
		dev.PowerWatts = float64(mw) / 1000
	}
	dev.ECCErrorsUncorrected, _ = optional(&dev, "ecc", "GetTotalEccErrors", func() (uint64, nvml.Return) {
		return h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
	})
	dev.ECCErrorsCorrected, _ = optional(&dev, "ecc", "GetTotalEccErrors", func() (uint64, nvml.Return) {
		return h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC)
	})
	return dev, h
}

// watch registers every device that supports it for XID events, once. Where
// the library has no event sets (go-nvml's mocks, some virtualised GPUs) the
// inventory says so and carries on.
func (d *NVMLDriver) watch(handles []nvml.Device, devices []Device) {
	set, ret := guard(d.lib.EventSetCreate)
	if ret != nvml.SUCCESS || set == nil {
		d.eventsNote = "XID events not watched (" + nvmlErr("EventSetCreate", -1, ret).reason() + ")"
		return
	}
	for i, h := range handles {
		if h == nil || devices[i].UUID == "" {
			continue
		}
		mask, ret := guard(h.GetSupportedEventTypes)
		if ret != nvml.SUCCESS || mask&nvml.EventTypeXidCriticalError == 0 {
			continue
		}
		ret = guard0(func() nvml.Return { return h.RegisterEvents(nvml.EventTypeXidCriticalError, set) })
		if ret == nvml.SUCCESS {
			d.watched[devices[i].UUID] = true
		}
	}
	if len(d.watched) == 0 {
		guard0(set.Free)
		if len(handles) > 0 {
			d.eventsNote = "XID events not watched: no GPU supports them"
		}
		return
	}
	d.events = set
}

// poll drains pending XID events without blocking for more than a few
// milliseconds, recording each against its device's UUID.
func (d *NVMLDriver) poll() {
	if d.events == nil {
		return
	}
	for range maxXIDPoll {
		e, ret := guard(func() (nvml.EventData, nvml.Return) { return d.events.Wait(xidPollTimeoutMS) })
		if ret == nvml.ERROR_TIMEOUT {
			return
		}
		if ret != nvml.SUCCESS {
			d.eventsNote = "XID events: " + nvmlErr("EventSetWait", -1, ret).reason()
			return
		}
		if e.EventType&nvml.EventTypeXidCriticalError == 0 {
			continue
		}
		var uuid string
		if e.Device != nil {
			uuid, _ = guard(e.Device.GetUUID)
		}
		if !d.watched[uuid] {
			d.lostXIDs++
			continue
		}
		x := XIDEvent{XID: e.EventData, Time: d.now(), Critical: IsCriticalXID(e.EventData)}
		hist := append(d.xids[uuid], x)
		if len(hist) > maxXIDEvents {
			hist = hist[len(hist)-maxXIDEvents:]
		}
		d.xids[uuid] = hist
	}
}
