//go:build !linux

package sim

import "syscall"

// dieWithParent is a no-op where the kernel offers no parent-death
// signal; workers then stop when the market stops them.
func dieWithParent(*syscall.SysProcAttr) {}
