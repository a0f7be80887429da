package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/unhidra/unhidra"
)

// The fast path of Verify, for tokens exactly as Issue writes them. Every
// WebSocket handshake verifies a token (no cache of verified tokens), and the
// generic JWT parser spent about as much CPU decoding as the Ed25519 check
// itself: the header into a map, each date and the audience through a nested
// json.Unmarshal. Here the header segment must equal, byte for byte, the one
// Issue writes for a key of the set, so the key and its algorithm are known
// without decoding it; the claims are decoded into plain fields and checked
// by the same jwt.Validator options as the generic path. Anything else — any
// other header, an audience or date of another JSON type, trailing bytes —
// goes to the generic path, which decides; so the fast path accepts nothing
// the generic path would refuse.

var b64 = base64.RawURLEncoding.Strict()

// headerSegment is the base64url JWT header Issue writes for k.
func (k *SigningKey) headerSegment() string {
	k.headerOnce.Do(func() {
		h, _ := json.Marshal(map[string]string{"alg": k.Alg, "kid": k.ID, "typ": "JWT"})
		k.header = base64.RawURLEncoding.EncodeToString(h)
	})
	return k.header
}

// keyForHeader returns the key whose issued header segment is h, or nil.
func (ks *KeySet) keyForHeader(h string) *SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.headerSegment() == h {
			return k
		}
	}
	return nil
}

// wireClaims is Claims with the registered claims as plain JSON types.
type wireClaims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	IssuedAt  *float64        `json:"iat"`
	ID        string          `json:"jti"`
	Name      string          `json:"name"`
	Role      unhidra.Role    `json:"role"`
	Epoch     int64           `json:"sep"`
}

// numericDate converts seconds as jwt.NumericDate's decoder does.
func numericDate(f *float64) *jwt.NumericDate {
	if f == nil {
		return nil
	}
	whole, frac := math.Modf(*f)
	return jwt.NewNumericDate(time.Unix(int64(whole), int64(frac*1e9)))
}

// audience decodes "aud" as jwt.ClaimStrings does for the two forms Issue
// and other issuers write (a string or an array of strings); ok is false for
// anything else, which the generic path then judges.
func audience(raw json.RawMessage) (aud jwt.ClaimStrings, ok bool) {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil, true
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return jwt.ClaimStrings{s}, true
	case raw[0] == '[':
		if ss, ok := plainStrings(raw); ok {
			return ss, true
		}
		var ss []string
		if json.Unmarshal(raw, &ss) != nil {
			return nil, false
		}
		return ss, true
	}
	return nil, false
}

// verifyFast verifies token if it has the issued shape. handled is false
// when it does not, and the caller must use the generic path; when handled,
// key is the key that signed it and err says whether it is valid.
func (t *Tokens) verifyFast(token string) (claims *Claims, key *SigningKey, handled bool, err error) {
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, nil, false, nil
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(s, '.') >= 0 {
		return nil, nil, false, nil
	}
	if key = t.Keys.keyForHeader(h); key == nil {
		return nil, nil, false, nil
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return nil, nil, false, nil
	}
	signed := []byte(token[:len(h)+1+len(p)])
	switch key.Alg {
	case AlgEdDSA:
		if !key.verify(signed, sig) {
			return nil, key, true, jwt.ErrSignatureInvalid
		}
	case AlgHS256:
		mac := hmac.New(sha256.New, key.Secret)
		mac.Write(signed)
		if !hmac.Equal(mac.Sum(nil), sig) {
			return nil, key, true, jwt.ErrSignatureInvalid
		}
	default:
		return nil, nil, false, nil
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, nil, false, nil
	}
	var w wireClaims
	if !decodeIssuedClaims(payload, &w) {
		w = wireClaims{}
		if json.Unmarshal(payload, &w) != nil {
			return nil, nil, false, nil
		}
	}
	aud, ok := audience(w.Audience)
	if !ok {
		return nil, nil, false, nil
	}
	claims = &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: w.Issuer, Subject: w.Subject, Audience: aud, ID: w.ID,
			ExpiresAt: numericDate(w.ExpiresAt), NotBefore: numericDate(w.NotBefore), IssuedAt: numericDate(w.IssuedAt),
		},
		Name: w.Name, Role: w.Role, Epoch: w.Epoch,
	}
	if err := t.validator().Validate(claims); err != nil {
		return nil, key, true, err
	}
	return claims, key, true, nil
}

// validator checks the claims as the generic path's parser options do.
func (t *Tokens) validator() *jwt.Validator {
	return jwt.NewValidator(t.claimOptions()...)
}

// claimOptions are the claim checks of both paths.
func (t *Tokens) claimOptions() []jwt.ParserOption {
	return []jwt.ParserOption{
		jwt.WithIssuer(t.issuer()),
		jwt.WithAudience(t.audience()),
		jwt.WithLeeway(t.leeway()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(t.now),
	}
}
