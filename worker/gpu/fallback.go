package gpu

import (
	"errors"
	"sync"
)

// ErrClosed is returned by a Driver used after Close.
var ErrClosed = errors.New("gpu: driver closed")

// Fallback is the Driver of a machine whose GPUs cannot be read: it reports
// no devices, Source SourceNone, and a note saying why. Workers use it so
// that a missing driver is a fact they report, not an error they die of.
type Fallback struct {
	note string

	mu     sync.Mutex
	closed bool
}

// NewFallback returns a Fallback whose inventories carry note.
func NewFallback(note string) *Fallback {
	return &Fallback{note: note}
}

// Note returns the reason the fallback reports no GPUs.
func (f *Fallback) Note() string { return f.note }

// Inventory returns an empty inventory with the note.
func (f *Fallback) Inventory() (Inventory, error) {
	if f.isClosed() {
		return Inventory{}, ErrClosed
	}
	return Inventory{Source: SourceNone, Note: f.note}, nil
}

// Stats returns no devices.
func (f *Fallback) Stats() ([]Device, error) {
	if f.isClosed() {
		return nil, ErrClosed
	}
	return nil, nil
}

// Close marks the fallback closed. It is safe to call more than once.
func (f *Fallback) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *Fallback) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}
