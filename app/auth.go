package app

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/auth/token"
	"github.com/wharf-registry/wharf/config"
)

// HtpasswdPath is the users file of cfg.
func HtpasswdPath(cfg config.Config) string {
	if cfg.Auth.Htpasswd != "" {
		return cfg.Auth.Htpasswd
	}
	return filepath.Join(cfg.DataDir, "htpasswd")
}

// newAuth builds the authorizer of cfg.Auth.Mode and, in token mode, the
// token endpoint's handler.
func newAuth(cfg config.Config, log *slog.Logger) (auth.Authorizer, http.Handler, error) {
	a := cfg.Auth
	if a.Mode == config.AuthNone {
		return auth.AllowAll{}, nil, nil
	}
	policy, err := auth.CompilePolicy(a.Policy)
	if err != nil {
		return nil, nil, err
	}
	o := service.Options{
		Mode: service.Mode(a.Mode), Htpasswd: HtpasswdPath(cfg), Policy: policy,
		Service: a.Service, Realm: a.Token.Realm, PublicURL: cfg.PublicURL, TokenTTL: a.Token.TTL,
		BasicCacheTTL: a.BasicCacheTTL, CacheSize: a.CacheSize, CacheMaxBytes: a.CacheMaxBytes,
		FailedLoginsPerMinute: float64(a.FailedLogins.PerMinute), FailedLoginsBurst: a.FailedLogins.Burst,
		Logger: log,
	}
	if _, err := os.Stat(o.Htpasswd); errors.Is(err, os.ErrNotExist) {
		log.Warn("no users file: only anonymous access is possible until `wharf user add` creates it", "htpasswd", o.Htpasswd)
	}
	if a.Mode == config.AuthToken {
		keyFile := a.Token.KeyFile
		if keyFile == "" {
			keyFile = filepath.Join(cfg.DataDir, "token-key.pem")
		}
		key, err := token.LoadOrCreateSigningKey(keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("token signing key: %w", err)
		}
		iss, err := token.NewIssuer(key, a.Token.Issuer, a.Service, nil)
		if err != nil {
			return nil, nil, err
		}
		kid, err := token.KeyID(key.Public())
		if err != nil {
			return nil, nil, err
		}
		sets := []*token.KeySet{{Issuer: a.Token.Issuer, Keys: map[string]crypto.PublicKey{kid: key.Public()}}}
		if a.Token.ExternalIssuer != "" {
			ext, err := token.LoadKeySet(a.Token.ExternalIssuer, a.Token.ExternalKeys)
			if err != nil {
				return nil, nil, fmt.Errorf("auth.token.external_keys: %w", err)
			}
			sets = append(sets, ext)
		}
		o.Issuer = iss
		o.Verifier = token.NewVerifier(a.Service, nil, sets...)
		log.Info("token service", "issuer", a.Token.Issuer, "service", a.Service, "key", keyFile, "kid", kid, "external_issuer", a.Token.ExternalIssuer)
	}
	svc, err := service.New(o)
	if err != nil {
		return nil, nil, err
	}
	if a.Mode == config.AuthToken {
		return svc, svc.TokenHandler(), nil
	}
	return svc, nil, nil
}

// newTLSConfig is the HTTPS configuration of cfg.TLS, nil without a
// certificate.
func newTLSConfig(c config.TLS) (*tls.Config, error) {
	if c.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca %s: no PEM certificate", c.ClientCA)
		}
		tc.ClientCAs = pool
		// Optional: callers without a certificate still log in with a
		// password; a certificate that is sent must verify.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// warnPlainHTTP logs loudly when credentials will travel unencrypted.
func warnPlainHTTP(cfg config.Config, ln net.Listener, log *slog.Logger) {
	if cfg.Auth.Mode == config.AuthNone || cfg.TLS.Cert != "" {
		return
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return
	}
	log.Warn("!!! AUTHENTICATION OVER PLAIN HTTP on a non-loopback address: passwords and tokens travel in clear text; set tls.cert/tls.key (--tls-cert/--tls-key) or terminate TLS in front of wharf !!!",
		"addr", ln.Addr().String(), "auth_mode", cfg.Auth.Mode)
}
