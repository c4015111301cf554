package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wharf-registry/wharf/auth"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var access = []auth.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}

func newPair(t *testing.T, c *clock) (*Issuer, *Verifier) {
	t.Helper()
	key, err := LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(key, "wharf-test", "registry.test", c.now)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := KeyID(key.Public())
	v := NewVerifier("registry.test", c.now, &KeySet{Issuer: "wharf-test", Keys: map[string]crypto.PublicKey{kid: key.Public()}})
	return iss, v
}

func TestIssueVerify(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	iss, v := newPair(t, c)
	tok, _, err := iss.Issue("alice", access, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Subject != "alice" || len(cl.Access) != 1 || cl.Access[0].Name != "team/app" {
		t.Errorf("claims = %+v", cl)
	}
	if !auth.Covers(cl.Access, "team/app", auth.Push) || auth.Covers(cl.Access, "team/app", auth.Delete) {
		t.Error("Covers")
	}

	// expired (past the leeway)
	c.t = c.t.Add(5*time.Minute + Leeway + time.Second)
	if _, err := v.Verify(tok); err == nil {
		t.Error("expired token accepted")
	}
	// not yet valid
	c.t = time.Unix(1_800_000_000, 0).Add(-time.Hour)
	if _, err := v.Verify(tok); err == nil {
		t.Error("token before nbf accepted")
	}
	c.t = time.Unix(1_800_000_000, 0)

	// tampered claims: swap in a payload granting more, keep the signature
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"pull","push"`, `"pull","push","delete"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if _, err := v.Verify(strings.Join(parts, ".")); err == nil {
		t.Error("tampered token accepted")
	}
	// flipped signature byte
	sig := []byte(tok)
	sig[len(sig)-5] ^= 1
	if _, err := v.Verify(string(sig)); err == nil {
		t.Error("token with a bad signature accepted")
	}
	// another audience
	other := NewVerifier("elsewhere", c.now, &KeySet{Issuer: "wharf-test", Keys: map[string]crypto.PublicKey{"x": iss.PublicKey()}})
	if _, err := other.Verify(tok); err == nil {
		t.Error("token for another audience accepted")
	}
	// a key of another issuer
	iss2, _ := newPair(t, c)
	tok2, _, _ := iss2.Issue("alice", access, time.Minute)
	if _, err := v.Verify(tok2); err == nil {
		t.Error("token signed by a foreign key accepted")
	}
}

func TestRefusesNoneAndHMAC(t *testing.T) {
	c := &clock{time.Now()}
	iss, v := newPair(t, c)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "wharf-test", Audience: jwt.ClaimStrings{"registry.test"}, ExpiresAt: jwt.NewNumericDate(c.t.Add(time.Hour))}, Access: access}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := v.Verify(none); err == nil {
		t.Error(`alg "none" accepted`)
	}
	der, _ := x509.MarshalPKIXPublicKey(iss.PublicKey())
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(der)
	if _, err := v.Verify(hs); err == nil {
		t.Error("HS256 signed with the public key accepted")
	}
}

// An external issuer: its tokens are verified with keys from a JWKS file.
func TestExternalJWKS(t *testing.T) {
	c := &clock{time.Now()}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	ecPub, _ := ec.PublicKey.Bytes() // uncompressed point
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": "ec1", "use": "sig", "crv": "P-256", "x": b64(ecPub[1:33]), "y": b64(ecPub[33:])},
		{"kty": "RSA", "kid": "rsa1", "n": b64(rs.N.Bytes()), "e": b64(big.NewInt(int64(rs.E)).Bytes())},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
	}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := LoadKeySet("https://idp.example", path)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("keys = %d, want 2 (the enc key skipped)", len(set.Keys))
	}
	v := NewVerifier("registry.test", c.now, set)
	sign := func(m jwt.SigningMethod, kid string, key any, iss string) string {
		claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, Subject: "ci", Audience: jwt.ClaimStrings{"registry.test"}, ExpiresAt: jwt.NewNumericDate(c.t.Add(time.Hour))}, Access: access}
		tk := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tok := range map[string]string{
		"ES256 kid":    sign(jwt.SigningMethodES256, "ec1", ec, "https://idp.example"),
		"RS256 kid":    sign(jwt.SigningMethodRS256, "rsa1", rs, "https://idp.example"),
		"RS256 no kid": sign(jwt.SigningMethodRS256, "", rs, "https://idp.example"),
	} {
		cl, err := v.Verify(tok)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cl.Subject != "ci" || !auth.Covers(cl.Access, "team/app", auth.Pull) {
			t.Errorf("%s: claims %+v", name, cl)
		}
	}
	if _, err := v.Verify(sign(jwt.SigningMethodES256, "ec1", ec, "https://evil.example")); err == nil {
		t.Error("token of an unknown issuer accepted")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := v.Verify(sign(jwt.SigningMethodES256, "ec1", other, "https://idp.example")); err == nil {
		t.Error("token signed by an unlisted key accepted")
	}

	// The same keys as PEM (a public key and a certificate-less RSA key).
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	pemPath := filepath.Join(t.TempDir(), "keys.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rs.PublicKey)})...)
	if err := os.WriteFile(pemPath, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	set, err = LoadKeySet("https://idp.example", pemPath)
	if err != nil || len(set.Keys) != 2 {
		t.Fatalf("PEM key set: %v, %v", set, err)
	}
	v = NewVerifier("registry.test", c.now, set)
	if _, err := v.Verify(sign(jwt.SigningMethodES256, "some-kid", ec, "https://idp.example")); err != nil {
		t.Errorf("PEM-configured key refused: %v", err)
	}
}

func TestJWKSErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":    "{",
		"empty":       `{"keys":[]}`,
		"bad curve":   `{"keys":[{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}]}`,
		"off curve":   `{"keys":[{"kty":"EC","crv":"P-256","x":"` + strings.Repeat("A", 43) + `","y":"` + strings.Repeat("A", 43) + `"}]}`,
		"small rsa":   `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		"unknown kty": `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
	} {
		if _, err := ParseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSigningKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token-key.pem")
	k1, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := KeyID(k1.Public())
	id2, _ := KeyID(k2.Public())
	if id1 != id2 {
		t.Error("key regenerated on second start")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode().Perm())
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	c := &clock{time.Now()}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss, _ := NewIssuer(key, "i", "s", c.now)
	kid, _ := KeyID(key.Public())
	v := NewVerifier("s", c.now, &KeySet{Issuer: "i", Keys: map[string]crypto.PublicKey{kid: key.Public()}})
	tok, _, _ := iss.Issue("alice", access, time.Hour)
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
