package config

import "testing"

// TestToolingEnvIgnored: the variables scripts/test.sh exports to every
// test (a started binary inherits them) are not settings and not typos;
// a misspelt setting still is.
func TestToolingEnvIgnored(t *testing.T) {
	for _, name := range []string{"WHARF_MINIO_BIN", "WHARF_SEAWEEDFS_BIN", "WHARF_PG_BIN", "WHARF_TEST_LOG", "WHARF_SOAK", "WHARF_CACHE"} {
		if _, err := Load("", []string{name + "=x"}); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	if _, err := Load("", []string{"WHARF_REDIRECT_ENABLD=true"}); err == nil {
		t.Error("a misspelt setting was accepted")
	}
}
