package auth_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/protocol"
)

var testUser = &unhidra.User{ID: "usr_1", Name: "alice", Role: unhidra.RoleMember}

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newTokens(t *testing.T, alg string) (*auth.Tokens, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	ks, err := auth.NewKeySet(alg, clk.t)
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Tokens{Keys: ks, Now: clk.Now}, clk
}

func mustIssue(t *testing.T, tk *auth.Tokens) string {
	t.Helper()
	tok, _, err := tk.Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantRejected(t *testing.T, tk *auth.Tokens, tok, why string) {
	t.Helper()
	if _, err := tk.Verify(tok); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("%s: Verify = %v, want protocol.ErrUnauthorized", why, err)
	}
}

func TestTokens_RoundTrip(t *testing.T) {
	for _, alg := range []string{auth.AlgEdDSA, auth.AlgHS256} {
		t.Run(alg, func(t *testing.T) {
			tk, clk := newTokens(t, alg)
			tok, exp, err := tk.Issue(testUser)
			if err != nil {
				t.Fatal(err)
			}
			if want := clk.t.Add(15 * time.Minute); !exp.Equal(want) {
				t.Fatalf("expires %v, want %v (15 min default)", exp, want)
			}
			c, err := tk.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "usr_1" || c.Name != "alice" || c.Role != unhidra.RoleMember || c.ID == "" ||
				c.Issuer != "unhidra" || len(c.Audience) != 1 || c.Audience[0] != "unhidra" {
				t.Fatalf("claims = %+v", c)
			}
			hdr := decodeSegment(t, tok, 0)
			if hdr["alg"] != alg || hdr["kid"] != tk.Keys.Active().ID {
				t.Fatalf("header = %v", hdr)
			}
		})
	}
}

