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
