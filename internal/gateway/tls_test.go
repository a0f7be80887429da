package gateway_test

import (
	"crypto/tls"
	"net"
	"net/http"
)

func tlsDial(addr string, tr *http.Transport) (net.Conn, error) {
	cfg := tr.TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return tls.Dial("tcp", addr, cfg)
}
