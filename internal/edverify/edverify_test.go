package edverify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"math/rand/v2"
	"sync"

	"filippo.io/edwards25519"
	"testing"
)

// order is the group order l, little-endian.
var order, _ = hex.DecodeString("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")

func newKey(t testing.TB, seed byte) (ed25519.PrivateKey, *Key) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	k, err := New(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// agree fails unless k and the standard library give the same verdict.
func agree(t *testing.T, k *Key, msg, sig []byte) bool {
	t.Helper()
	want := ed25519.Verify(k.public[:], msg, sig)
	if got := k.Verify(msg, sig); got != want {
		t.Fatalf("Verify(%x, %x) = %v, crypto/ed25519 says %v", msg, sig, got, want)
	}
	return want
}

func TestVerify_AgreesWithStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for seed := range byte(4) {
		priv, k := newKey(t, seed)
		for range 200 {
			msg := make([]byte, rng.IntN(400))
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			sig := ed25519.Sign(priv, msg)
			if !agree(t, k, msg, sig) {
				t.Fatal("a fresh signature does not verify")
			}
			// One flipped bit anywhere, in the signature or the message.
			bad := bytes.Clone(sig)
			bad[rng.IntN(len(bad))] ^= 1 << rng.IntN(8)
			if agree(t, k, msg, bad) {
				t.Fatal("a signature with a flipped bit verifies")
			}
			if len(msg) > 0 {
				other := bytes.Clone(msg)
				other[rng.IntN(len(other))] ^= 1 << rng.IntN(8)
				if agree(t, k, other, sig) {
					t.Fatal("a changed message verifies")
				}
			}
		}
	}
}

func TestVerify_RefusesMalformed(t *testing.T) {
	priv, k := newKey(t, 7)
	msg := []byte("header.payload")
	sig := ed25519.Sign(priv, msg)

	// s + l is the same scalar, not canonical: refused, as by the standard library.
	sPlusL := bytes.Clone(sig)
	var carry uint16
	for i := range 32 {
		v := uint16(sPlusL[32+i]) + uint16(order[i]) + carry
		sPlusL[32+i], carry = byte(v), v>>8
	}
	cases := map[string][]byte{
		"empty":            nil,
		"short":            sig[:63],
		"long":             append(bytes.Clone(sig), 0),
		"zero":             make([]byte, 64),
		"s plus order":     sPlusL,
		"top bits of s":    func() []byte { b := bytes.Clone(sig); b[63] |= 0x80; return b }(),
		"identity R, s=0":  append([]byte{1}, make([]byte, 63)...),
		"all ones":         bytes.Repeat([]byte{0xff}, 64),
		"R not a point":    append(bytes.Repeat([]byte{0xff}, 32), sig[32:]...),
		"other key's sig":  ed25519.Sign(ed25519.NewKeyFromSeed(make([]byte, 32)), msg),
		"R of another sig": append(bytes.Clone(ed25519.Sign(priv, []byte("x"))[:32]), sig[32:]...),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			if agree(t, k, msg, bad) {
				t.Fatal("verifies")
			}
		})
	}
}

func TestNew_RefusesWrongLength(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key: no error", n)
		}
	}
}

// A public key that is not a point verifies nothing, as in the standard library.
func TestVerify_KeyNotOnCurve(t *testing.T) {
	pub := make([]byte, 32)
	for y := byte(2); ; y++ { // the first y with no x on the curve
		pub[0] = y
		if _, err := new(edwards25519.Point).SetBytes(pub); err != nil {
			break
		}
	}
	k, err := New(pub)
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	sig[0] = 1 // R = identity, s = 0: [0]B − [h]A = identity only if A were a point of small order
	if agree(t, k, []byte("m"), sig) || !k.badKey {
		t.Fatal("a key that is not a point was taken")
	}
}

func TestSignedRadix(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[31] &= 0x1f // below 2^253
		var digits [digitsN]int8
		signedRadix(b, &digits)
		// Recompose Σ d·16^i little-endian with signed carries and compare.
		var acc [33]int
		for i, d := range digits {
			if d < -half || d > half {
				t.Fatalf("digit %d = %d", i, d)
			}
			acc[i*window/8] += int(d) << (i * window % 8)
		}
		for i := range 32 {
			for acc[i] < 0 {
				acc[i] += 256
				acc[i+1]--
			}
			acc[i+1] += acc[i] >> 8
			acc[i] &= 0xff
			if byte(acc[i]) != b[i] {
				t.Fatalf("%x: byte %d recomposes to %x", b, i, acc[i])
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	priv, k := newKey(f, 9)
	msg := []byte("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9")
	f.Add(msg, ed25519.Sign(priv, msg))
	f.Add([]byte{}, make([]byte, 64))
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		agree(t, k, msg, sig)
		if len(sig) == 64 {
			// Keep R and the message of a valid signature, vary only s.
			good := ed25519.Sign(priv, msg)
			agree(t, k, msg, append(good[:32:32], sig[32:]...))
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	priv, k := newKey(b, 1)
	msg := bytes.Repeat([]byte("a"), 300)
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	k.Verify(msg, sig) // build the tables outside the measurement
	b.Run("edverify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !k.Verify(msg, sig) {
				b.Fatal("does not verify")
			}
		}
	})
	b.Run("crypto/ed25519", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("does not verify")
			}
		}
	})
}

func BenchmarkNewTable(b *testing.B) {
	_, k := newKey(b, 1)
	for b.Loop() {
		k.ensure = sync.Once{}
		k.Verify(nil, nil)
	}
}
