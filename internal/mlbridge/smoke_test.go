package mlbridge_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

func TestSupervisor_RoundTrip(t *testing.T) {
	s := mustStart(t, mlbridge.Config{Workers: 1})
	series := `{"series":[[0,1000],[3600,900],[7200,800],[10800,700],[14400,600],[18000,500],[21600,400],[25200,300]],"min_points":8}`
	out, err := s.Infer(ctxTimeout(t, 20*time.Second), "heap-trend", json.RawMessage(series))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Leak  bool    `json:"leak"`
		Slope float64 `json:"slope_bytes_per_hour"`
		Hours float64 `json:"hours_to_exhaustion"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Leak || r.Slope != -100 || r.Hours != 3 {
		t.Fatalf("got %+v, want leak at -100 B/h, 3 h left", r)
	}
}
