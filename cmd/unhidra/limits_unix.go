//go:build unix

package main

import "syscall"

// defaultMaxConns leaves a reserve of file descriptors for the database,
// the listener, logs and worker sockets below the process's open-file limit.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 1024 {
		return 512
	}
	return int(min(lim.Cur, 1<<24)) - 512
}

// defaultTCPLimits derives the accept-time caps from the open-file limit:
// all TCP connections stay 128 descriptors below it, and one address may
// hold a sixteenth of it (at least 16).
func defaultTCPLimits() (perAddr, total int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 256 {
		return 16, 128
	}
	n := int(min(lim.Cur, 1<<24))
	return max(16, n/16), n - 128
}
