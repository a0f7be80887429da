package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServe_HealthzUnderIdleSockets: a server process with an open-file
// limit of 1,024 holds 1,100 idle TCP sockets from 8 loopback addresses
// (more than it has descriptors for); /healthz from another address still
// answers within 100 ms.
func TestServe_HealthzUnderIdleSockets(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	cmd := exec.Command("bash", "-c", `ulimit -n 1024 && exec "$0" "$@"`, bin, "serve", "--data-dir", dir,
		"--listen", "127.0.0.1:0", "--log-level", "warn", "--ml-workers", "0", "--system-bot=false")
	cmd.Env = append(os.Environ(), "UNHIDRA_ADMIN_PASSWORD=idle sockets test")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var url string
	select {
	case url = <-found:
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start: %s", stderr.String())
	}
	addr := strings.TrimPrefix(url, "https://")

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 1100 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue // refused at once: fine
		}
		held = append(held, c)
	}
	time.Sleep(300 * time.Millisecond) // let the server accept (and refuse) them all

	pem, err := os.ReadFile(filepath.Join(dir, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 20)}}).DialContext,
	}}
	var worst time.Duration
	for range 5 {
		start := time.Now()
		res, err := client.Get(url + "/healthz")
		d := time.Since(start)
		if err != nil {
			t.Fatalf("/healthz with %d idle sockets held: %v after %v", len(held), err, d)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("/healthz: %d", res.StatusCode)
		}
		worst = max(worst, d)
	}
	t.Logf("/healthz worst of 5: %v with %d idle sockets connected", worst, len(held))
	if worst > 100*time.Millisecond {
		t.Fatalf("/healthz took %v, want ≤ 100 ms", worst)
	}
	if strings.Contains(stderr.String(), "too many open files") && !strings.Contains(stderr.String(), "level=WARN") {
		t.Fatalf("accept errors not logged at WARN: %s", stderr.String())
	}
}