func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encodeSegment(m map[string]any) string {
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestTokens_Expiry(t *testing.T) {
	tk, clk := newTokens(t, auth.AlgEdDSA)
	tok := mustIssue(t, tk)
	clk.t = clk.t.Add(15*time.Minute + 20*time.Second) // within the 30 s leeway
	if _, err := tk.Verify(tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	clk.t = clk.t.Add(11 * time.Second)
	wantRejected(t, tk, tok, "expired")
}

func TestTokens_FromTheFuture(t *testing.T) {
	tk, clk := newTokens(t, auth.AlgEdDSA)
	clk.t = clk.t.Add(5 * time.Minute)
	tok := mustIssue(t, tk)
	clk.t = clk.t.Add(-5 * time.Minute)
	wantRejected(t, tk, tok, "nbf/iat five minutes ahead")
}

func TestTokens_Hostile(t *testing.T) {
	tk, _ := newTokens(t, auth.AlgEdDSA)
	good := mustIssue(t, tk)
	parts := strings.Split(good, ".")
	hdr, claims := decodeSegment(t, good, 0), decodeSegment(t, good, 1)

	with := func(h, c map[string]any, sig string) string {
		return encodeSegment(h) + "." + encodeSegment(c) + "." + sig
	}
	clone := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range m {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}

	cases := map[string]string{
		"empty":              "",
		"garbage":            "not-a-jwt",
		"two segments":       parts[0] + "." + parts[1],
		"huge":               strings.Repeat("a", auth.MaxTokenLen+1),
		"tampered claims":    parts[0] + "." + encodeSegment(clone(claims, "sub", "usr_admin")) + "." + parts[2],
		"tampered signature": parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"alg none":           with(clone(hdr, "alg", "none"), claims, ""),
		"alg none no kid":    with(map[string]any{"alg": "none", "typ": "JWT"}, claims, ""),
		"unknown kid":        with(clone(hdr, "kid", "nope"), claims, parts[2]),
		"missing kid":        with(clone(hdr, "kid", nil), claims, parts[2]),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { wantRejected(t, tk, tok, name) })
	}

	// Wrong audience and issuer, correctly signed by our own key.
	other := &auth.Tokens{Keys: tk.Keys, Audience: "someone-else", Now: tk.Now}
	wantRejected(t, tk, mustIssue(t, other), "wrong audience")
	other = &auth.Tokens{Keys: tk.Keys, Issuer: "evil", Now: tk.Now}
	wantRejected(t, tk, mustIssue(t, other), "wrong issuer")
	// A longer lifetime than policy, signed by our key (e.g. config drift).
	long := &auth.Tokens{Keys: tk.Keys, TTL: 24 * time.Hour, Now: tk.Now}
	wantRejected(t, tk, mustIssue(t, long), "lifetime over policy")
}

// The classic confusion attack: sign HS256 with the public key as the HMAC
// secret and name the EdDSA key. The key's algorithm must win.
func TestTokens_AlgorithmConfusion(t *testing.T) {
	tk, clk := newTokens(t, auth.AlgEdDSA)
	jwks := tk.Keys.JWKS()
	var set struct {
		Keys []struct{ X, Kid string } `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS = %s, %v", jwks, err)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	if len(pub) != ed25519.PublicKeySize {
		t.Fatalf("JWKS x is %d bytes", len(pub))
	}
	claims := jwt.MapClaims{"sub": "usr_admin", "iss": "unhidra", "aud": "unhidra", "jti": "x",
		"iat": clk.t.Unix(), "exp": clk.t.Add(time.Minute).Unix(), "role": "admin"}
	forged := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	forged.Header["kid"] = set.Keys[0].Kid
	tok, err := forged.SignedString(pub)
	if err != nil {
		t.Fatal(err)
	}
	wantRejected(t, tk, tok, "HS256 signed with the EdDSA public key")

	// And an HS256 deployment must not accept an EdDSA token naming its kid.
	hs, _ := newTokens(t, auth.AlgHS256)
	_, priv, _ := ed25519.GenerateKey(nil)
	ed := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	ed.Header["kid"] = hs.Keys.Active().ID
	tok, _ = ed.SignedString(priv)
	wantRejected(t, hs, tok, "EdDSA token against an HS256 key")
}

func TestTokens_Rotation(t *testing.T) {
	tk, clk := newTokens(t, auth.AlgEdDSA)
	before := mustIssue(t, tk)
	oldKid := tk.Keys.Active().ID
	if err := tk.Keys.Rotate(auth.AlgEdDSA, clk.t); err != nil {
		t.Fatal(err)
	}
	after := mustIssue(t, tk)
	if decodeSegment(t, after, 0)["kid"] == oldKid {
		t.Fatal("new tokens still signed with the retired key")
	}
	for _, tok := range []string{before, after} {
		if _, err := tk.Verify(tok); err != nil {
			t.Fatalf("token after rotation: %v", err)
		}
	}
	// Both keys are published until the old one is pruned.
	if n := strings.Count(string(tk.Keys.JWKS()), `"kid"`); n != 2 {
		t.Fatalf("JWKS has %d keys after rotation, want 2", n)
	}
	clk.t = clk.t.Add(10 * time.Minute)
	if err := tk.Keys.Prune(clk.t, tk.Lifetime()); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Verify(before); err != nil {
		t.Fatalf("old key pruned while its tokens are still valid: %v", err)
	}
	clk.t = clk.t.Add(6 * time.Minute)
	tk.Keys.Prune(clk.t, tk.Lifetime())
	if tk.Keys.Key(oldKid) != nil {
		t.Fatal("retired key not pruned after its tokens expired")
	}
	wantRejected(t, tk, before, "token signed with a rotated-out key")
}

func TestKeySet_Persistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing-keys.json")
	now := time.Now()
	ks, created, err := auth.LoadOrCreateKeySet(path, auth.AlgEdDSA, now)
	if err != nil || !created {
		t.Fatalf("create: %v, created=%v", err, created)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", fi.Mode().Perm())
	}
	again, created, err := auth.LoadOrCreateKeySet(path, auth.AlgEdDSA, now)
	if err != nil || created || again.Active().ID != ks.Active().ID {
		t.Fatalf("reload: %v created=%v", err, created)
	}
	// Switching algorithm by configuration rotates; the old key stays.
	hs, created, err := auth.LoadOrCreateKeySet(path, auth.AlgHS256, now)
	if err != nil || !created || hs.Active().Alg != auth.AlgHS256 || hs.Key(ks.Active().ID) == nil {
		t.Fatalf("alg switch: %v", err)
	}
	// A world-readable key file is refused, not used.
	os.Chmod(path, 0o644)
	if _, _, err := auth.LoadOrCreateKeySet(path, auth.AlgHS256, now); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable keys accepted: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte(`{"keys":[{"kid":"x","alg":"none","secret":"AA=="}]}`), 0o600)
	if _, _, err := auth.LoadOrCreateKeySet(path, auth.AlgEdDSA, now); err == nil {
		t.Fatal("malformed key file accepted")
	}
}

func FuzzVerify(f *testing.F) {
	tk := &auth.Tokens{}
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	tk.Keys = ks
	good, _, _ := tk.Issue(testUser)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := tk.Verify(tok)
		if err == nil && tok != good {
			// Only our own issued token may verify; anything else the fuzzer
			// builds would be a forgery.
			t.Fatalf("forged token verified: %q → %+v", tok, c)
		}
		if err != nil && unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
			t.Fatalf("error code %q for %q", unhidra.ErrorCode(err), tok)
		}
	})
}

func BenchmarkTokens(b *testing.B) {
	for _, alg := range []string{auth.AlgEdDSA, auth.AlgHS256} {
		ks, _ := auth.NewKeySet(alg, time.Now())
		tk := &auth.Tokens{Keys: ks}
		b.Run(alg+"/Issue", func(b *testing.B) {
			for b.Loop() {
				tk.Issue(testUser)
			}
		})
		tok, _, _ := tk.Issue(testUser)
		b.Run(alg+"/Verify", func(b *testing.B) {
			for b.Loop() {
				if _, err := tk.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
