package auth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
)

// agreesWithJSON fails t if decodeIssuedClaims accepts p but
// encoding/json decodes it differently (or refuses it).
func agreesWithJSON(t *testing.T, p []byte) (accepted bool) {
	t.Helper()
	var fast wireClaims
	if !decodeIssuedClaims(p, &fast) {
		return false
	}
	var slow wireClaims
	if err := json.Unmarshal(p, &slow); err != nil {
		t.Fatalf("fast decoder accepted %q, encoding/json refuses it: %v", p, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\nfast %+v\njson %+v", p, fast, slow)
	}
	return true
}

func TestDecodeIssuedClaims_AgreesWithJSON(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ks, err := NewKeySet(AlgEdDSA, now)
	if err != nil {
		t.Fatal(err)
	}
	tk := &Tokens{Keys: ks, Now: func() time.Time { return now }}
	for _, u := range []*unhidra.User{
		{ID: "usr_1", Name: "alice", Role: unhidra.RoleMember},
		{ID: "usr_2", Name: "Zoë Ünïcödé 名前", Role: unhidra.RoleAdmin, SessionEpoch: 7},
		{ID: "usr_3", Name: "bot-1", Role: unhidra.RoleBot, SessionEpoch: 1 << 40},
	} {
		tok, _, err := tk.Issue(u)
		if err != nil {
			t.Fatal(err)
		}
		p, err := b64.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		if !agreesWithJSON(t, p) {
			t.Fatalf("an issued token's claims took the slow path: %s", p)
		}
	}
	accepted := []string{
		`{"sub":"x"}`,
		`{"aud":"one"}`,
		`{"aud":[]}`,
		`{"aud":["a","b"]}`,
		`{"exp":0,"nbf":-5,"iat":99999999999999999999}`,
		`{"sep":-1,"role":"owner"}`,
		"{\"name\":\"<>&' \x7f\"}",
	}
	for _, p := range accepted {
		if !agreesWithJSON(t, []byte(p)) {
			t.Errorf("refused %s", p)
		}
	}
	refused := []string{
		``, `{}`, `{`, `}`, `null`, `[]`, ` {"sub":"x"}`, `{"sub":"x"} `, `{"sub": "x"}`, `{ "sub":"x"}`,
		`{"sub":"x",}`, `{,"sub":"x"}`, `{"sub":"x""iss":"y"}`, `{"sub":"x","sub":"y"}`, `{"SUB":"x"}`,
		`{"other":1}`, `{"sub":null}`, `{"sub":1}`, `{"exp":1.5}`, `{"exp":1e3}`, `{"exp":01}`, `{"exp":-}`,
		`{"exp":"1"}`, `{"sep":9223372036854775808}`, `{"sep":1.0}`, `{"sub":"a\"b"}`, `{"sub":"a\u0041"}`,
		"{\"sub\":\"a\x01\"}", "{\"sub\":\"\xff\"}", `{"aud":["a",]}`, `{"aud":["a]"]}`, `{"aud":[1]}`,
		`{"aud":["a" ,"b"]}`, `{"aud":{}}`, `{"aud":null}`, `{"aud":["a"}`, `{"sub"}`, `{"sub":}`,
	}
	for _, p := range refused {
		if agreesWithJSON(t, []byte(p)) {
			t.Errorf("accepted %q", p)
		}
	}
}

func TestPlainStrings_AgreesWithJSON(t *testing.T) {
	for _, in := range []string{`[]`, `["a"]`, `["a","b c"]`, `[""]`, `["ü","名"]`} {
		got, ok := plainStrings([]byte(in))
		var want []string
		if err := json.Unmarshal([]byte(in), &want); err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q %v, json %q %v", in, got, ok, want, err)
		}
	}
	for _, in := range []string{``, `[`, `["a",]`, `[,"a"]`, `["a" "b"]`, `["a\"b"]`, `[1]`, `["a"]x`, `[null]`, `"a"`} {
		if got, ok := plainStrings([]byte(in)); ok {
			t.Errorf("%s accepted: %q", in, got)
		}
	}
}

// FuzzDecodeIssuedClaims: whatever the fast decoder accepts, encoding/json
// decodes to the same claims.
func FuzzDecodeIssuedClaims(f *testing.F) {
	for _, s := range []string{`{"iss":"unhidra","sub":"usr_1","aud":["unhidra"],"exp":1795000000,"nbf":1794999000,"iat":1794999000,"jti":"abc","name":"alice","role":"member","sep":3}`,
		`{"aud":"x","sep":-0}`, `{"aud":["a","b"],"name":"ü"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 4096 {
			return
		}
		agreesWithJSON(t, p)
		if ss, ok := plainStrings(p); ok {
			var want []string
			if err := json.Unmarshal(p, &want); err != nil || !reflect.DeepEqual(ss, want) {
				t.Fatalf("plainStrings(%q) = %q, json %q %v", p, ss, want, err)
			}
		}
	})
}
