package htpasswd

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseAndVerify(t *testing.T) {
	in := "# users\n\nalice:" + hash(t, "s3cret") + "\nbob:" + strings.Replace(hash(t, "pw"), "$2a$", "$2y$", 1) + "\n"
	f, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Verify("alice", "s3cret") || !f.Verify("bob", "pw") {
		t.Error("right passwords refused")
	}
	if f.Verify("alice", "wrong") || f.Verify("carol", "s3cret") || f.Verify("alice", "") {
		t.Error("wrong password or unknown user accepted")
	}
	if got := f.Users(); len(got) != 2 || got[0] != "alice" || got[1] != "bob" {
		t.Errorf("Users = %v", got)
	}
}

func TestParseRefusesWeakHashes(t *testing.T) {
	cases := map[string]string{
		"md5":           "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
		"sha1":          "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
		"crypt":         "rqXexS6ZhobKA",
		"plain":         "password",
		"sha512-crypt":  "$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.",
		"broken bcrypt": "$2y$05$short",
	}
	for name, h := range cases {
		in := "# c\nalice:" + hash(t, "x") + "\nmallory:" + h + "\n"
		_, err := Parse(strings.NewReader(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), `"mallory"`) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: error does not name user and line: %v", name, err)
		}
	}
	if _, err := Parse(strings.NewReader("nocolon\n")); err == nil {
		t.Error("line without colon accepted")
	}
	if _, err := Parse(strings.NewReader("a:" + hash(t, "x") + "\na:" + hash(t, "y") + "\n")); err == nil {
		t.Error("duplicate user accepted")
	}
}

func TestSetRemoveSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	f, err := Load(path) // missing file: empty
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set("alice", "one", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("bob", "two", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("alice", "three", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a:b", " x", "a\nb"} {
		if f.Set(bad, "pw", bcrypt.MinCost) == nil {
			t.Errorf("user name %q accepted", bad)
		}
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Verify("alice", "three") || g.Verify("alice", "one") || !g.Verify("bob", "two") {
		t.Error("saved file does not verify")
	}
	if !g.Remove("bob") || g.Remove("bob") || g.Has("bob") {
		t.Error("Remove")
	}
	var b bytes.Buffer
	if _, err := g.WriteTo(&b); err != nil || strings.Count(b.String(), "\n") != 1 || !strings.HasPrefix(b.String(), "alice:$2a$") {
		t.Errorf("WriteTo = %q, %v", b.String(), err)
	}
}
