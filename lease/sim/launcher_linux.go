package sim

import "syscall"

// dieWithParent has a launched worker killed when the market's process
// dies (SIGKILLed, say): the simulated providers go with the simulator,
// rather than leaving workers that retry a coordinator which is gone.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
