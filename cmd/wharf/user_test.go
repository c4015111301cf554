package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/auth/htpasswd"
)

// runCmd runs the wharf command in-process with stdin; it returns
// stdout and stderr together.
func runCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestUserCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "htpasswd")
	if _, err := runCmd(t, "pw-one\n", "user", "add", "--htpasswd", file, "--cost", "4", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "pw-two\n", "user", "add", "--htpasswd", file, "--cost", "4", "bob"); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "", "user", "list", "--htpasswd", file)
	if err != nil || out != "alice\nbob\n" {
		t.Errorf("list = %q, %v", out, err)
	}
	if _, err := runCmd(t, "", "user", "add", "--htpasswd", file, "carol"); err == nil {
		t.Error("empty password accepted")
	}
	if _, err := runCmd(t, "", "user", "remove", "--htpasswd", file, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "", "user", "remove", "--htpasswd", file, "alice"); err == nil {
		t.Error("removing a missing user succeeded")
	}
	f, err := htpasswd.Load(file)
	if err != nil || f.Has("alice") || !f.Verify("bob", "pw-two") {
		t.Errorf("file after edits: %v", err)
	}
	st, _ := os.Stat(file)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	// A weak hash in the file is refused, naming user and line.
	if err := os.WriteFile(file, []byte("eve:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "", "user", "list", "--htpasswd", file); err == nil || !strings.Contains(err.Error(), `"eve"`) || !strings.Contains(err.Error(), "SHA1") {
		t.Errorf("weak hash: %v", err)
	}
}
