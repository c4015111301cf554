package config

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestSigningKeys(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))
	c, err := Load("", []string{"WHARF_SIGNING_KEYS=a:" + secret + ",b:" + secret})
	if err != nil || c.Signing.Keys == "" {
		t.Fatalf("Load = %v, keys %q", err, c.Signing.Keys)
	}
	for _, env := range [][]string{
		{"WHARF_SIGNING_KEYS=a:" + secret, "WHARF_SIGNING_KEYS_FILE=/k.json"},
		{"WHARF_SIGNING_KEYS=a:c2hvcnQ="},
		{"WHARF_SIGNING_KEYS=" + secret},
	} {
		_, err := Load("", env)
		if err == nil || !strings.Contains(err.Error(), "signing.keys") {
			t.Errorf("Load(%v) = %v, want a signing.keys error", env, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
