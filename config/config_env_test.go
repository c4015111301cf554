package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestToolingEnvIsNoSetting: the variables of Wharf's scripts and tests
// (WHARFDEV_*) are outside the settings' namespace, so config knows
// nothing of them, a started binary inheriting them is not refused, and a
// misspelt WHARF_ setting still is.
func TestToolingEnvIsNoSetting(t *testing.T) {
	for _, name := range []string{"WHARFDEV_MINIO_BIN", "WHARFDEV_REQUIRE_SERVERS", "WHARFDEV_TEST_LOG", "WHARFDEV_CACHE"} {
		if _, err := Load("", []string{name + "=x"}); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	if _, err := Load("", []string{"WHARF_REDIRECT_ENABLD=true"}); err == nil {
		t.Error("a misspelt setting was accepted")
	}
}

// TestEveryWharfVariableIsASetting: every WHARF_* name in the repository's
// code, scripts and docs is a setting (or a prefix of some), so no tool's
// variable creeps back into the settings' namespace (a binary started by
// the tests would refuse it).
func TestEveryWharfVariableIsASetting(t *testing.T) {
	envs := map[string]bool{}
	for _, s := range Reference() {
		envs[s.Env] = true
	}
	// Named on purpose: the typo a test feeds, and the file-only setting
	// whose variable a test shows refused.
	notSettings := map[string]bool{"WHARF_REDIRECT_ENABLD": true, "WHARF_AUTH_POLICY": true}
	name := regexp.MustCompile(`\bWHARF_[A-Z0-9_]+`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != ".." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".go" && ext != ".sh" && ext != ".md" && ext != ".yaml" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, v := range name.FindAllString(string(b), -1) {
			if envs[v] || notSettings[v] || (strings.HasSuffix(v, "_") && hasPrefix(envs, v)) || strings.HasPrefix(v, ProxyPasswordEnvPrefix) {
				continue
			}
			t.Errorf("%s: %s is no setting (tooling variables are WHARFDEV_*)", path, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func hasPrefix(envs map[string]bool, p string) bool {
	for e := range envs {
		if strings.HasPrefix(e, p) {
			return true
		}
	}
	return false
}
