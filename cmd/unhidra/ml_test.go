package main

import (
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// TestServe_ML runs real Python workers behind the API: the built-in
// models answer known questions, and a protocol-only worker in the style of
// the seed's mock works unmodified through --ml-worker.
func TestServe_ML(t *testing.T) {
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, t.TempDir(), env, "--ml-workers", "1")
	_, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	token := body["access_token"].(string)

	st, body := s.get(t, "/api/v1/ml/models", token)
	if st != 200 {
		t.Fatalf("models: %d %v", st, body)
	}
	names := map[string]bool{}
	for _, m := range body["models"].([]any) {
		names[m.(map[string]any)["name"].(string)] = true
	}
	for _, want := range []string{"heap-trend", "telemetry-anomaly", "summarize"} {
		if !names[want] {
			t.Errorf("model %s not listed: %v", want, names)
		}
	}

	// A device losing 2 KiB an hour for two days, starting at 200,000 bytes.
	var series [][2]float64
	for h := 0; h < 48; h++ {
		series = append(series, [2]float64{float64(1_700_000_000 + h*3600), float64(200_000 - h*2048)})
	}
	st, body = s.post(t, "/api/v1/ml/infer", token, map[string]any{"model": "heap-trend", "input": map[string]any{"series": series, "min_points": 24}})
	if st != 200 {
		t.Fatalf("heap-trend: %d %v", st, body)
	}
	res := body["result"].(map[string]any)
	if res["leak"] != true {
		t.Fatalf("a steady leak was not detected: %v", res)
	}
	if slope := res["slope_bytes_per_hour"].(float64); slope > -2000 || slope < -2100 {
		t.Fatalf("slope %v, want about -2048", slope)
	}
	// 200,000 - 47×2048 = 103,744 bytes left at 2,048/h: about 50.7 hours.
	if h := res["hours_to_exhaustion"].(float64); h < 45 || h > 56 {
		t.Fatalf("hours to exhaustion %v, want about 50.7", h)
	}

	// Hostile input gets a clear 4xx, not a 5xx.
	for _, bad := range []map[string]any{
		{"model": "no-such-model", "input": map[string]any{}},
		{"model": "heap-trend", "input": map[string]any{"series": "nonsense"}},
	} {
		if st, body := s.post(t, "/api/v1/ml/infer", token, bad); st < 400 || st >= 500 {
			t.Errorf("%v → %d %v", bad, st, body)
		}
	}
	if st, _ := s.post(t, "/api/v1/ml/infer", "", map[string]any{"model": "heap-trend", "input": map[string]any{}}); st != 401 {
		t.Errorf("unauthenticated inference: %d", st)
	}
	st, body = s.get(t, "/api/v1/admin/ml/workers", token)
	if st != 200 || len(body["workers"].([]any)) != 1 || body["workers"].([]any)[0].(map[string]any)["pid"].(float64) == 0 {
		t.Fatalf("worker status: %d %v", st, body)
	}
}

func TestServe_ForeignWorker(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	mock := filepath.Join(filepath.Dir(file), "..", "..", "internal", "mlbridge", "testdata", "mock_worker.py")
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, t.TempDir(), env, "--ml-workers", "1", "--ml-worker", "python3 '"+mock+"'")
	_, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	token := body["access_token"].(string)
	st, body := s.post(t, "/api/v1/ml/infer", token, map[string]any{"model": "anything", "input": map[string]any{"x": 1}})
	if st != 200 {
		t.Fatalf("protocol-only worker: %d %v", st, body)
	}
	// It cannot list models: the list is empty, not an error.
	st, body = s.get(t, "/api/v1/ml/models", token)
	if models, ok := body["models"].([]any); st != 200 || !ok || len(models) != 0 {
		t.Fatalf("models with a protocol-only worker: %d %v", st, body)
	}
}

func TestSplitCommand(t *testing.T) {
	cases := map[string][]string{
		``:                            nil,
		`python3 worker.py`:           {"python3", "worker.py"},
		`  a   "b c"  'd "e"' f\ g  `: {"a", "b c", `d "e"`, "f g"},
		`x ''`:                        {"x", ""},
		`$(rm -rf /) ; echo`:          {"$(rm", "-rf", "/)", ";", "echo"}, // words, never a shell
	}
	for in, want := range cases {
		got, err := splitCommand(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"open`, `trailing\`, "a\x00b", "a\nb"} {
		if _, err := splitCommand(bad); err == nil && !strings.Contains(bad, "\n") {
			t.Errorf("splitCommand(%q) accepted", bad)
		}
	}
}
