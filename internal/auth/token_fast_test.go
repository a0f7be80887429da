package auth

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// TestVerifyFast_AgreesWithGeneric signs tokens with the issued header and
// many claim sets, valid and not, and checks that Verify (which takes the
// fast path for them) and the generic JWT parser reach the same verdict and
// the same claims.
func TestVerifyFast_AgreesWithGeneric(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, alg := range []string{AlgEdDSA, AlgHS256} {
		ks, err := NewKeySet(alg, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		tk := &Tokens{Keys: ks, Now: func() time.Time { return now }}
		key := ks.Active()
		sign := func(c jwt.MapClaims) string {
			var m jwt.SigningMethod = jwt.SigningMethodEdDSA
			var k any = key.privateKey()
			if alg == AlgHS256 {
				m, k = jwt.SigningMethodHS256, key.Secret
			}
			tok := jwt.NewWithClaims(m, c)
			tok.Header["kid"] = key.ID
			s, err := tok.SignedString(k)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		sec := func(d time.Duration) int64 { return now.Add(d).Unix() }
		base := func() jwt.MapClaims {
			return jwt.MapClaims{"sub": "usr_1", "iss": "unhidra", "aud": []string{"unhidra"}, "iat": sec(0), "nbf": sec(0),
				"exp": sec(10 * time.Minute), "jti": "abc", "name": "alice", "role": "member"}
		}
		with := func(k string, v any) jwt.MapClaims {
			c := base()
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
			return c
		}
		issued, _, err := tk.Issue(&unhidra.User{ID: "usr_9", Name: "bob", Role: unhidra.RoleAdmin})
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]struct {
			token string
			ok    bool
		}{
			"issued":             {issued, true},
			"valid":              {sign(base()), true},
			"aud as a string":    {sign(with("aud", "unhidra")), true},
			"aud among others":   {sign(with("aud", []string{"x", "unhidra"})), true},
			"fractional dates":   {sign(with("exp", float64(sec(5*time.Minute))+0.5)), true},
			"no nbf":             {sign(with("nbf", nil)), true},
			"expired":            {sign(with("exp", sec(-time.Minute))), false},
			"expired in leeway":  {sign(with("exp", sec(-10*time.Second))), true},
			"no exp":             {sign(with("exp", nil)), false},
			"not yet valid":      {sign(with("nbf", sec(time.Minute))), false},
			"issued in future":   {sign(with("iat", sec(time.Minute))), false},
			"no iat":             {sign(with("iat", nil)), false},
			"wrong issuer":       {sign(with("iss", "evil")), false},
			"wrong audience":     {sign(with("aud", []string{"other"})), false},
			"no audience":        {sign(with("aud", nil)), false},
			"aud of numbers":     {sign(with("aud", []int{1})), false},
			"aud a number":       {sign(with("aud", 7)), false},
			"exp a string":       {sign(with("exp", "123")), false},
			"exp a numeric text": {sign(with("exp", "9999999999")), false},
			"no sub":             {sign(with("sub", nil)), false},
			"no jti":             {sign(with("jti", nil)), false},
			"too long-lived":     {sign(with("exp", sec(2*time.Hour))), false},
		}
		// Tampering.
		v := sign(base())
		dot := strings.LastIndexByte(v, '.')
		flip := func(s string, i int) string {
			b := []byte(s)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}
		cases["bad signature"] = struct {
			token string
			ok    bool
		}{flip(v, dot+5), false}
		cases["bad payload"] = struct {
			token string
			ok    bool
		}{flip(v, dot-5), false}
		cases["padded signature"] = struct {
			token string
			ok    bool
		}{v + "=", false}
		cases["extra segment"] = struct {
			token string
			ok    bool
		}{v + ".x", false}
		for name, c := range cases {
			got, errFast := tk.Verify(c.token)
			want, errGen := tk.verifyGeneric(c.token)
			if (errFast == nil) != c.ok || (errGen == nil) != c.ok {
				t.Errorf("%s %s: fast err %v, generic err %v, want ok=%v", alg, name, errFast, errGen, c.ok)
				continue
			}
			if errFast != nil && unhidra.ErrorCode(errFast) != protocol.ErrUnauthorized {
				t.Errorf("%s %s: %v is not protocol.ErrUnauthorized", alg, name, errFast)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: fast %+v, generic %+v", alg, name, got, want)
			}
		}
		// The issued and ordinary tokens do take the fast path.
		for _, tok := range []string{issued, sign(base())} {
			if _, _, handled, err := tk.verifyFast(tok); !handled || err != nil {
				t.Errorf("%s: fast path handled=%v err=%v", alg, handled, err)
			}
		}
		// A header the keyset never issued (other field order) goes to the
		// generic path, which accepts it.
		if _, _, handled, _ := tk.verifyFast(strings.Replace(issued, key.headerSegment(), "eyJ0eXAiOiJKV1QifQ", 1)); handled {
			t.Errorf("%s: foreign header handled by the fast path", alg)
		}
	}
}

// TestVerifyFast_RetiredKey: the retirement rule applies on the fast path.
func TestVerifyFast_RetiredKey(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ks, err := NewKeySet(AlgEdDSA, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	tk := &Tokens{Keys: ks, Now: func() time.Time { return clock }}
	old := ks.Active()
	if err := ks.Rotate(AlgEdDSA, now); err != nil {
		t.Fatal(err)
	}
	// A token from the retired key, issued after its retirement: refused.
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "u", "iss": "unhidra", "aud": "unhidra",
		"iat": now.Add(5 * time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "j"})
	tok.Header["kid"] = old.ID
	s, err := tok.SignedString(old.privateKey())
	if err != nil {
		t.Fatal(err)
	}
	clock = now.Add(6 * time.Minute)
	if _, _, handled, _ := tk.verifyFast(s); !handled {
		t.Fatal("not on the fast path")
	}
	if _, err := tk.Verify(s); err == nil {
		t.Fatal("token of a retired key issued after retirement accepted")
	}
}
