package names

import (
	"strings"
	"testing"
)

// taken are names already registered in the confusable tests.
var taken = []string{"root", "admin", "paypal", "alice", "system", "bob", "lily", "oscar", "mike", "kevin"}

// refused reports whether a new user name would be refused: invalid, or
// its skeleton equals a taken name's.
func refused(t *testing.T, name string) (bool, string) {
	t.Helper()
	n, err := User(name)
	if err != nil {
		return true, err.Error()
	}
	for _, tk := range taken {
		if Skeleton(n) == Skeleton(tk) {
			return true, "looks like " + tk
		}
	}
	return false, ""
}

func TestConfusablesRefused(t *testing.T) {
	cases := []struct{ why, name string }{
		// The cases of the issue.
		{"CGJ U+034F", "root\u034f"},
		{"VS16 U+FE0F", "root\ufe0f"},
		{"Hangul filler U+3164", "root\u3164"},
		{"Cyrillic о", "r\u043e\u043et"},
		{"fullwidth", "\uff52\uff4f\uff4f\uff54"},
		{"leading combining mark", "\u0301root"},
		{"upper case", "ROOT"},
		{"zero for o", "r00t"},
		// 20 more from the UTS #39 confusables data (confusables.txt).
		{"Cyrillic а U+0430", "\u0430dmin"},
		{"Cyrillic р U+0440", "\u0440aypal"},
		{"Greek ο U+03BF", "r\u03bf\u03bft"},
		{"Latin alpha U+0251", "p\u0251yp\u0251l"},
		{"Cyrillic palochka U+04C0", "a\u04c0ice"},
		{"digit one for l", "a1ice"},
		{"capital I for l", "aIice"},
		{"Cyrillic е U+0435", "alic\u0435"},
		{"Cyrillic с U+0441", "ali\u0441e"},
		{"Cyrillic ѕ U+0455", "\u0455ystem"},
		{"Cyrillic у U+0443", "s\u0443stem"},
		{"Cyrillic Ь U+042C", "\u042cob"},
		{"Greek ν U+03BD", "ke\u03bdin"},
		{"Cyrillic і U+0456", "kev\u0456n"},
		{"Latin dotless ı U+0131", "m\u0131ke"},
		{"Cyrillic м U+041C", "\u041cike"},
		{"Armenian օ U+0585", "\u0585scar"},
		{"mathematical bold a U+1D41A", "\U0001d41admin"},
		{"Roman numeral ⅼ U+217C", "\u217cily"},
		{"Cherokee Ꭺ U+13AA", "\u13aadmin"},
		{"Greek ρ U+03C1", "\u03c1aypal"},
		{"Cyrillic ո/Armenian n U+0578", "kevi\u0578"},
		// Invisible code points elsewhere.
		{"zero width space", "ro\u200bot"},
		{"zero width joiner", "ro\u200dot"},
		{"RLO", "\u202eroot"},
		{"tag character", "root\U000e0041"},
		{"Mongolian vowel separator", "root\u180e"},
	}
	for _, c := range cases {
		if ok, why := refused(t, c.name); !ok {
			t.Errorf("%s: %q accepted (skeleton %q)", c.why, c.name, Skeleton(c.name))
		} else {
			t.Logf("%s: %q refused: %s", c.why, c.name, why)
		}
	}
}

func TestDistinctNamesAccepted(t *testing.T) {
	for _, n := range []string{"rooted", "José", "Zoë", "ナナ", "dmitri_k", "li.wei", "o-ren", "émile", "müller", "Ångström"} {
		if ok, why := refused(t, n); ok {
			t.Errorf("%q refused: %s", n, why)
		}
	}
}

func TestUserEnforced(t *testing.T) {
	got, err := User("\uff52\uff4f\uff4f\uff54")
	if err != nil || got != "root" {
		t.Fatalf("fullwidth root = %q, %v; want the ASCII form", got, err)
	}
	got, err = User("Jose\u0301")
	if err != nil || got != "Jos\u00e9" {
		t.Fatalf("decomposed é = %q, %v; want NFC", got, err)
	}
}

func TestDevice(t *testing.T) {
	if n, err := Device("  kitchen sensor 2 "); err != nil || n != "kitchen sensor 2" {
		t.Fatalf("Device = %q, %v", n, err)
	}
	for _, bad := range []string{"root\u034f", "\u0301x", "a\x00b", "lamp\u200d", "x\ufe0f"} {
		if _, err := Device(bad); err == nil {
			t.Errorf("Device(%q) accepted", bad)
		}
	}
	if Skeleton("r\u043e\u043et") != Skeleton("root") {
		t.Fatal("device skeleton differs for a Cyrillic root")
	}
}

func FuzzUser(f *testing.F) {
	for _, s := range []string{"root", "r\u043e\u043et", "\u0301x", "a\u200db", strings.Repeat("x", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := User(s)
		if err != nil {
			return
		}
		if n2, err := User(n); err != nil || n2 != n {
			t.Fatalf("User not idempotent: %q -> %q -> %q, %v", s, n, n2, err)
		}
		_ = Skeleton(n)
	})
}
