//go:build !linux || !cgo

package gpu

import (
	"strings"
	"testing"
)

func TestOpenWithoutNVMLSupport(t *testing.T) {
	d, err := Open()
	if err != nil || d == nil {
		t.Fatalf("Open() = %v, %v", d, err)
	}
	inv, err := d.Inventory()
	if err != nil || inv.Source != SourceNone || len(inv.Devices) != 0 ||
		!strings.HasPrefix(inv.Note, "NVML needs ") || !strings.HasSuffix(inv.Note, "; reporting no GPUs") {
		t.Errorf("Inventory() = %+v, %v", inv, err)
	}
}
