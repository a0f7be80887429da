package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/ratelimit"
)

// AdmissionLimits bound who may connect, checked before the upgrade. Zero
// fields get the defaults of DefaultAdmission.
type AdmissionLimits struct {
	MaxConns          int             // connections on this node in all
	MaxConnsPerIP     int             // concurrent connections from one address
	MaxConnsPerIdent  int             // concurrent connections of one user, bot or device
	ConnRatePerIP     ratelimit.Limit // new connections per address
	ConnRatePerIdent  ratelimit.Limit // new connections per identity (flapping devices)
	AuthFailuresPerIP ratelimit.Limit // failed handshakes per address before the address is slowed
	// AuthFailuresPerKey bounds failures of one credential (address and
	// device key-ID prefix, or "bearer" for tokens) before it alone gets
	// 429: a revoked device retrying in a loop stops costing its
	// neighbours behind the same NAT.
	AuthFailuresPerKey ratelimit.Limit
	// AuthAttemptsSlowed is how many handshakes a slowed address may still
	// try: valid credentials connect, bad ones keep being counted.
	AuthAttemptsSlowed ratelimit.Limit
}

// DefaultAdmission returns the defaults: generous enough for a gateway or
// NAT with thousands of devices behind one address, tight enough per
// identity to slow a device reconnecting in a loop.
func DefaultAdmission() AdmissionLimits {
	return AdmissionLimits{
		MaxConns:           18_000,
		MaxConnsPerIP:      4096,
		MaxConnsPerIdent:   64,
		ConnRatePerIP:      ratelimit.Limit{Burst: 500, Every: 10 * time.Millisecond},
		ConnRatePerIdent:   ratelimit.Limit{Burst: 10, Every: 2 * time.Second},
		AuthFailuresPerIP:  ratelimit.Limit{Burst: 20, Every: 3 * time.Second},
		AuthFailuresPerKey: ratelimit.Limit{Burst: 5, Every: 10 * time.Second},
		AuthAttemptsSlowed: ratelimit.Limit{Burst: 60, Every: time.Second},
	}
}

func (l AdmissionLimits) withDefaults() AdmissionLimits {
	d := DefaultAdmission()
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if l.MaxConnsPerIdent <= 0 {
		l.MaxConnsPerIdent = d.MaxConnsPerIdent
	}
	if l.ConnRatePerIP == (ratelimit.Limit{}) {
		l.ConnRatePerIP = d.ConnRatePerIP
	}
	if l.ConnRatePerIdent == (ratelimit.Limit{}) {
		l.ConnRatePerIdent = d.ConnRatePerIdent
	}
	if l.AuthFailuresPerIP == (ratelimit.Limit{}) {
		l.AuthFailuresPerIP = d.AuthFailuresPerIP
	}
	if l.AuthFailuresPerKey == (ratelimit.Limit{}) {
		l.AuthFailuresPerKey = d.AuthFailuresPerKey
	}
	if l.AuthAttemptsSlowed == (ratelimit.Limit{}) {
		l.AuthAttemptsSlowed = d.AuthAttemptsSlowed
	}
	return l
}

// admission counts live connections per address and identity and holds
// the rate limiters. Counts are released when a connection closes.
type admission struct {
	limits    AdmissionLimits
	ipRate    *ratelimit.Keyed
	identRate *ratelimit.Keyed
	authFail  *ratelimit.Keyed // per address
	keyFail   *ratelimit.Keyed // per address and credential
	slowed    *ratelimit.Keyed // attempts of an address past authFail

	mu      sync.Mutex
	total   int            // guarded by mu
	byIP    map[string]int // guarded by mu
	byIdent map[string]int // guarded by mu
}

func newAdmission(l AdmissionLimits) *admission {
	l = l.withDefaults()
	return &admission{
		limits:    l,
		ipRate:    ratelimit.NewKeyed(l.ConnRatePerIP, 0),
		identRate: ratelimit.NewKeyed(l.ConnRatePerIdent, 0),
		authFail:  ratelimit.NewKeyed(l.AuthFailuresPerIP, 0),
		keyFail:   ratelimit.NewKeyed(l.AuthFailuresPerKey, 0),
		slowed:    ratelimit.NewKeyed(l.AuthAttemptsSlowed, 0),
		byIP:      make(map[string]int),
		byIdent:   make(map[string]int),
	}
}

// credentialBucket names the credential for failure throttling: a device
// key's ID prefix (8 characters: the same for one device's retries), a
// digest prefix of a token (one client retrying an expired token), "none"
// without any.
func credentialBucket(ip string, c credentials) string {
	switch {
	case c.key != "":
		k := strings.TrimPrefix(c.key, "unhidra_dk_")
		return ip + "|dk:" + k[:min(len(k), 8)]
	case c.token != "":
		sum := sha256.Sum256([]byte(c.token))
		return ip + "|bearer:" + hex.EncodeToString(sum[:6])
	}
	return ip + "|none"
}

// checkAuthThrottle runs before the credential is checked: a credential
// that keeps failing from this address is refused; an address with many
// failures is slowed, not shut: its attempts come from a second, larger
// bucket, so that valid keys behind the same NAT keep connecting.
func (a *admission) checkAuthThrottle(ip, bucket string, now time.Time) *refusal {
	if ok, retry := a.keyFail.Peek(bucket, now); !ok {
		return &refusal{"auth_throttled", 429, "Too many failed handshakes with this credential.", retry}
	}
	if ok, _ := a.authFail.Peek(ip, now); ok {
		return nil
	}
	if ok, retry := a.slowed.Allow(ip, now); !ok {
		return &refusal{"auth_throttled", 429, "Too many failed handshakes from this address.", retry}
	}
	return nil
}

// authFailed counts a failed handshake.
func (a *admission) authFailed(ip, bucket string, now time.Time) {
	a.authFail.Allow(ip, now)
	a.keyFail.Allow(bucket, now)
}

// refusal is a reason to refuse an upgrade, with the HTTP status to send.
type refusal struct {
	reason     string // metrics label
	status     int
	message    string
	retryAfter time.Duration
}

// acquire admits one connection of ident from ip, or says why not. A
// successful acquire must be paired with release.
func (a *admission) acquire(ip, ident string, now time.Time) *refusal {
	if ok, retry := a.identRate.Allow(ident, now); !ok {
		return &refusal{"identity_rate", 429, "Reconnecting too fast; back off.", retry}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.total >= a.limits.MaxConns:
		return &refusal{"server_cap", 503, "The server is at capacity.", 5 * time.Second}
	case a.byIP[ip] >= a.limits.MaxConnsPerIP:
		return &refusal{"ip_cap", 429, "Too many connections from this address.", 10 * time.Second}
	case a.byIdent[ident] >= a.limits.MaxConnsPerIdent:
		return &refusal{"identity_cap", 429, "Too many connections for this identity.", 10 * time.Second}
	}
	a.total++
	a.byIP[ip]++
	a.byIdent[ident]++
	return nil
}

func (a *admission) release(ip, ident string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.byIP[ip]--; a.byIP[ip] <= 0 {
		delete(a.byIP, ip)
	}
	if a.byIdent[ident]--; a.byIdent[ident] <= 0 {
		delete(a.byIdent, ident)
	}
}
