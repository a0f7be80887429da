//go:build !linux

package mlbridge

import "syscall"

// sysProcAttr: outside Linux there is no Pdeathsig; the SDK worker's stdin
// and parent-pid watch are what end it if the server dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitExitedNoReap is unavailable: the group is not killed after the
// leader's exit (see proc.wait).
func waitExitedNoReap(int) bool { return false }
