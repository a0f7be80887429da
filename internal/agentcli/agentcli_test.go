package agentcli_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/agentcli"
)

// Flags beat the environment, which beats the config file.
func TestParseFlags_Precedence(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "agent.conf")
	os.WriteFile(conf, []byte("url = wss://file/ws\nping-interval = 11s\nheartbeat-interval = 12s\ndevice-id = file\n"), 0o600)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := agentcli.Define(fs)
	env := map[string]string{"UNHIDRA_CONFIG": conf, "UNHIDRA_PING_INTERVAL": "21s", "UNHIDRA_DEVICE_ID": "env", "UNHIDRA_DEVICE_KEY": "unhidra_dk_a_b"}
	if err := agentcli.ParseFlags(fs, []string{"--device-id", "flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if f.URL != "wss://file/ws" || f.Ping != 21*time.Second || f.Heartbeat != 12*time.Second || f.DeviceID != "flag" {
		t.Errorf("url %q ping %v heartbeat %v device %q", f.URL, f.Ping, f.Heartbeat, f.DeviceID)
	}
	cfg, err := f.AgentConfig(func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.Key != "unhidra_dk_a_b" || cfg.PingInterval != 21*time.Second || cfg.Backoff.Jitter != 0.3 {
		t.Errorf("config %+v, %v", cfg, err)
	}
}

func TestParseFlags_HostileFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown":   "colour = blue\n",
		"twice":     "url = a\nurl = b\n",
		"no equals": "url\n",
		"control":   "url = wss://h/ws\x1b[31m\n",
		"config":    "config = other\n",
		"bad value": "ping-interval = soon\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		agentcli.Define(fs)
		err := agentcli.ParseFlags(fs, []string{"--config", p}, func(string) string { return "" })
		if _, ok := err.(agentcli.UsageError); !ok && err != nil {
			// errors.Join of usage errors for bad values
			t.Logf("%s: %v", name, err)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 2<<20), 0o600)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	agentcli.Define(fs)
	if err := agentcli.ParseFlags(fs, []string{"--config", big}, func(string) string { return "" }); err == nil {
		t.Error("oversized config file accepted")
	}
}
