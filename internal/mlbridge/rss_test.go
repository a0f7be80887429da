package mlbridge_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

// workerRSSCapMiB is the documented cap (docs/ml.md) on the peak resident
// memory of one worker (its server process and its pool child together)
// while it computes a built-in model's largest accepted input.
const workerRSSCapMiB = 256

// vmHWMKiB reads a process's peak resident set size.
func vmHWMKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// treePeakKiB sums the peak RSS of pid and its descendants.
func treePeakKiB(t *testing.T, pid int) (total int, parts []string) {
	t.Helper()
	total = vmHWMKiB(t, pid)
	parts = append(parts, fmt.Sprintf("%d:%dKiB", pid, total))
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		c, _ := strconv.Atoi(f)
		n, p := treePeakKiB(t, c)
		total += n
		parts = append(parts, p...)
	}
	return total, parts
}

func worstInputs() map[string]any {
	// heap-trend: 1,200 points, 1,000 in one segment (quadratic in it).
	var series [][2]float64
	ts := 1_700_000_000.0
	for i := range 1200 {
		ts++
		series = append(series, [2]float64{ts, float64(200_000 - (i%1000)*3 + (i*7919)%13)})
	}
	heap := map[string]any{"series": series, "reboots": []float64{series[999][0] + 0.5}}
	// telemetry-anomaly: 200,000 points across two metrics.
	metric := func(seed int) [][2]float64 {
		out := make([][2]float64, 100_000)
		for i := range out {
			out[i] = [2]float64{float64(1_700_000_000 + i), float64((i*seed)%997) / 7}
		}
		return out
	}
	anomaly := map[string]any{"metrics": map[string]any{"a": metric(7919), "b": metric(104729)}}
	// summarize: 5,000 messages, about 1,000,000 characters of varied words.
	words := strings.Fields("the sensor fleet reported heap growth after the firmware update while the gateway " +
		"restarted twice and operators asked whether the leak came from telemetry buffers or the radio stack")
	msgs := make([]map[string]any, 5000)
	for i := range msgs {
		var b strings.Builder
		for j := 0; b.Len() < 200; j++ {
			b.WriteString(words[(i*7+j*3)%len(words)])
			if j%9 == 8 {
				b.WriteString(". ")
			} else {
				b.WriteString(" ")
			}
		}
		msgs[i] = map[string]any{"from": fmt.Sprintf("user%d", i%40), "body": b.String()[:180] + ".", "ts": i}
	}
	summ := map[string]any{"messages": msgs, "max_sentences": 5}
	return map[string]any{"heap-trend": heap, "telemetry-anomaly": anomaly, "summarize": summ}
}

// TestWorker_WorstInputRSS: each built-in model's largest accepted input
// (within mlbridge.BuiltinLimits, checked here) keeps the worker's peak
// RSS, server process and pool child together, under workerRSSCapMiB.
func TestWorker_WorstInputRSS(t *testing.T) {
	for model, input := range worstInputs() {
		t.Run(model, func(t *testing.T) {
			raw := mustJSON(t, input)
			if err := mlbridge.CheckInput(model, raw); err != nil {
				t.Fatalf("the worst input must be accepted: %v", err)
			}
			s := mustStart(t, mlbridge.Config{Workers: 1, ProcessesPerWorker: 1})
			if _, err := s.Infer(ctxTimeout(t, 60*time.Second), model, raw); err != nil {
				t.Fatalf("%d-byte input: %v", len(raw), err)
			}
			kib, parts := treePeakKiB(t, s.Status()[0].PID)
			t.Logf("%s: %d-byte input, worker peak RSS %.1f MiB (%s)", model, len(raw), float64(kib)/1024, strings.Join(parts, " "))
			if kib > workerRSSCapMiB*1024 {
				t.Errorf("%s: worker peak RSS %.1f MiB, over the documented %d MiB cap", model, float64(kib)/1024, workerRSSCapMiB)
			}
		})
	}
}
