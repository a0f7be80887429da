package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// LoadKeyFile reads a device key from a file that only its owner (and
// group) may read: a world-readable key file is refused, as ssh does.
func LoadKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", configErr("key file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", configErr("key file %s is readable by everyone (chmod 600 it)", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyBytes+2))
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	key := strings.TrimSpace(string(data))
	if err := ValidateKey(key); err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// ParsePin parses a SHA-256 certificate fingerprint written as
// colon-separated hex (as the server prints it) or plain hex, any case.
func ParsePin(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if len(h) != 64 {
		return nil, configErr("certificate pin must be a SHA-256 fingerprint (64 hex digits)")
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, configErr("certificate pin is not hex")
	}
	return b, nil
}

// LoadCAFile reads PEM CA certificates (at most 1 MiB) into a pool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if len(data) > 1<<20 {
		return nil, configErr("CA file %s is larger than 1 MiB", path)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, configErr("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// errPinMismatch is returned when the server's certificate is not the pinned one.
var errPinMismatch = errors.New("server certificate does not match the pinned SHA-256 fingerprint")

// tlsConfig builds the client TLS configuration.
func tlsConfig(c Config, serverName string) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootCAs, ServerName: serverName}
	if len(c.PinSHA256) == 32 {
		pin := c.PinSHA256
		// With a pin and no CA, the pin is the trust decision: the chain is
		// not verified, but VerifyConnection still runs and only the pinned
		// certificate passes.
		tc.InsecureSkipVerify = c.RootCAs == nil
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errPinMismatch
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errPinMismatch
			}
			return nil
		}
	}
	return tc
}

// redactor removes the device key from text that leaves the agent (logs,
// errors): server messages or library errors might echo it.
type redactor struct{ key string }

func (r redactor) String(s string) string {
	if r.key != "" {
		s = strings.ReplaceAll(s, r.key, "[redacted]")
	}
	return s
}

// clean redacts s, drops control characters and truncates it to max bytes,
// for text from the server that is logged or returned.
func (r redactor) clean(s string, max int) string {
	s = r.String(s)
	s = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return -1
		}
		return c
	}, s)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// Err wraps err so that its message is redacted; errors.Is/As still see it.
func (r redactor) Err(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{msg: r.String(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
