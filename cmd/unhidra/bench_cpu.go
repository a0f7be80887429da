package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procCPU returns the CPU time used so far by process pid and, recursively,
// its child processes (a server's ML workers), summed over their threads
// from /proc/PID/task/TID/schedstat (nanoseconds, unlike the clock ticks of
// /proc/PID/stat). Threads that exited are not counted; the Go runtime and
// the Python worker keep theirs, so a window between two readings is exact
// for them. Linux only: elsewhere it fails.
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("process %d: no /proc entry", pid)
	}
	var total time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(task, "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d: schedstat %q", pid, b)
		}
		total += time.Duration(ns)
		kids, _ := os.ReadFile(filepath.Join(task, "children"))
		for _, k := range strings.Fields(string(kids)) {
			if kid, err := strconv.Atoi(k); err == nil {
				d, err := procCPU(kid)
				if err == nil {
					total += d
				}
			}
		}
	}
	return total, nil
}

// parsePIDs reads a comma-separated list of process ids.
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, usagef("--cpu-pid: %q is not a process id", f)
		}
		out = append(out, pid)
	}
	if len(out) > 16 {
		return nil, usagef("--cpu-pid: at most 16 processes")
	}
	return out, nil
}
