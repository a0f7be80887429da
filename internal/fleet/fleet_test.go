package fleet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/fleet"
	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestMain(m *testing.M) {
	if os.Getenv("UNHIDRA_FLEET_HELPER_SERVER") != "" {
		helperServer()
		return
	}
	goleak.VerifyTestMain(m)
}

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("unhidra_dk_d%d_secret%08d", i, i)
	}
	return ks
}

// firmwareServer checks what the simulated devices send.
type firmwareServer struct {
	url  string
	pool *x509.CertPool
	fp   []byte

	mu         sync.Mutex
	problems   []string
	conns      map[string]int     // key → connections
	lastTS     map[string]float64 // key → last heartbeat ts
	lastHeap   map[string]float64
	heartbeats map[string]int
	acked      map[string]bool
	closeWith  map[string]int // key → close code for its first connection
	sources    map[string]bool
	curves     map[tls.CurveID]int // key-exchange groups offered in ClientHellos, by position 0 or later
	firstCurve map[tls.CurveID]int // the group each ClientHello offered first
}

func (s *firmwareServer) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func newFirmwareServer(t testing.TB, known []string) *firmwareServer {
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	s := &firmwareServer{pool: x509.NewCertPool(), conns: map[string]int{}, lastTS: map[string]float64{}, lastHeap: map[string]float64{},
		heartbeats: map[string]int{}, acked: map[string]bool{}, closeWith: map[string]int{}, sources: map[string]bool{},
		curves: map[tls.CurveID]int{}, firstCurve: map[tls.CurveID]int{}}
	s.pool.AppendCertsFromPEM(certPEM)
	fp, _ := agent.ParsePin(tlscert.Fingerprint(cert.Certificate[0]))
	s.fp = fp
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Protocol")
		if !isKnown[key] || len(r.Header.Values("Sec-WebSocket-Protocol")) != 1 || r.URL.RawQuery != "" {
			s.problem("bad handshake: %q %q", key, r.URL)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		host, _, _ := strings.Cut(r.RemoteAddr, ":")
		s.mu.Lock()
		s.conns[key]++
		first := s.conns[key] == 1
		code := s.closeWith[key]
		s.sources[host] = true
		s.mu.Unlock()
		ctx := context.Background()
		id := "dev_" + strings.Split(key, "_")[2]
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"welcome","session":"s","identity":{"id":"`+id+`","kind":"device"},"heartbeat_interval":60}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"command","id":"cmd_1","command":"ping","params":{}}`))
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var m map[string]any
			json.Unmarshal(data, &m)
			switch m["type"] {
			case "heartbeat":
				if len(m) != 4 || m["device_id"] != id {
					s.problem("heartbeat shape %s", data)
				}
				ts, _ := m["ts"].(float64)
				heap, _ := m["free_heap"].(float64)
				s.mu.Lock()
				if ts < s.lastTS[key] || (s.lastHeap[key] != 0 && heap > s.lastHeap[key]) || heap <= 0 {
					s.problems = append(s.problems, fmt.Sprintf("%s: ts %v after %v, heap %v after %v", id, ts, s.lastTS[key], heap, s.lastHeap[key]))
				}
				s.lastTS[key], s.lastHeap[key] = ts, heap
				s.heartbeats[key]++
				n := s.heartbeats[key]
				s.mu.Unlock()
				if first && code != 0 && n >= 2 {
					c.Close(websocket.StatusCode(code), "test")
					return
				}
			case "ack":
				if m["id"] != "cmd_1" || m["ok"] != true || m["result"] != "pong" {
					s.problem("ack %s", data)
				}
				s.mu.Lock()
				s.acked[key] = true
				s.mu.Unlock()
			default:
				s.problem("unexpected frame %s", data)
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range h.SupportedCurves {
			s.curves[c]++
		}
		if len(h.SupportedCurves) > 0 {
			s.firstCurve[h.SupportedCurves[0]]++
		}
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); wg.Wait() })
	s.url = "wss://" + srv.Listener.Addr().String() + "/ws"
	return s
}

func TestRun_FirmwareBehaviour(t *testing.T) {
	ks := keys(30)
	s := newFirmwareServer(t, ks)
	s.closeWith[ks[0]] = 4000 // reconnects
	s.closeWith[ks[1]] = 4001 // reconnects
	s.closeWith[ks[2]] = 4501 // revoked: stops
	var out strings.Builder
	var mu sync.Mutex
	var reports []fleet.Report
	rep, err := fleet.Run(context.Background(), fleet.Options{
		URL: s.url, Keys: ks, Devices: 30, Duration: 3 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond, PingInterval: 200 * time.Millisecond,
		Ramp: 1000, ReportEvery: time.Second, RootCAs: s.pool,
		Backoff:     agent.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		SourceAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")},
		Out:         &out,
		Progress:    func(r fleet.Report) { mu.Lock(); reports = append(reports, r); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) > 0 {
		t.Errorf("server saw problems:\n%s", strings.Join(s.problems[:min(10, len(s.problems))], "\n"))
	}
	if rep.Connected != 29 || rep.PeakConnected < 29 || rep.PeakConnected > 30 || rep.Terminal != 1 || rep.Reconnects != 2 || rep.Handshakes != 32 {
		t.Errorf("report %v", rep)
	}
	if rep.Acks < 32 || rep.Heartbeats < 30*15 || rep.HandshakeP50 <= 0 || rep.HandshakeP99 < rep.HandshakeP50 || rep.HandshakeMax < rep.HandshakeP99 {
		t.Errorf("report %v", rep)
	}
	for i, k := range ks {
		if i == 2 {
			continue // revoked after its second heartbeat
		}
		if s.heartbeats[k] < 15 || !s.acked[k] {
			t.Errorf("device %d: %d heartbeats, acked %v", i, s.heartbeats[k], s.acked[k])
		}
	}
	if s.conns[ks[2]] != 1 || s.conns[ks[0]] != 2 {
		t.Errorf("connections: revoked %d, reconnecting %d", s.conns[ks[2]], s.conns[ks[0]])
	}
	if len(s.sources) != 3 {
		t.Errorf("connections came from %v, want 3 source addresses", s.sources)
	}
	if len(reports) < 2 || !strings.Contains(out.String(), "final devices=30 connected=29") {
		t.Errorf("%d periodic reports; output:\n%s", len(reports), out.String())
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("a key leaked into the output:\n%s", out.String())
	}
	// The firmware's TLS stack (mbedTLS) leads with X25519 and has no
	// post-quantum hybrid; Go's default would lead with X25519MLKEM768.
	if int64(s.firstCurve[tls.X25519]) != rep.Handshakes || s.curves[tls.X25519MLKEM768] != 0 {
		t.Errorf("ClientHellos offered first %v, all %v; want X25519 first in all %d and no X25519MLKEM768", s.firstCurve, s.curves, rep.Handshakes)
	}
}

func TestRun_PinAndRefusals(t *testing.T) {
	ks := keys(3)
	s := newFirmwareServer(t, ks[:2]) // the third key is refused with 401
	wrong := append([]byte(nil), s.fp...)
	wrong[0] ^= 1
	rep, err := fleet.Run(context.Background(), fleet.Options{URL: s.url, Keys: ks, Devices: 3, Duration: time.Second, PinSHA256: s.fp, Ramp: 1000})
	if err != nil || rep.Connected != 2 || rep.Terminal != 1 {
		t.Errorf("pinned: %v %v", rep, err)
	}
	rep, err = fleet.Run(context.Background(), fleet.Options{URL: s.url, Keys: ks, Devices: 2, Duration: 500 * time.Millisecond, PinSHA256: wrong, Ramp: 1000,
		Backoff: agent.Backoff{Initial: 50 * time.Millisecond}})
	if err != nil || rep.Handshakes != 0 || rep.Errors == 0 || !strings.Contains(strings.Join(rep.LastErrors, " "), "pin") {
		t.Errorf("wrong pin: %v %v", rep, err)
	}
}

func TestRun_Hostile(t *testing.T) {
	ks := keys(2)
	for name, o := range map[string]fleet.Options{
		"too many devices": {URL: "wss://h/ws", Keys: ks, Devices: fleet.MaxDevices + 1, Duration: time.Second},
		"fewer keys":       {URL: "wss://h/ws", Keys: ks, Devices: 3, Duration: time.Second},
		"bad key":          {URL: "wss://h/ws", Keys: []string{"a b"}, Devices: 1, Duration: time.Second},
		"no duration":      {URL: "wss://h/ws", Keys: ks, Devices: 1},
		"long duration":    {URL: "wss://h/ws", Keys: ks, Devices: 1, Duration: 48 * time.Hour},
		"query":            {URL: "wss://h/ws?k=1", Keys: ks, Devices: 1, Duration: time.Second},
		"http":             {URL: "http://h/ws", Keys: ks, Devices: 1, Duration: time.Second},
		"tiny heartbeat":   {URL: "wss://h/ws", Keys: ks, Devices: 1, Duration: time.Second, HeartbeatInterval: time.Microsecond},
		"bad pin":          {URL: "wss://h/ws", Keys: ks, Devices: 1, Duration: time.Second, PinSHA256: []byte{1}},
	} {
		if _, err := fleet.Run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadKeys(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/keys"
	os.WriteFile(p, []byte("# keys\nunhidra_dk_a_1\n\n  unhidra_dk_b_2  \r\n"), 0o600)
	ks, err := fleet.ReadKeys(p)
	if err != nil || len(ks) != 2 || ks[1] != "unhidra_dk_b_2" {
		t.Fatalf("ReadKeys = %q, %v", ks, err)
	}
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"world readable": {"unhidra_dk_a_1\n", 0o644},
		"duplicate":      {"unhidra_dk_a_1\nunhidra_dk_a_1\n", 0o600},
		"bad key":        {"unhidra_dk_a_1\nbad key here\n", 0o600},
		"empty":          {"# nothing\n", 0o600},
		"long line":      {strings.Repeat("k", 5000) + "\n", 0o600},
	} {
		q := dir + "/" + strings.ReplaceAll(name, " ", "_")
		os.WriteFile(q, []byte(c.content), c.mode)
		os.Chmod(q, c.mode)
		if _, err := fleet.ReadKeys(q); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "unhidra_dk_a_1") || strings.Contains(err.Error(), "bad key here") {
			t.Errorf("%s: error shows a key: %v", name, err)
		}
	}
}

// helperServer runs in a child process for TestFleet_Memory, so the
// server's memory does not count against the simulated devices.
func helperServer() {
	n, _ := strconv.Atoi(os.Getenv("UNHIDRA_FLEET_HELPER_SERVER"))
	certPEM, keyPEM, _ := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), time.Hour)
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(context.Background(), websocket.MessageText, []byte(`{"type":"welcome","session":"s","identity":{"id":"dev","kind":"device"}}`))
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	fmt.Printf("%s %s %d\n", srv.Listener.Addr(), tlscert.Fingerprint(cert.Certificate[0]), n)
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}

// TestFleet_Memory measures the client memory per connected simulated
// device. It runs when UNHIDRA_FLEET_MEM gives a device count (e.g. 5000).
func TestFleet_Memory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("UNHIDRA_FLEET_MEM"))
	if n == 0 {
		t.Skip("set UNHIDRA_FLEET_MEM=<devices> to measure memory per simulated device")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "UNHIDRA_FLEET_HELPER_SERVER="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var addr, fp string
	fmt.Fscan(bufio.NewReader(stdout), &addr, &fp)
	pin, err := agent.ParsePin(fp)
	if err != nil {
		t.Fatal(err)
	}
	before := memNow()
	var once sync.Once
	var at memSample
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(done)
		rep, err := fleet.Run(ctx, fleet.Options{
			URL: "wss://" + addr + "/ws", Keys: keys(n), Devices: n, Duration: 5 * time.Minute, PinSHA256: pin,
			Ramp: 2000, ReportEvery: 500 * time.Millisecond,
			Progress: func(r fleet.Report) {
				if r.Connected == int64(n) {
					once.Do(func() {
						time.Sleep(2 * time.Second) // let buffers settle
						at = memNow()
						if p := os.Getenv("UNHIDRA_FLEET_HEAPPROFILE"); p != "" {
							if f, err := os.Create(p); err == nil {
								pprof.WriteHeapProfile(f)
								f.Close()
							}
						}
						cancel()
					})
				}
			},
		})
		t.Logf("%v %v", rep, err)
	}()
	<-done
	if at.rss == 0 {
		t.Fatal("the fleet never fully connected")
	}
	t.Logf("%d devices connected: RSS %d KiB → %d KiB (%.1f KiB/device); Go heap+stacks %.1f KiB/device; goroutines %d (%.2f/device)",
		n, before.rss>>10, at.rss>>10, float64(at.rss-before.rss)/1024/float64(n),
		float64(at.heapStack-before.heapStack)/1024/float64(n), at.goroutines, float64(at.goroutines-before.goroutines)/float64(n))
}

type memSample struct {
	rss, heapStack uint64
	goroutines     int
}

func memNow() memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{heapStack: ms.HeapInuse + ms.StackInuse, goroutines: runtime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				s.rss = kb << 10
			}
		}
	}
	return s
}
