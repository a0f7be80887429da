package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/testenv"
)

// buildBinary builds unhidra into a temporary directory of t.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "unhidra")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is `unhidra serve` running as a child process.
type process struct {
	cmd *exec.Cmd
	url string
}

var urlRE = regexp.MustCompile(`listening on (https://[0-9.:]+)`)

func startProcess(t *testing.T, bin, dataDir string, extra ...string) *process {
	t.Helper()
	return startProcessEnv(t, bin, dataDir, nil, extra...)
}

// startProcessEnv is startProcess with extra environment variables.
func startProcessEnv(t *testing.T, bin, dataDir string, env []string, extra ...string) *process {
	t.Helper()
	os.Chmod(dataDir, 0o700) // t.TempDir makes 0755 directories; the server refuses those
	args := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn", "--message-rate", "10000", "--message-burst", "10000", "--send-rate", "100000", "--send-burst", "100000"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "UNHIDRA_ADMIN_PASSWORD=crash test password", "UNHIDRA_ADMIN_NAME=ops"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	found := make(chan string, 1)
	go func() { // ends when the process's stdout closes
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
	select {
	case p.url = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("server process did not start")
	}
	return p
}

type ackRecord struct {
	messageID string
	seq       int64
}

// TestCrash_SIGKILLLosesNoAckedMessage sends over real WebSockets to a
// server process, kills it with SIGKILL mid-stream, restarts it and checks
// that every acknowledged message is in history with its seq, and that the
// seqs are gap-free.
func TestCrash_SIGKILLLosesNoAckedMessage(t *testing.T) {
	bin := buildBinary(t)
	t.Run("sqlite", func(t *testing.T) { crashTest(t, bin) })
	t.Run("postgres", func(t *testing.T) { crashTest(t, bin, "--store", testenv.PostgresDSN(t)) })
}

func crashTest(t *testing.T, bin string, extra ...string) {
	dir := t.TempDir()
	p := startProcess(t, bin, dir, extra...)
	s := &server{url: p.url, client: trustingClient(t, dir)}
	st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "ops", "password": "crash test password"})
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	token := body["access_token"].(string)

	const senders, killAfter = 8, 300
	var mu sync.Mutex
	acked := map[string]ackRecord{} // client id → ack
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for i := range senders {
		c := dialWS(t, s.client, s.url, token)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				id := fmt.Sprintf("s%d-%d", i, j)
				if c.send(map[string]any{"type": "send", "id": id, "channel": unhidra.GeneralChannelID, "body": id}) != nil {
					return
				}
				for {
					f, err := c.read(30 * time.Second)
					if err != nil {
						return // the server died
					}
					if f["type"] == "ack" && f["id"] == id {
						mu.Lock()
						acked[id] = ackRecord{f["message_id"].(string), int64(f["seq"].(float64))}
						if len(acked) >= killAfter {
							once.Do(func() { close(enough) })
						}
						mu.Unlock()
						break
					}
					if f["type"] == "error" && f["id"] == id {
						t.Errorf("send %s: %v", id, f)
						return
					}
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatal("not enough acks")
	}
	// Kill mid-stream: senders are still sending.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	wg.Wait()

	p2 := startProcess(t, bin, dir, extra...)
	s2 := &server{url: p2.url, client: trustingClient(t, dir)}
	stored := map[string]int64{} // body (= client id) → seq
	var after int64
	for {
		st, page := s2.get(t, fmt.Sprintf("/api/v1/channels/%s/messages?after=%d&limit=200", unhidra.GeneralChannelID, after), token)
		if st != 200 {
			t.Fatalf("history after restart: %d %v", st, page)
		}
		msgs := page["messages"].([]any)
		for _, m := range msgs {
			m := m.(map[string]any)
			seq := int64(m["seq"].(float64))
			if seq != after+1 {
				t.Fatalf("history has seq %d after %d: a gap", seq, after)
			}
			after = seq
			stored[m["body"].(string)] = seq
		}
		if page["has_more"] != true {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, a := range acked {
		seq, ok := stored[id]
		if !ok {
			t.Errorf("acknowledged message %s (seq %d) lost in the crash", id, a.seq)
		} else if seq != a.seq {
			t.Errorf("message %s: acked seq %d, stored seq %d", id, a.seq, seq)
		}
	}
	t.Logf("%d acknowledged before SIGKILL, %d stored (unacknowledged ones may survive too)", len(acked), len(stored))
	if len(stored) < len(acked) {
		t.Fatalf("fewer stored (%d) than acknowledged (%d)", len(stored), len(acked))
	}
}
