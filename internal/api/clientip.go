package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// UnknownClient is the client address when a trusted proxy's forwarding
// header cannot be read: all such clients share one throttle bucket, and
// it carries no privilege.
const UnknownClient = "unknown"

// maxHops bounds how many forwarding hops are examined.
const maxHops = 64

// ClientIP returns the address of the client: the connection's peer, or,
// when the peer is a trusted proxy, the rightmost address of the
// forwarding chain that is not a trusted proxy. The chain is every
// X-Forwarded-For line joined in order (a proxy may append a line of its
// own instead of extending the client's), or the for= parameters of RFC
// 7239 Forwarded. A hop that does not parse before an untrusted address is
// found makes the client UnknownClient, as do the two headers disagreeing;
// never the proxy's own (possibly loopback) address.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(peer, trusted) {
		return host
	}
	xff, hasXFF := forwardedChain(r.Header.Values("X-Forwarded-For"), splitXFF)
	fwd, hasFwd := forwardedChain(r.Header.Values("Forwarded"), splitForwarded)
	switch {
	case hasXFF && hasFwd:
		a, b := pickClient(xff, trusted), pickClient(fwd, trusted)
		if a != b {
			return UnknownClient
		}
		return a
	case hasXFF:
		return pickClient(xff, trusted)
	case hasFwd:
		return pickClient(fwd, trusted)
	}
	return peer.Unmap().String()
}

// DirectLoopback reports whether the request comes straight from this
// machine: a loopback peer and no forwarding header (a proxy on the same
// host forwards everybody's requests from loopback).
func DirectLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return false
	}
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		if len(r.Header.Values(h)) > 0 {
			return false
		}
	}
	return true
}

// forwardedChain joins the header's lines into one list of hops (strings,
// not yet parsed), oldest first; present is false without the header.
func forwardedChain(lines []string, split func(string) []string) (hops []string, present bool) {
	for _, l := range lines {
		present = true
		hops = append(hops, split(l)...)
		if len(hops) > maxHops {
			return hops[len(hops)-maxHops:], true
		}
	}
	return hops, present
}

func splitXFF(line string) []string {
	parts := strings.Split(line, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// splitForwarded returns each element's for= value ("" when an element
// has none: an unreadable hop).
func splitForwarded(line string) []string {
	var out []string
	for _, elem := range strings.Split(line, ",") {
		v := ""
		for _, pair := range strings.Split(elem, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
				v = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
		out = append(out, v)
	}
	return out
}

// parseHop reads one hop: an IP, optionally with a port, IPv6 in brackets
// (RFC 7239 form) or bare.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// pickClient walks the chain from the right: trusted proxies are skipped,
// the first other address is the client, an unreadable hop makes it
// unknown. A chain of trusted proxies only names its first hop.
func pickClient(hops []string, trusted []netip.Prefix) string {
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok || !a.IsValid() || a.IsUnspecified() {
			return UnknownClient
		}
		if !isTrusted(a, trusted) || i == 0 {
			return a.String()
		}
	}
	return UnknownClient
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}
