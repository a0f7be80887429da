package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// Kinds of identity a connection can have.
const (
	KindPerson = "person"
	KindBot    = "bot"
	KindDevice = "device"
)

// credentials is what the client offered in Sec-WebSocket-Protocol.
type credentials struct {
	token string // an access token (JWT)
	key   string // a device API key
	echo  string // the subprotocol to answer with ("" for none)
}

// Limits on the Sec-WebSocket-Protocol header.
const (
	maxSubprotocols    = 8
	maxCredentialBytes = 4096
)

// parseSubprotocols reads the forms the gateway accepts:
//
//	unhidra.v1, bearer.<JWT>     people and bots (echo unhidra.v1)
//	bearer, <JWT>                the upstream form (echo bearer)
//	<device key>                 the seed firmware: the key is the whole header (no echo)
//	<device key>, unhidra.v1     devices that speak the protocol (echo unhidra.v1)
//
// The credential itself is never echoed. ok is false when the header is
// missing, ambiguous or malformed; problem says why, for the client.
func parseSubprotocols(values []string) (c credentials, problem string) {
	var offered []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	if len(offered) == 0 {
		return c, "Credentials are required in Sec-WebSocket-Protocol."
	}
	if len(offered) > maxSubprotocols {
		return c, "Too many subprotocols offered."
	}
	hasV1, hasBearer := false, false
	var candidates []string
	for _, p := range offered {
		if len(p) > maxCredentialBytes || !ws.IsToken(p) {
			return c, "Malformed Sec-WebSocket-Protocol."
		}
		switch {
		case p == protocol.Subprotocol:
			hasV1 = true
		case p == "bearer":
			hasBearer = true
		case strings.HasPrefix(p, protocol.BearerPrefix):
			if c.token != "" {
				return c, "More than one token offered."
			}
			c.token = p[len(protocol.BearerPrefix):]
		default:
			candidates = append(candidates, p)
		}
	}
	switch {
	case hasBearer:
		// "bearer, <JWT>": exactly one other entry, the token.
		if c.token != "" || len(candidates) != 1 {
			return credentials{}, "The bearer form is: bearer, <token>."
		}
		c.token, c.echo = candidates[0], "bearer"
	case c.token != "":
		if len(candidates) != 0 {
			return credentials{}, "Unexpected subprotocol beside the token."
		}
		if hasV1 {
			c.echo = protocol.Subprotocol
		}
	case len(candidates) == 1:
		c.key = candidates[0]
		if hasV1 {
			c.echo = protocol.Subprotocol
		}
	case len(candidates) == 0:
		return credentials{}, "Credentials are required in Sec-WebSocket-Protocol."
	default:
		return credentials{}, "Unrecognised subprotocols."
	}
	if c.token == "" && c.key == "" {
		return credentials{}, "Empty credential."
	}
	return c, ""
}

// originAllowed checks the browser's Origin against the allow-list:
// scheme, host and port must all match (a missing port is the scheme's
// default). No Origin means a non-browser client (device, CLI), which
// cannot be abused cross-site. With an empty allow-list only the server's
// own origin is allowed: the Host the request was sent to, over https on
// a TLS connection; on a plain one (behind a TLS-terminating proxy, which
// the server cannot see past) https or http.
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	if len(allowed) == 0 {
		if r.TLS != nil && o.scheme != "https" {
			return false
		}
		own, ok := parseOrigin(o.scheme + "://" + r.Host)
		return ok && own == o
	}
	for _, a := range allowed {
		if a == "*" {
			return true
		}
		if ao, ok := parseOrigin(a); ok && ao == o {
			return true
		}
	}
	return false
}

type originKey struct{ scheme, host, port string }

// parseOrigin reads scheme://host[:port] (nothing else: an origin has no
// path, user or query), lower-casing scheme and host and filling in the
// scheme's default port.
func parseOrigin(s string) (originKey, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return originKey{}, false
	}
	k := originKey{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if k.port == "" {
		switch k.scheme {
		case "https":
			k.port = "443"
		case "http":
			k.port = "80"
		default:
			return originKey{}, false
		}
	}
	if k.scheme != "https" && k.scheme != "http" || k.host == "" {
		return originKey{}, false
	}
	return k, true
}
