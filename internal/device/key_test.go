package device

import (
	"context"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

func TestKey_Format(t *testing.T) {
	key, keyID, digest := newKey()
	if !strings.HasPrefix(key, KeyPrefix) || len(key) != keyLen {
		t.Fatalf("key %q has the wrong shape", key[:len(KeyPrefix)])
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			t.Fatalf("key has a non-token character %q", c)
		}
	}
	if id, ok := parseKey(key); !ok || id != keyID {
		t.Fatalf("parseKey(own key) = %q, %v", id, ok)
	}
	if digest != keyDigest(key) || strings.Contains(digest, key) || len(digest) != 64 {
		t.Fatal("digest is not the SHA-256 of the key")
	}
	other, _, _ := newKey()
	if other == key {
		t.Fatal("two keys are equal")
	}
	if pk := NewKey(); pk == key || pk == other {
		t.Fatal("NewKey repeated a key")
	} else if _, ok := parseKey(pk); !ok {
		t.Fatal("NewKey's key does not parse")
	}
	hex64 := strings.Repeat("a", 64)
	for _, bad := range []string{
		"", "unhidra_dk_", key[:len(key)-1], key + "0",
		"unhidra_dk_ABCDEF0123456789_" + hex64, // upper case
		"unhidra_dk_0123456789abcdef-" + hex64, // wrong separator
		"unhidra_dk_0123456789abcdeg_" + hex64, // not hex
		"unhidra_xx_0123456789abcdef_" + hex64, // wrong prefix
		"unhidra_dk_0123456789abcdef_" + strings.Repeat("z", 64),
		"bearer." + key[7:],
	} {
		if _, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}

func TestRegistry_Authenticate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reg := f.svc.Registry()
	d, err := reg.Authenticate(ctx, f.key)
	if err != nil || d.ID != f.dev.ID {
		t.Fatalf("own key: %v, %v", d, err)
	}
	keyID, _ := parseKey(f.key)
	wrongSecret := KeyPrefix + keyID + "_" + strings.Repeat("0", keySecretLen)
	unknownID := KeyPrefix + "ffffffffffffffff" + f.key[len(KeyPrefix)+keyIDLen:]
	for name, k := range map[string]string{"wrong secret": wrongSecret, "unknown id": unknownID, "malformed": "hunter2", "empty": ""} {
		if _, err := reg.Authenticate(ctx, k); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
			t.Errorf("%s: err = %v, want unauthorized", name, err)
		}
	}
	// A disabled owner's devices cannot connect.
	disabled := true
	if _, err := f.db.UpdateUser(ctx, f.owner.ID, store.UserUpdate{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authenticate(ctx, f.key); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("disabled owner's device: %v", err)
	}
	disabled = false
	f.db.UpdateUser(ctx, f.owner.ID, store.UserUpdate{Disabled: &disabled})
	_, newKey, err := reg.RotateKey(ctx, f.owner, f.dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authenticate(ctx, f.key); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("old key after rotation: %v", err)
	}
	if _, err := reg.Authenticate(ctx, newKey); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if _, err := reg.Revoke(ctx, f.owner, f.dev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authenticate(ctx, newKey); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("revoked key: %v", err)
	}
	if _, _, err := reg.RotateKey(ctx, f.owner, f.dev.ID); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("rotating a revoked device: %v", err)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Target: f.dev.ID})
	var actions []string
	for _, e := range ev {
		actions = append(actions, e.Action)
		if strings.Contains(e.Detail, KeyPrefix) {
			t.Fatalf("a key reached the audit log: %+v", e)
		}
	}
	want := []string{unhidra.AuditDeviceRevoked, unhidra.AuditDeviceKeyRotated, unhidra.AuditDeviceRegistered}
	if !equal(actions, want) {
		t.Fatalf("audit trail = %v, want %v", actions, want)
	}
}

func TestRegistration_Valid(t *testing.T) {
	ctx := context.Background()
	ok := Registration{Name: " Boiler room ", Type: "esp32-s3", Capabilities: []byte(`{"relay":true}`)}
	if err := ok.Valid(ctx); err != nil || ok.Name != "Boiler room" {
		t.Fatalf("valid registration refused: %v", err)
	}
	bad := []Registration{
		{Name: "", Type: "esp32"},
		{Name: strings.Repeat("n", unhidra.MaxNameLen+1), Type: "esp32"},
		{Name: "bell\a", Type: "esp32"},
		{Name: "x\xff", Type: "esp32"},
		{Name: "x", Type: ""},
		{Name: "x", Type: "esp 32"},
		{Name: "x", Type: strings.Repeat("t", MaxTypeLen+1)},
		{Name: "x", Type: "t", Capabilities: []byte(`[1,2]`)},
		{Name: "x", Type: "t", Capabilities: []byte(`"relay"`)},
		{Name: "x", Type: "t", Capabilities: []byte(`{"a":` + strings.Repeat(" ", MaxCapabilitiesSize) + `1}`)},
	}
	for _, r := range bad {
		if err := r.Valid(ctx); err == nil {
			t.Errorf("accepted %+v", r)
		}
	}
}

func TestRegistry_PerOwnerLimit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reg := &Registry{Store: f.db, MaxPerOwner: 2}
	if _, _, err := reg.Register(ctx, f.owner, Registration{Name: "second", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Register(ctx, f.owner, Registration{Name: "third", Type: "t"}); unhidra.ErrorCode(err) != protocol.ErrConflict {
		t.Fatalf("third device: %v, want conflict", err)
	}
}
