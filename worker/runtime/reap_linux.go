package runtime

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Linux constants the syscall package does not name.
const (
	pPID                     = 1          // idtype_t P_PID
	wNoWait                  = 0x01000000 // WNOWAIT
	wExited                  = 0x00000004 // WEXITED
	prSetChildSubreaper      = 36         // PR_SET_CHILD_SUBREAPER
	prGetChildSubreaper      = 37         // PR_GET_CHILD_SUBREAPER
	reapTimeout              = 10 * time.Second
	reapPollMin, reapPollMax = time.Millisecond, 20 * time.Millisecond
)

// EnableSubreaper makes the worker the child subreaper of its processes
// (prctl PR_SET_CHILD_SUBREAPER): a task's descendants whose parent dies
// are re-parented to the worker instead of init, so the process runtime
// can reap them when the task ends. The worker agent calls it once at
// startup; it matters where init does not reap orphans (many containers).
func EnableSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return fmt.Errorf("runtime: enable child subreaper: %w", e)
	}
	return nil
}

// canReapOrphans reports whether orphaned descendants of a task come back
// to this process: it is init or a child subreaper.
func canReapOrphans() bool {
	if os.Getpid() == 1 {
		return true
	}
	var v int32
	_, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetChildSubreaper, uintptr(unsafe.Pointer(&v)), 0)
	return e == 0 && v != 0
}

// awaitExit blocks until process pid has exited without reaping it
// (waitid WNOWAIT), so its PID stays reserved while its group is killed.
// It reports false if it cannot.
func awaitExit(pid int) bool {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), wExited|wNoWait, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		return e == 0
	}
}

// reapGroup kills and reaps what is left of process group pgid, when its
// orphans are this process's children, until the group is empty. SIGKILL
// is repeated because a member may fork while the group is being killed.
func reapGroup(pgid int) {
	if !canReapOrphans() {
		return
	}
	deadline := time.Now().Add(reapTimeout)
	pause := reapPollMin
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(pause)
		pause = min(2*pause, reapPollMax)
	}
}
