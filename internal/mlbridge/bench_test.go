package mlbridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

var payloadSizes = []int{64, 4096}

// pingPong runs b.N length-prefixed round trips of size bytes over nc.
func pingPong(b *testing.B, nc net.Conn, size int) {
	payload := []byte(strings.Repeat("x", size))
	r := bufio.NewReader(nc)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		if err := mlbridge.WriteFrame(nc, payload, 1<<20); err != nil {
			b.Fatal(err)
		}
		if _, err := mlbridge.ReadFrame(r, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareGoEcho is the floor: Go client, Go echo server, same framing.
func BenchmarkBareGoEcho(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			sock := filepath.Join(shortDir(b), "e.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					body, err := mlbridge.ReadFrame(r, 1<<20)
					if err != nil {
						return
					}
					if err := mlbridge.WriteFrame(c, body, 1<<20); err != nil {
						return
					}
				}
			}()
			nc, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			pingPong(b, nc, size)
			nc.Close()
			ln.Close()
			<-done
		})
	}
}

// BenchmarkBarePythonEcho: Go client, minimal asyncio echo server in
// Python (no JSON): the baseline for the worker path.
func BenchmarkBarePythonEcho(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			sock := filepath.Join(shortDir(b), "e.sock")
			cmd := exec.Command(python3, testdata(b, "echo_server.py"), sock)
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
				b.Fatal(err)
			}
			go io.Copy(io.Discard, out) // ends when the process exits
			nc, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			pingPong(b, nc, size)
		})
	}
}

// BenchmarkCall measures one Supervisor.Call at a time to the SDK worker's
// raw echo model: framing, JSON on both sides, dispatch and the pool.
func BenchmarkCall(b *testing.B) {
	s := mustStart(b, mlbridge.Config{Workers: 1, Modules: []string{testdata(b, "testmodels.py")}})
	for _, size := range payloadSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			data := strings.Repeat("x", size)
			ctx := context.Background()
			b.SetBytes(int64(size))
			for b.Loop() {
				resp, err := s.Call(ctx, data, "echo-raw")
				if err != nil || len(resp.Result) != size {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkThroughput measures calls/s with 1, 2 and 4 workers, with enough
// concurrent callers to fill every connection.
func BenchmarkThroughput(b *testing.B) {
	var series [][2]float64
	for i := range 200 {
		series = append(series, [2]float64{float64(i * 60), 200000 - float64(i) + float64(i*7919%13)})
	}
	heap, _ := json.Marshal(map[string]any{"series": series})
	workloads := []struct {
		name, model string
		input       json.RawMessage
	}{
		{"echo", "echo", json.RawMessage(`{"msg":"` + strings.Repeat("x", 200) + `"}`)},
		{"heap-trend-200pts", "heap-trend", heap},
	}
	for _, wl := range workloads {
		for _, workers := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/workers=%d", wl.name, workers), func(b *testing.B) {
				const conns = 4
				s := mustStart(b, mlbridge.Config{Workers: workers, ConnsPerWorker: conns, QueueSize: -1,
					Modules: []string{testdata(b, "testmodels.py")}})
				ctx := context.Background()
				// Warm up: open every connection and the process pools.
				for range workers * conns * 2 {
					if _, err := s.Infer(ctx, wl.model, wl.input); err != nil {
						b.Fatal(err)
					}
				}
				b.SetParallelism((workers*conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				start := time.Now()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Infer(ctx, wl.model, wl.input); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			})
		}
	}
}
