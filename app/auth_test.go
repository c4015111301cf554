package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/config"
)

// cert issues a certificate for cn signed by parent (self-signed when nil).
func cert(t *testing.T, cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: ca, BasicConstraintsValid: true, DNSNames: []string{"localhost"},
		IPAddresses: nil,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TLS 1.2+, and a verified client certificate's CN is the identity.
func TestTLSAndClientCertificates(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, caPEM, _ := cert(t, "test CA", true, nil, nil)
	_, _, srvPEM, srvKey := cert(t, "localhost", false, caCert, caKey)
	_, _, cliPEM, cliKey := cert(t, "writer", false, caCert, caKey)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.TLS = config.TLS{Cert: write("srv.pem", srvPEM), Key: write("srv.key", srvKey), ClientCA: write("ca.pem", caPEM)}
	cfg.Auth.Mode = "basic"
	cfg.Auth.Policy = auth.PolicySpec{Rules: []auth.RuleSpec{{Users: []string{"writer"}, Repos: []string{"**"}, Actions: []string{"push", "pull"}}}}
	authz, _, err := newAuth(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := newTLSConfig(cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 {
		t.Error("TLS minimum is not 1.2")
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := authz.Authorize(r, auth.Scope{Repo: "a/b", Actions: []auth.Action{auth.Push}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, id.Subject)
	}))
	hs.TLS = tc
	hs.StartTLS()
	defer hs.Close()

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, ServerName: "localhost"}}}
	}
	pair, err := tls.X509KeyPair(cliPEM, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client(pair).Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "writer" {
		t.Errorf("with a client certificate: %d %q", resp.StatusCode, b)
	}
	resp, err = client().Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("without a client certificate: %d", resp.StatusCode)
	}
	// A certificate from another CA is refused at the handshake.
	_, _, otherPEM, otherKey := cert(t, "writer", false, nil, nil)
	other, _ := tls.X509KeyPair(otherPEM, otherKey)
	forced := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other, nil }}}}
	if resp, err := forced.Get(hs.URL); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("a certificate of an unknown CA was accepted: %d %s", resp.StatusCode, b)
	}
	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(hs.URL); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 accepted")
	}
}
