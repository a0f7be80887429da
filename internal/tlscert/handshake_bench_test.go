package tlscert

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// BenchmarkTLSHandshake measures one TLS 1.3 handshake, client and server in
// this process over loopback TCP (both sides' CPU): the server's
// certificate key (ECDSA P-256, as Generate makes, or Ed25519), the key
// exchange the client offers (Go's default X25519MLKEM768 hybrid, as the fleet
// simulator sends, or X25519 alone, as mbedTLS firmware does) and session
// resumption (a ticket from an earlier handshake).
func BenchmarkTLSHandshake(b *testing.B) {
	certs := map[string]tls.Certificate{"ecdsa-p256": selfSigned(b, "ecdsa"), "ed25519": selfSigned(b, "ed25519")}
	for _, certName := range []string{"ecdsa-p256", "ed25519"} {
		for _, kx := range []string{"x25519mlkem768", "x25519"} {
			for _, resume := range []bool{false, true} {
				name := certName + "/" + kx
				if resume {
					name += "/resumed"
				}
				b.Run(name, func(b *testing.B) {
					cert := certs[certName]
					pool := x509.NewCertPool()
					pool.AddCert(cert.Leaf)
					srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
					cliCfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
					if kx == "x25519" {
						cliCfg.CurvePreferences = []tls.CurveID{tls.X25519}
					}
					if resume {
						cliCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
						handshake(b, srvCfg, cliCfg) // obtain a ticket
					}
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						if handshake(b, srvCfg, cliCfg) != resume {
							b.Fatalf("resumed != %v", resume)
						}
					}
				})
			}
		}
	}
}

func handshake(b *testing.B, srvCfg, cliCfg *tls.Config) (resumed bool) {
	c1, c2 := tcpPair(b)
	defer c1.Close()
	defer c2.Close()
	srv, cli := tls.Server(c1, srvCfg), tls.Client(c2, cliCfg)
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			// A byte each way: the client reads the session ticket that
			// precedes the server's byte.
			buf := make([]byte, 1)
			if _, err = srv.Read(buf); err == nil {
				_, err = srv.Write(buf)
			}
		}
		errc <- err
	}()
	if err := cli.Handshake(); err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Write([]byte{1}); err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Read(make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return cli.ConnectionState().DidResume
}

func selfSigned(b *testing.B, alg string) tls.Certificate {
	var pub, priv any
	switch alg {
	case "ecdsa":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		pub, priv = &k.PublicKey, k
	default:
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		pub, priv = p, k
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}
}

// tcpPair returns both ends of a loopback TCP connection (kernel-buffered,
// unlike net.Pipe, so TLS 1.3's session tickets cannot deadlock the writes).
func tcpPair(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c1, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	return c1, c2
}
