//go:build unix && !linux

package testcluster

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// procState is unknown off Linux; callers then trust the signal.
func procState(int) (byte, bool) { return 0, false }
