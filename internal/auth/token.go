package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// MaxTokenLen bounds a presented access token before any parsing work.
const MaxTokenLen = 4096

// Claims are the claims of an access token.
type Claims struct {
	jwt.RegisteredClaims
	Name string       `json:"name"`
	Role unhidra.Role `json:"role"`
	// Epoch is the user's session epoch when the token was issued; the
	// token is valid only while it is still the user's epoch.
	Epoch int64 `json:"sep,omitempty"`
}

// Tokens issues and verifies access tokens. Zero fields get the documented
// defaults on first use via Init.
type Tokens struct {
	Keys     *KeySet
	Issuer   string        // "iss"; default "unhidra"
	Audience string        // "aud"; default "unhidra"
	TTL      time.Duration // default 15 minutes
	Leeway   time.Duration // clock skew tolerated on exp/nbf/iat; default 30 s
	Now      func() time.Time
}

func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tokens) issuer() string   { return cmpOr(t.Issuer, "unhidra") }
func (t *Tokens) audience() string { return cmpOr(t.Audience, "unhidra") }

// Lifetime returns the access-token lifetime in effect.
func (t *Tokens) Lifetime() time.Duration { return cmpOr(t.TTL, 15*time.Minute) }

func (t *Tokens) leeway() time.Duration { return cmpOr(t.Leeway, 30*time.Second) }

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Issue signs an access token for u with the active key.
func (t *Tokens) Issue(u *unhidra.User) (token string, expires time.Time, err error) {
	now := t.now().UTC().Truncate(time.Second)
	expires = now.Add(t.Lifetime())
	jti := make([]byte, 12)
	rand.Read(jti)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   u.ID,
			Issuer:    t.issuer(),
			Audience:  jwt.ClaimStrings{t.audience()},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expires),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		Name:  u.Name,
		Role:  u.Role,
		Epoch: u.SessionEpoch,
	}
	key := t.Keys.Active()
	var signed string
	switch key.Alg {
	case AlgEdDSA:
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = key.ID
		signed, err = tok.SignedString(key.privateKey())
	case AlgHS256:
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["kid"] = key.ID
		signed, err = tok.SignedString(key.Secret)
	default:
		err = fmt.Errorf("unsupported algorithm %q", key.Alg)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return signed, expires, nil
}

// errBadToken is what every verification failure looks like to the client:
// the reason goes to the log only.
func errBadToken(cause error) error {
	e := unhidra.Errorf(protocol.ErrUnauthorized, "Invalid or expired token.")
	e.Err = cause
	return e
}

// Verify checks a token's signature with the key its "kid" names, pinning
// the algorithm to that key's, and checks exp, nbf, iat, iss and aud with
// the leeway. Every failure is protocol.ErrUnauthorized.
func (t *Tokens) Verify(token string) (*Claims, error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return nil, errBadToken(errors.New("token empty or too long"))
	}
	fast, key, handled, err := t.verifyFast(token)
	if handled {
		if err != nil {
			return nil, errBadToken(err)
		}
		return t.checkClaims(fast, key)
	}
	return t.verifyGeneric(token)
}

// verifyGeneric is Verify through the JWT library, for tokens of any shape.
func (t *Tokens) verifyGeneric(token string) (*Claims, error) {
	var claims Claims
	var key *SigningKey
	keyFunc := func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		key = t.Keys.Key(kid)
		if key == nil {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		// The key decides the algorithm, never the token header.
		if tok.Method.Alg() != key.Alg {
			return nil, fmt.Errorf("token alg %q does not match key alg %q", tok.Method.Alg(), key.Alg)
		}
		if key.Alg == AlgEdDSA {
			return key.privateKey().Public(), nil
		}
		return key.Secret, nil
	}
	_, err := jwt.ParseWithClaims(token, &claims, keyFunc, append(t.claimOptions(),
		jwt.WithValidMethods([]string{AlgEdDSA, AlgHS256}),
		jwt.WithStrictDecoding(), // one token, one encoding: no malleable variants
	)...)
	if err != nil {
		return nil, errBadToken(err)
	}
	return t.checkClaims(&claims, key)
}

// checkClaims applies our own rules on top of the registered claims'.
func (t *Tokens) checkClaims(claims *Claims, key *SigningKey) (*Claims, error) {
	if claims.Subject == "" || claims.ID == "" || claims.IssuedAt == nil {
		return nil, errBadToken(errors.New("token lacks sub, jti or iat"))
	}
	// A token must not outlive the key's retirement by more than a lifetime:
	// rotating keys is how an operator cuts off tokens from a leaked key.
	if !key.RetiredAt.IsZero() && claims.IssuedAt != nil && claims.IssuedAt.After(key.RetiredAt.Add(t.leeway())) {
		return nil, errBadToken(errors.New("token issued by a retired key after its retirement"))
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > t.Lifetime()+t.leeway() {
		return nil, errBadToken(errors.New("token lifetime exceeds policy"))
	}
	return claims, nil
}
