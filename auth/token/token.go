// Package token issues and verifies the bearer tokens of the Docker
// registry token specification: JWTs signed with ES256/RS256 (or other
// asymmetric algorithms of external issuers) whose "access" claim lists
// the granted repository actions.
package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wharf-registry/wharf/auth"
)

// Claims are a registry token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Access []auth.Access `json:"access"`
}

// Issuer signs tokens.
type Issuer struct {
	key     crypto.Signer
	method  jwt.SigningMethod
	kid     string
	name    string
	service string
	now     func() time.Time
}

// NewIssuer returns an issuer named name (the "iss" claim) for service
// (the "aud" claim) signing with key; now nil is time.Now.
func NewIssuer(key crypto.Signer, name, service string, now func() time.Time) (*Issuer, error) {
	m, err := methodFor(key.Public())
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{key: key, method: m, kid: kid, name: name, service: service, now: now}, nil
}

// Name is the issuer name ("iss").
func (i *Issuer) Name() string { return i.name }

// Service is the audience ("aud").
func (i *Issuer) Service() string { return i.service }

// PublicKey is the key that verifies this issuer's tokens.
func (i *Issuer) PublicKey() crypto.PublicKey { return i.key.Public() }

// Issue signs a token for subject ("" for anonymous) granting access,
// valid for ttl. It returns the token and its issue time.
func (i *Issuer) Issue(subject string, access []auth.Access, ttl time.Duration) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	if access == nil {
		access = []auth.Access{}
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.name,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{i.service},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti[:]),
		},
		Access: access,
	}
	t := jwt.NewWithClaims(i.method, c)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(i.key)
	return s, now, err
}

// KeySet is the public keys of one issuer.
type KeySet struct {
	// Issuer is the "iss" its tokens carry.
	Issuer string
	// Keys by key id ("kid"); a token without a kid is tried against all.
	Keys map[string]crypto.PublicKey
}

// Verifier checks tokens of one or more issuers for one audience.
type Verifier struct {
	issuers  map[string]*KeySet
	audience string
	now      func() time.Time
	parser   *jwt.Parser
}

// Leeway is the clock skew tolerated on exp and nbf.
const Leeway = 30 * time.Second

// Methods are the algorithms accepted: asymmetric ones only ("none" and
// HMAC are never accepted, so a public key cannot be used as a secret).
var Methods = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// NewVerifier returns a verifier of tokens for audience signed by any of
// sets; now nil is time.Now.
func NewVerifier(audience string, now func() time.Time, sets ...*KeySet) *Verifier {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{issuers: map[string]*KeySet{}, audience: audience, now: now}
	for _, s := range sets {
		if old, ok := v.issuers[s.Issuer]; ok {
			for k, key := range s.Keys {
				old.Keys[k] = key
			}
			continue
		}
		cp := &KeySet{Issuer: s.Issuer, Keys: map[string]crypto.PublicKey{}}
		for k, key := range s.Keys {
			cp.Keys[k] = key
		}
		v.issuers[s.Issuer] = cp
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(Methods),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v
}

// Errors of Verify (wrapped).
var (
	ErrUnknownIssuer = errors.New("token from an unknown issuer")
	ErrUnknownKey    = errors.New("token signed by an unknown key")
)

// Verify checks signature, issuer, audience, expiry and not-before, and
// returns the claims.
func (v *Verifier) Verify(raw string) (*Claims, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		cl := t.Claims.(*Claims)
		set, ok := v.issuers[cl.Issuer]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownIssuer, cl.Issuer)
		}
		if kid, _ := t.Header["kid"].(string); kid != "" {
			if k, ok := set.Keys[kid]; ok {
				return k, nil
			}
		}
		// No kid, or one we do not know (keys from a PEM file carry none):
		// the kid is only a hint, the signature decides.
		if len(set.Keys) == 0 {
			return nil, ErrUnknownKey
		}
		ks := jwt.VerificationKeySet{}
		for _, k := range set.Keys {
			ks.Keys = append(ks.Keys, k)
		}
		return ks, nil
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// methodFor picks the signing method for a key.
func methodFor(pub crypto.PublicKey) (jwt.SigningMethod, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return jwt.SigningMethodES256, nil
		case 384:
			return jwt.SigningMethodES384, nil
		case 521:
			return jwt.SigningMethodES512, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		return jwt.SigningMethodRS256, nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, fmt.Errorf("unsupported signing key type %T", pub)
}

// KeyID is the key id Wharf gives a public key: the first 16 bytes of the
// SHA-256 of its PKIX encoding, in hex.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:16]), nil
}
