package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"

	"github.com/wharf-registry/wharf/internal/atomicfile"
)

// LoadOrCreateSigningKey reads a PEM private key (PKCS#8, SEC 1 EC or
// PKCS#1 RSA) from path, or, when the file does not exist, generates an
// ECDSA P-256 key (ES256) and writes it there (mode 0600).
func LoadOrCreateSigningKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParsePrivateKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Never replace: two replicas starting together keep the first key.
	err = atomicfile.Write(path, atomicfile.Options{Sync: true, NoReplace: true}, func(w io.Writer) error {
		return pem.Encode(w, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	})
	if atomicfile.IsExist(err) {
		return LoadOrCreateSigningKey(path)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// ParsePrivateKey parses the first private key of a PEM file.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	var signer crypto.Signer
	err := pemKeys(b, map[string]func([]byte) (any, error){
		"PRIVATE KEY":     x509.ParsePKCS8PrivateKey,
		"EC PRIVATE KEY":  anyKey(x509.ParseECPrivateKey),
		"RSA PRIVATE KEY": anyKey(x509.ParsePKCS1PrivateKey),
	}, func(k any) error {
		s, ok := k.(crypto.Signer)
		if !ok {
			return fmt.Errorf("unsupported private key type %T", k)
		}
		if _, err := methodFor(s.Public()); err != nil {
			return err
		}
		signer = s
		return errStop
	})
	if err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, errors.New("no PEM private key found")
	}
	return signer, nil
}

// errStop, from pemKeys' use, ends the walk without an error.
var errStop = errors.New("stop")

// pemKeys calls use with the key of each PEM block of b whose type parse
// has a parser for, in order, until an error (errStop: none).
func pemKeys(b []byte, parse map[string]func([]byte) (any, error), use func(any) error) error {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		p, ok := parse[blk.Type]
		if !ok {
			continue
		}
		k, err := p(blk.Bytes)
		if err == nil {
			err = use(k)
		}
		if errors.Is(err, errStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func anyKey[K any](f func([]byte) (K, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return f(b) }
}

// LoadKeySet reads the public keys of an external issuer from path: a
// JWKS document ({"keys":[...]}) or PEM blocks (PUBLIC KEY, RSA PUBLIC
// KEY or CERTIFICATE, whose key is used).
func LoadKeySet(issuer, path string) (*KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys map[string]crypto.PublicKey
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		keys, err = ParseJWKS(t)
	} else {
		keys, err = parsePublicPEM(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &KeySet{Issuer: issuer, Keys: keys}, nil
}

func parsePublicPEM(b []byte) (map[string]crypto.PublicKey, error) {
	keys := map[string]crypto.PublicKey{}
	err := pemKeys(b, map[string]func([]byte) (any, error){
		"PUBLIC KEY":     x509.ParsePKIXPublicKey,
		"RSA PUBLIC KEY": anyKey(x509.ParsePKCS1PublicKey),
		"CERTIFICATE": func(b []byte) (any, error) {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return nil, err
			}
			return c.PublicKey, nil
		},
	}, func(k any) error {
		if _, err := methodFor(k); err != nil {
			return err
		}
		kid, err := KeyID(k)
		if err != nil {
			return err
		}
		keys[kid] = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return keys, nil
}

// jwk is the subset of RFC 7517 a verifier needs.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// ParseJWKS parses a JWK set's signature keys (EC P-256/384/521, RSA,
// Ed25519), keyed by kid (or by KeyID when a key has none).
func ParseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (%q): %w", i, k.Kid, err)
		}
		kid := k.Kid
		if kid == "" {
			if kid, err = KeyID(pub); err != nil {
				return nil, err
			}
		}
		keys[kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no signature key")
	}
	return keys, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "EC":
		var c elliptic.Curve
		switch k.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		size := (c.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinate length")
		}
		// Through the uncompressed encoding so the point is checked to be
		// on the curve.
		pt := append(append([]byte{4}, x...), y...)
		return ecdsa.ParseUncompressedPublicKey(c, pt)
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		eb := new(big.Int).SetBytes(e)
		if !eb.IsInt64() || eb.Int64() < 3 || eb.Int64() > 1<<31-1 {
			return nil, errors.New("bad RSA exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eb.Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want at least 2048", pub.N.BitLen())
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := dec(k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key length")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported key type %q", k.Kty)
}
