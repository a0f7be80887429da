package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testKey = "unhidra_dk_dev9_cmdlinesecret000"

// deviceServer is a TLS WebSocket server that welcomes a device and hands
// its frames to the test; closeWith, when set, ends each connection with
// that code after the first heartbeat.
type deviceServer struct {
	url    string
	caFile string
	fp     string
	frames chan map[string]any
	protos chan string

	mu        sync.Mutex
	closeWith int
}

func newDeviceServer(t *testing.T) *deviceServer {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d := &deviceServer{frames: make(chan map[string]any, 256), protos: make(chan string, 16)}
	d.caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(d.caFile, certPEM, 0o644)
	d.fp = tlscert.Fingerprint(cert.Certificate[0])
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.protos <- r.Header.Get("Sec-WebSocket-Protocol")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		ctx := r.Context()
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"welcome","session":"s","identity":{"id":"dev_9","name":"d","kind":"device"},"heartbeat_interval":60,"ping_interval":30,"idle_timeout":90}`))
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			json.Unmarshal(data, &m)
			select {
			case d.frames <- m:
			default:
			}
			d.mu.Lock()
			code := d.closeWith
			d.mu.Unlock()
			if code != 0 && m["type"] == "heartbeat" {
				c.Close(websocket.StatusCode(code), "revoked")
				return
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); wg.Wait() })
	d.url = "wss://" + srv.Listener.Addr().String() + "/ws"
	return d
}

func (d *deviceServer) heartbeat(t *testing.T) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-d.frames:
			if m["type"] == "heartbeat" {
				return m
			}
		case <-timeout:
			t.Fatal("no heartbeat")
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRun_ConnectsAndStopsOnTerminalClose(t *testing.T) {
	d := newDeviceServer(t)
	var stderr syncBuf
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- run(ctx, []string{"unhidra-agent", "--url", d.url, "--ca-file", d.caFile, "--log-level", "debug"},
			envFrom(map[string]string{"UNHIDRA_DEVICE_KEY": testKey, "UNHIDRA_HEARTBEAT_INTERVAL": "1s"}), &stderr)
	}()
	if p := <-d.protos; p != testKey {
		t.Errorf("Sec-WebSocket-Protocol %q", p)
	}
	hb := d.heartbeat(t)
	if hb["device_id"] != "dev_9" || hb["ts"].(float64) <= 0 || hb["free_heap"].(float64) <= 0 {
		t.Errorf("heartbeat %v", hb)
	}
	d.heartbeat(t) // the environment's 1 s interval is in force
	d.mu.Lock()
	d.closeWith = 4501
	d.mu.Unlock()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on 4501")
	}
	var te *agent.TerminalError
	if !errors.As(err, &te) || exitCode(err) != exitTerminal || !strings.Contains(err.Error(), "4501") {
		t.Fatalf("run = %v (exit %d)", err, exitCode(err))
	}
	if strings.Contains(stderr.String(), testKey) {
		t.Errorf("key in the logs:\n%s", stderr.String())
	}
}

func TestRun_PinAndKeyFileAndConfigFile(t *testing.T) {
	d := newDeviceServer(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600)
	conf := filepath.Join(dir, "agent.conf")
	// The file sets the URL and a heartbeat; the flag below overrides the
	// device id the file sets.
	os.WriteFile(conf, []byte("# agent\nurl = "+d.url+"\npin-sha256 = \""+d.fp+"\"\nheartbeat-interval = 1s\ndevice-id = from-file\nsubprotocol = true\n"), 0o600)
	var stderr syncBuf
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		done <- run(ctx, []string{"unhidra-agent", "--config", conf, "--key-file", keyFile, "--device-id", "from-flag"}, envFrom(nil), &stderr)
	}()
	if p := <-d.protos; p != testKey+", unhidra.v1" {
		t.Errorf("Sec-WebSocket-Protocol %q", p)
	}
	if hb := d.heartbeat(t); hb["device_id"] != "from-flag" {
		t.Errorf("heartbeat %v", hb)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

func TestRun_UsageErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open-key")
	os.WriteFile(open, []byte(testKey), 0o644)
	os.Chmod(open, 0o644)
	badConf := filepath.Join(dir, "bad.conf")
	os.WriteFile(badConf, []byte("device-key = "+testKey+"\n"), 0o600)
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no url":          {nil, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "--url is required"},
		"no key":          {[]string{"--url", "wss://h/ws"}, nil, "no device key"},
		"both keys":       {[]string{"--url", "wss://h/ws", "--key-file", open}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "use one"},
		"world readable":  {[]string{"--url", "wss://h/ws", "--key-file", open}, nil, "readable by everyone"},
		"plaintext":       {[]string{"--url", "ws://h/ws"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "must be wss"},
		"key in url":      {[]string{"--url", "wss://h/ws?key=" + testKey}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "query"},
		"no key flag":     {[]string{"--url", "wss://h/ws", "--key", testKey}, nil, "not defined"},
		"bad pin":         {[]string{"--url", "wss://h/ws", "--pin-sha256", "abc"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "64 hex digits"},
		"bad env value":   {[]string{"--url", "wss://h/ws"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey, "UNHIDRA_PING_INTERVAL": "often"}, "UNHIDRA_PING_INTERVAL"},
		"key in config":   {[]string{"--url", "wss://h/ws", "--config", badConf}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "unknown setting"},
		"bad jitter":      {[]string{"--url", "wss://h/ws", "--backoff-jitter", "3"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "between 0 and 1"},
		"stray argument":  {[]string{"--url", "wss://h/ws", "extra"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "unexpected argument"},
		"bad key in env":  {[]string{"--url", "wss://h/ws"}, map[string]string{"UNHIDRA_DEVICE_KEY": "a,b"}, "not allowed"},
		"tiny heartbeat":  {[]string{"--url", "wss://h/ws", "--heartbeat-interval", "1ms"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "heartbeat interval"},
		"relative hook":   {[]string{"--url", "wss://h/ws", "--command-hook", "x.sh"}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "absolute"},
		"missing ca file": {[]string{"--url", "wss://h/ws", "--ca-file", filepath.Join(dir, "none")}, map[string]string{"UNHIDRA_DEVICE_KEY": testKey}, "CA file"},
	} {
		var stderr syncBuf
		err := run(context.Background(), append([]string{"unhidra-agent"}, c.args...), envFrom(c.env), &stderr)
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error()+stderr.String(), c.want) {
			t.Errorf("%s: err %v (exit %d), want usage error containing %q", name, err, exitCode(err), c.want)
		}
		if err != nil && strings.Contains(err.Error()+stderr.String(), testKey) {
			t.Errorf("%s: key echoed: %v", name, err)
		}
	}
}
