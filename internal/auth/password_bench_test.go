package auth

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// BenchmarkHashPassword measures HashPassword at DefaultPasswordParams
// (m=48 MiB, t=3, p=1): normalisation, salt, Argon2id and encoding.
func BenchmarkHashPassword(b *testing.B) {
	p := DefaultPasswordParams()
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple", p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyPassword measures VerifyPassword of a correct password
// against a hash made at DefaultPasswordParams.
func BenchmarkVerifyPassword(b *testing.B) {
	phc, err := HashPassword("correct horse battery staple", DefaultPasswordParams())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := VerifyPassword("correct horse battery staple", phc); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkPasswordHasher_VerifyParallel measures throughput through a
// PasswordHasher with its default bound (one hash per core) when every core
// keeps asking; ns/op is the inverse of verifications per second.
func BenchmarkPasswordHasher_VerifyParallel(b *testing.B) {
	h, err := NewPasswordHasher(PasswordHasherConfig{MaxQueue: 1 << 20, MaxWait: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	phc, err := h.Hash(context.Background(), "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, err := h.Verify(context.Background(), "correct horse battery staple", phc); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}

// BenchmarkArgon2VsReferenceCLI compares x/crypto/argon2 (in process) with
// the reference C implementation's CLI (Debian package argon2) at
// DefaultPasswordParams on the same machine. Each iteration runs, back to
// back so that both see the same background load:
//
//	ours:    argon2.IDKey in this process
//	cli:     echo -n PW | argon2 SALT -id -t 3 -k 49152 -p 1 -l 32 -e
//	startup: echo -n PW | argon2 SALT -id -t 1 -k 8 -p 1 -l 32 -e
//
// and reports medians in ms: ours, cli, startup, cli-net (cli − startup, the
// hash alone) and c/ours (cli-net ÷ ours). ns/op covers all three runs and
// means nothing on its own. Fails if the CLI is not installed.
func BenchmarkArgon2VsReferenceCLI(b *testing.B) {
	cli := argon2CLI(b)
	p := DefaultPasswordParams()
	pw, salt := []byte("correct horse battery staple"), []byte("somesaltsomesalt")
	run := func(t, k uint32) time.Duration {
		cmd := exec.Command(cli, string(salt), "-id", "-t", strconv.Itoa(int(t)), "-k", strconv.Itoa(int(k)), "-p", "1", "-l", "32", "-e")
		cmd.Stdin = bytes.NewReader(pw)
		start := time.Now()
		if out, err := cmd.Output(); err != nil || len(out) == 0 {
			b.Fatalf("argon2 CLI: %v", err)
		}
		return time.Since(start)
	}
	var ours, full, startup, net []float64
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for b.Loop() {
		start := time.Now()
		argon2.IDKey(pw, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
		o := ms(time.Since(start))
		f := ms(run(p.Time, p.MemoryKiB))
		s := ms(run(1, 8))
		ours, full, startup, net = append(ours, o), append(full, f), append(startup, s), append(net, f-s)
	}
	median := func(xs []float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	b.ReportMetric(median(ours), "ours-ms")
	b.ReportMetric(median(full), "cli-ms")
	b.ReportMetric(median(startup), "startup-ms")
	b.ReportMetric(median(net), "cli-net-ms")
	b.ReportMetric(median(net)/median(ours), "c/ours")
	b.ReportMetric(slices.Min(ours), "ours-min-ms")
	b.ReportMetric(slices.Min(net), "cli-net-min-ms")
}
