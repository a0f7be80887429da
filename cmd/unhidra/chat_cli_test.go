package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/client"
)

func TestChatCLI(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	for _, n := range []string{"cat", "dan"} {
		if st, body := s.post(t, "/api/v1/auth/register", "", map[string]string{"name": n, "password": "correct horse battery"}); st != 201 {
			t.Fatalf("register %s: %d %v", n, st, body)
		}
	}
	dan := newTestClient(t, s, dir, "dan", "correct horse battery")

	script := strings.Join([]string{
		"correct horse battery", // the password (--password-stdin)
		"/channels",
		"hello from the terminal \x1b[31m",
		"/dm dan psst, dan",
		"older 1",
		"older 2",
		"older 3",
		"/history 2",
		"/more 2",
		"/frobnicate",
		"",
	}, "\n")
	out, errOut, err := runCLI(t, nil, script, "chat", "--url", s.url, "--ca-file", filepath.Join(dir, "tls-cert.pem"), "--user", "cat", "--password-stdin")
	if err != nil {
		t.Fatalf("chat: %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"signed in as cat; current conversation: #general",
		"#general  joined",
		"hello from the terminal ?[31m", // from /more, the escape sequence neutralised
		"(older messages: /more)",
		"unknown command /frobnicate",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// /history 2 shows the last two; /more 2 scrolls back to the two before.
	if i, j := strings.Index(out, "cat: older 3"), strings.LastIndex(out, "cat: older 1"); i < 0 || j < i {
		t.Errorf("scrolling back did not show older messages after newer ones:\n%s", out)
	}
	m := waitMessage(t, dan, func(m *client.Message) bool { return m.Body == "psst, dan" })
	if !strings.HasPrefix(m.Channel, "dmc_") {
		t.Fatalf("the DM arrived in %s", m.Channel)
	}

	if _, _, err := runCLI(t, nil, "wrong password\n", "chat", "--url", s.url, "--ca-file", filepath.Join(dir, "tls-cert.pem"), "--user", "cat", "--password-stdin"); err == nil {
		t.Fatal("signed in with a wrong password")
	}
	if _, _, err := runCLI(t, map[string]string{"UNHIDRA_PASSWORD": "x"}, "", "chat", "--url", "ftp://x", "--user", "cat"); err == nil || exitCode(err) != 2 {
		t.Fatalf("bad URL: %v", err)
	}
}
