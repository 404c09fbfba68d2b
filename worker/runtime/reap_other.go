//go:build unix && !linux

package runtime

import (
	"errors"
	"os"
	"syscall"
)

// EnableSubreaper is Linux-only; elsewhere it returns an error and orphans
// of a task are killed but left to init.
func EnableSubreaper() error {
	return errors.New("runtime: child subreaper is only supported on Linux")
}

// awaitExit cannot wait without reaping off Linux.
func awaitExit(int) bool { return false }

// reapGroup reaps the killed group's orphans when this process is init.
func reapGroup(pgid int) {
	if os.Getpid() != 1 {
		return
	}
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}
