package mlbridge

import (
	"syscall"
	"unsafe"
)

// sysProcAttr puts a worker in its own process group (so stragglers it
// forks can be killed together) and asks the kernel to SIGKILL it when the
// server dies, however it dies.
//
// Pdeathsig fires when the OS thread that forked the child exits; Go only
// ends threads locked with LockOSThread, which this package never does.
// The SDK's stdin watch covers what Pdeathsig cannot (e.g. a wrapper script
// whose own child is the real worker).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitid(2) constants, the same on every Linux architecture.
const (
	pPID    = 1
	wEXITED = 0x4
	wNOWAIT = 0x1000000
)

// waitExitedNoReap blocks until pid has exited, leaving it unreaped (a
// zombie holding its pid). It reports whether that worked.
func waitExitedNoReap(pid int) bool {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOWAIT, 0, 0)
		switch e {
		case 0:
			return true
		case syscall.EINTR:
			continue
		default:
			return false
		}
	}
}
