package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MemSample is what the server's /metrics say about its memory.
type MemSample struct {
	RSS        float64 // process_resident_memory_bytes
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	StackInuse float64 // go_memstats_stack_inuse_bytes
	Goroutines float64 // go_goroutines
}

// ScrapeMemory reads the server's memory metrics.
func ScrapeMemory(ctx context.Context, client *http.Client, metricsURL string) (MemSample, error) {
	var m MemSample
	req, err := http.NewRequestWithContext(ctx, "GET", metricsURL, nil)
	if err != nil {
		return m, err
	}
	res, err := client.Do(req)
	if err != nil {
		return m, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return m, fmt.Errorf("scrape %s: %s", metricsURL, res.Status)
	}
	want := map[string]*float64{
		"process_resident_memory_bytes": &m.RSS,
		"go_memstats_heap_inuse_bytes":  &m.HeapInuse,
		"go_memstats_stack_inuse_bytes": &m.StackInuse,
		"go_goroutines":                 &m.Goroutines,
	}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if p, ok := want[name]; ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				*p = v
			}
		}
	}
	if m.RSS == 0 && m.HeapInuse == 0 {
		return m, fmt.Errorf("scrape %s: no memory metrics found", metricsURL)
	}
	return m, sc.Err()
}

// Percentiles returns the given percentiles (0–100) of ds.
func Percentiles(ds []time.Duration, ps ...float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(ds) == 0 {
		return out
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	for i, p := range ps {
		idx := int(p / 100 * float64(len(s)-1))
		out[i] = s[min(max(idx, 0), len(s)-1)]
	}
	return out
}
