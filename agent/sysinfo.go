package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// processStart is the fallback origin of uptime where /proc is missing.
var processStart = time.Now()

// readProcFile reads a small /proc file, bounded.
func readProcFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// SystemUptime returns the time since boot from /proc/uptime, or the time
// since this process started where that is unavailable.
func SystemUptime() (time.Duration, error) {
	if data, err := readProcFile("/proc/uptime"); err == nil {
		if d, err := parseUptime(data); err == nil {
			return d, nil
		}
	}
	return time.Since(processStart), nil
}

var errProcFormat = errors.New("unexpected /proc format")

// parseUptime reads the first field of /proc/uptime ("12345.67 4321.00").
func parseUptime(data []byte) (time.Duration, error) {
	f := strings.Fields(string(data))
	if len(f) == 0 || len(f[0]) > 32 {
		return 0, errProcFormat
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil || s < 0 || s > 1e10 || s != s {
		return 0, errProcFormat
	}
	return time.Duration(s * float64(time.Second)), nil
}

// SystemFreeMemory returns MemAvailable from /proc/meminfo (what Linux
// reports as memory available without swapping: the "free heap" of a
// Linux device), or the Go runtime's idle heap where /proc is missing.
func SystemFreeMemory() (uint64, error) {
	if data, err := readProcFile("/proc/meminfo"); err == nil {
		if v, err := parseMeminfo(data, "MemAvailable"); err == nil {
			return v, nil
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapIdle - ms.HeapReleased, nil
}

// parseMeminfo returns field (e.g. "MemAvailable:   123456 kB") in bytes.
func parseMeminfo(data []byte, field string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return 0, errProcFormat
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || v > 1<<50 {
			return 0, errProcFormat
		}
		if len(f) == 2 {
			if f[1] != "kB" {
				return 0, errProcFormat
			}
			v *= 1024
		}
		return v, nil
	}
	return 0, errProcFormat
}
