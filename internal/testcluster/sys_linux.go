package testcluster

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel SIGKILL a node when the process that
// started it dies, so a crashed or timed-out test leaves no coordinators
// behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// procState returns the state letter of /proc/PID/stat ('R', 'S', 'T'...).
func procState(pid int) (byte, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, false
	}
	return s[i+2], true
}
