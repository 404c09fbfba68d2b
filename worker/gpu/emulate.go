package gpu

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxEmulatedGPUs is the largest count an emulation spec may ask for.
const MaxEmulatedGPUs = 16

// emulateSeparators may stand between a model and a count: "H100x2",
// "H100X2", "H100×2", "H100*2".
const emulateSeparators = "xX×*"

// ParseEmulate parses an emulation spec: a catalog model, optionally followed
// by x and a count from 1 to MaxEmulatedGPUs ("H100x2", "A100-80GBx4",
// "L40Sx8", "rtx4090" for one). Case, spaces and punctuation in the model do
// not matter; the model must be a catalog ID, display name or one of its
// usual spellings, not a loose match, so that a typo fails instead of
// emulating the wrong GPU.
func ParseEmulate(spec string) (model Model, count int, err error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Model{}, 0, fmt.Errorf("gpu: empty emulation spec; want MODEL or MODELxCOUNT such as H100x2 (models: %s)",
			strings.Join(ModelIDs(), ", "))
	}
	if m, ok := lookupAlias(s); ok {
		return m, 1, nil
	}
	name := s
	if i := strings.LastIndexAny(s, emulateSeparators); i > 0 {
		_, w := utf8.DecodeRuneInString(s[i:])
		prefix, suffix := s[:i], strings.TrimSpace(s[i+w:])
		if m, ok := lookupAlias(prefix); ok {
			if !isDigits(suffix) {
				return Model{}, 0, fmt.Errorf("gpu: emulation spec %q: GPU count %q is not a whole number from 1 to %d",
					spec, suffix, MaxEmulatedGPUs)
			}
			n, err := strconv.Atoi(suffix)
			if err != nil || n < 1 || n > MaxEmulatedGPUs {
				return Model{}, 0, fmt.Errorf("gpu: emulation spec %q: GPU count %s is out of range 1..%d",
					spec, suffix, MaxEmulatedGPUs)
			}
			return m, n, nil
		}
		if isDigits(suffix) {
			name = strings.TrimSpace(prefix)
		}
	}
	return Model{}, 0, fmt.Errorf("gpu: emulation spec %q: unknown GPU model %q; valid models: %s",
		spec, name, strings.Join(ModelIDs(), ", "))
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Emulated is a Driver whose GPUs come from the catalog and do not exist.
// Every device has Emulated set and a name ending in " (emulated)", and the
// inventory's Source is SourceEmulated, so nothing downstream can mistake
// them for hardware. Stats reports them idle and healthy.
type Emulated struct {
	inv Inventory

	mu     sync.Mutex
	closed bool
}

// NewEmulated returns an Emulated driver for spec (see ParseEmulate), with
// UUIDs "EMU-<model ID>-<index>", e.g. "EMU-H100-SXM-0".
func NewEmulated(spec string) (Driver, error) {
	return NewEmulatedInstance(spec, "")
}

// NewEmulatedInstance is NewEmulated with an instance name folded into the
// UUIDs ("EMU-<instance>-<model ID>-<index>"), for when several emulated
// workers share a machine (lease/sim) and their GPUs must stay distinct.
// The instance is kept to letters, digits, '-', '_' and '.'.
func NewEmulatedInstance(spec, instance string) (Driver, error) {
	m, n, err := ParseEmulate(spec)
	if err != nil {
		return nil, err
	}
	prefix := "EMU-"
	if inst := sanitizeInstance(instance); inst != "" {
		prefix += inst + "-"
	}
	devices := make([]Device, n)
	for i := range devices {
		devices[i] = Device{
			Index:       i,
			UUID:        fmt.Sprintf("%s%s-%d", prefix, m.ID, i),
			Name:        m.Name + " (emulated)",
			Model:       m.ID,
			MemoryBytes: m.MemoryBytes,
			Healthy:     true,
			Emulated:    true,
		}
	}
	return &Emulated{inv: Inventory{
		Devices: devices,
		Source:  SourceEmulated,
		Note: fmt.Sprintf("emulated GPUs, not real hardware: %d × %s from the catalog (%d GiB, ~%g dense BF16/FP16 TFLOPS each by data sheet)",
			n, m.Name, m.MemoryGiB, EstimateThroughput(m)),
	}}, nil
}

func sanitizeInstance(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return -1
	}, s)
}

// Inventory returns the emulated devices.
func (e *Emulated) Inventory() (Inventory, error) {
	if e.isClosed() {
		return Inventory{}, ErrClosed
	}
	inv := e.inv
	inv.Devices = cloneDevices(e.inv.Devices)
	return inv, nil
}

// Stats returns the emulated devices, idle and healthy.
func (e *Emulated) Stats() ([]Device, error) {
	if e.isClosed() {
		return nil, ErrClosed
	}
	return cloneDevices(e.inv.Devices), nil
}

// Close marks the driver closed. It is safe to call more than once.
func (e *Emulated) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

func (e *Emulated) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
