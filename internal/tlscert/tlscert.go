// Package tlscert gives the server a certificate without any setup: it
// loads the operator's certificate, or generates and keeps a self-signed
// one in the data directory, and reports the SHA-256 fingerprint clients
// pin or compare.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Fingerprint returns the SHA-256 of a DER certificate as colon-separated
// upper-case hex (the form browsers and openssl show).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// Load reads a certificate chain and key in PEM.
func Load(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, fmt.Errorf("load TLS certificate: %w", err)
	}
	return cert, nil
}

// LoadOrCreateSelfSigned loads certFile/keyFile, generating a self-signed
// ECDSA P-256 certificate for hosts (names and IPs) when they are missing
// or expire within a week. created reports whether one was generated.
func LoadOrCreateSelfSigned(certFile, keyFile string, hosts []string, now time.Time) (cert tls.Certificate, created bool, err error) {
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		leaf, perr := x509.ParseCertificate(cert.Certificate[0])
		if perr == nil && now.Add(7*24*time.Hour).Before(leaf.NotAfter) {
			cert.Leaf = leaf
			return cert, false, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return cert, false, fmt.Errorf("load self-signed certificate: %w", err)
	}
	certPEM, keyPEM, err := Generate(hosts, now, 365*24*time.Hour)
	if err != nil {
		return cert, false, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return cert, false, fmt.Errorf("write TLS key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return cert, false, fmt.Errorf("write TLS certificate: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, false, err
	}
	cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	return cert, true, nil
}

// Generate returns a PEM certificate and key for hosts, valid for validity.
func Generate(hosts []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "unhidra self-signed", Organization: []string{"Unhidra"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so clients can trust it directly as their CA file
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// DefaultHosts are the names a self-signed certificate covers: loopback,
// the machine's host name, and the listen address's host if specific.
func DefaultHosts(listenHost string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if listenHost != "" && listenHost != "0.0.0.0" && listenHost != "::" {
		hosts = append(hosts, listenHost)
	}
	return hosts
}
