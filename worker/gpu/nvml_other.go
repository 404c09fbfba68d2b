//go:build !linux || !cgo

package gpu

import "runtime"

// Open returns the machine's GPU driver. NVML needs Linux and cgo, and this
// binary has one or the other missing, so Open returns a Fallback that says
// so; it never fails.
func Open() (Driver, error) {
	note := "NVML needs Linux and this binary is built for " + runtime.GOOS + "; reporting no GPUs"
	if runtime.GOOS == "linux" {
		note = "NVML needs cgo and this binary was built with CGO_ENABLED=0; reporting no GPUs"
	}
	return NewFallback(note), nil
}
