package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/protocol"
)

func mustPasswordHasher(tb testing.TB, cfg auth.PasswordHasherConfig) *auth.PasswordHasher {
	tb.Helper()
	h, err := auth.NewPasswordHasher(cfg)
	if err != nil {
		tb.Fatalf("NewPasswordHasher(%+v): %v", cfg, err)
	}
	return h
}

func TestNewPasswordHasher(t *testing.T) {
	t.Run("ZeroConfig", func(t *testing.T) {
		h := mustPasswordHasher(t, auth.PasswordHasherConfig{})
		if got, want := h.Params(), auth.DefaultPasswordParams(); got != want {
			t.Fatalf("Params() = %+v, want %+v", got, want)
		}
		if h.InFlight() != 0 || h.Queued() != 0 || h.Rejected() != 0 || h.PeakInFlight() != 0 {
			t.Fatal("counters not zero")
		}
	})
	t.Run("ErrBadParams", func(t *testing.T) {
		_, err := auth.NewPasswordHasher(auth.PasswordHasherConfig{
			Params: auth.PasswordParams{MemoryKiB: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
		})
		if !errors.Is(err, auth.ErrPHCInvalid) {
			t.Fatalf("err = %v, want ErrPHCInvalid", err)
		}
	})
}

func TestPasswordHasher_HashVerify(t *testing.T) {
	ctx := context.Background()
	h := mustPasswordHasher(t, auth.PasswordHasherConfig{Params: pwTestParams})

	phc, err := h.Hash(ctx, "cafe\u0301 crème")
	if err != nil {
		t.Fatal(err)
	}
	if auth.NeedsRehash(phc, pwTestParams) {
		t.Fatalf("hash %q not made with the hasher's params", phc)
	}
	for _, tc := range []struct {
		pw             string
		ok, needRehash bool
	}{
		{"caf\u00e9 crème", true, false},
		{"cafe\u0301 cre\u0300me", true, false},
		{"cafe crème", false, false},
		{"", false, false},
		{strings.Repeat("x", 1<<20), false, false},
		{"caf\u00e9 crème\xff", false, false},
	} {
		ok, rehash, err := h.Verify(ctx, tc.pw, phc)
		if err != nil || ok != tc.ok || rehash != tc.needRehash {
			t.Errorf("Verify(%.20q) = %v, %v, %v; want %v, %v, nil", tc.pw, ok, rehash, err, tc.ok, tc.needRehash)
		}
	}
	// Interchangeable with the unbounded functions.
	if ok, err := auth.VerifyPassword("caf\u00e9 crème", phc); !ok || err != nil {
		t.Errorf("VerifyPassword on hasher's hash = %v, %v", ok, err)
	}

	t.Run("NeedsRehash", func(t *testing.T) {
		newer := pwTestParams
		newer.MemoryKiB *= 2
		h2 := mustPasswordHasher(t, auth.PasswordHasherConfig{Params: newer})
		ok, rehash, err := h2.Verify(ctx, "caf\u00e9 crème", phc)
		if !ok || !rehash || err != nil {
			t.Fatalf("Verify with changed params = %v, %v, %v; want true, true, nil", ok, rehash, err)
		}
		ok, rehash, err = h2.Verify(ctx, "wrong password", phc)
		if ok || rehash || err != nil {
			t.Fatalf("wrong password with changed params = %v, %v, %v; want false, false, nil", ok, rehash, err)
		}
	})

	t.Run("ErrMalformed", func(t *testing.T) {
		_, _, err := h.Verify(ctx, "pw", phc[:len(phc)-2])
		if !errors.Is(err, auth.ErrPHCInvalid) {
			t.Fatalf("err = %v, want ErrPHCInvalid", err)
		}
		if unhidra.ErrorCode(err) != protocol.ErrInternal {
			t.Fatalf("code %q: a corrupt stored hash is a server fault", unhidra.ErrorCode(err))
		}
	})

	t.Run("ErrTooCostly", func(t *testing.T) {
		// Never hashed: refused before any memory is allocated.
		costly := auth.PHC{
			Params: auth.PasswordParams{MemoryKiB: 300 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
			Salt:   make([]byte, 16), Hash: make([]byte, 32),
		}.String()
		start := time.Now()
		_, _, err := h.Verify(ctx, "pw", costly)
		if !errors.Is(err, auth.ErrPHCTooCostly) {
			t.Fatalf("default limit: err = %v, want ErrPHCTooCostly", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("refusal took %v", d)
		}
		limited := mustPasswordHasher(t, auth.PasswordHasherConfig{Params: pwTestParams, MaxVerifyMemoryKiB: 32})
		if _, _, err := limited.Verify(ctx, "pw", phc); !errors.Is(err, auth.ErrPHCTooCostly) {
			t.Fatalf("MaxVerifyMemoryKiB 32 with m=64: err = %v, want ErrPHCTooCostly", err)
		}
	})

	t.Run("VerifyDummy", func(t *testing.T) {
		if err := h.VerifyDummy(ctx, "anything"); err != nil {
			t.Fatal(err)
		}
		if err := h.VerifyDummy(ctx, "bad\xff"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ErrCancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := h.Hash(cctx, "pw"); !errors.Is(err, context.Canceled) {
			t.Errorf("Hash: err = %v, want context.Canceled", err)
		}
		if _, _, err := h.Verify(cctx, "pw", phc); !errors.Is(err, context.Canceled) {
			t.Errorf("Verify: err = %v, want context.Canceled", err)
		}
		if err := h.VerifyDummy(cctx, "pw"); !errors.Is(err, context.Canceled) {
			t.Errorf("VerifyDummy: err = %v, want context.Canceled", err)
		}
		if h.Rejected() != 0 {
			t.Errorf("Rejected() = %d: cancellation is not overload", h.Rejected())
		}
	})

	t.Run("ErrInvalidPassword", func(t *testing.T) {
		if _, err := h.Hash(ctx, "pw\xff"); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("Hash(invalid UTF-8): err = %v, want protocol.ErrInvalid", err)
		}
		if _, err := h.Hash(ctx, strings.Repeat("x", 5000)); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("Hash(5000 bytes): err = %v, want protocol.ErrInvalid", err)
		}
	})
}
