package agent

import (
	"strings"
	"testing"
	"time"
)

func TestParseUptime(t *testing.T) {
	if d, err := parseUptime([]byte("12345.67 4321.00\n")); err != nil || d != 12345670*time.Millisecond {
		t.Fatalf("parseUptime = %v, %v", d, err)
	}
	for _, bad := range []string{"", "\n", "abc 1", "-5 1", "1e300 1", "NaN 1", strings.Repeat("9", 40) + " 1", "Inf"} {
		if _, err := parseUptime([]byte(bad)); err == nil {
			t.Errorf("parseUptime(%q) accepted", bad)
		}
	}
	if d, err := SystemUptime(); err != nil || d <= 0 {
		t.Errorf("SystemUptime = %v, %v", d, err)
	}
}

func TestParseMeminfo(t *testing.T) {
	data := "MemTotal:       16000000 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\n"
	if v, err := parseMeminfo([]byte(data), "MemAvailable"); err != nil || v != 8000000*1024 {
		t.Fatalf("parseMeminfo = %v, %v", v, err)
	}
	for _, bad := range []string{
		"", "MemAvailable:", "MemAvailable: x kB", "MemAvailable: -1 kB", "MemAvailable: 5 MB",
		"MemAvailable: 1 2 3", "MemAvailable: 99999999999999999999 kB", "MemAvailable: 1125899906842625 kB",
		"MemAvailableX: 5 kB",
	} {
		if _, err := parseMeminfo([]byte(bad), "MemAvailable"); err == nil {
			t.Errorf("parseMeminfo(%q) accepted", bad)
		}
	}
	if v, err := SystemFreeMemory(); err != nil || v == 0 {
		t.Errorf("SystemFreeMemory = %v, %v", v, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120": 2 * time.Minute, " 5 ": 5 * time.Second, "0": 0,
		"Thu, 01 Jan 2026 00:01:00 GMT": time.Minute,
		"Wed, 31 Dec 2025 00:01:00 GMT": 0, // in the past
		"":                              0, "-1": 0, "1.5": 0, "soon": 0, "99999999999999999999": 0,
		strings.Repeat("1", 100): 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRedactor(t *testing.T) {
	r := redactor{key: "unhidra_dk_x_secret"}
	if got := r.clean("bad key unhidra_dk_x_secret\x00\x1b[31m here", 200); strings.Contains(got, "secret") || strings.ContainsAny(got, "\x00\x1b") {
		t.Errorf("clean = %q", got)
	}
	if got := r.clean(strings.Repeat("é", 300), 10); len(got) > 10+len("…") {
		t.Errorf("not truncated: %d bytes", len(got))
	}
}

func TestCappedBuffer(t *testing.T) {
	overflows := 0
	b := &cappedBuffer{max: 5, onOverflow: func() { overflows++ }}
	b.Write([]byte("abc"))
	b.Write([]byte("defgh"))
	b.Write([]byte("ij"))
	if string(b.buf) != "abcde" || !b.overflow || overflows != 1 {
		t.Errorf("buf %q overflow %v calls %d", b.buf, b.overflow, overflows)
	}
}
