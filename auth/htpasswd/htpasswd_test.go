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

// TestDummyCostFollowsUsers: an unknown user is compared against a hash
// of a cost the file's users have (it was always cost 10, so users at 5
// or 12 were told apart from unknown names by timing), stably per name,
// each cost about as often as its share of the users.
func TestDummyCostFollowsUsers(t *testing.T) {
	f := &File{}
	costs := map[string]int{"a": 4, "b": 5, "c": 5, "d": 6}
	for u, c := range costs {
		if err := f.Set(u, "pw", c); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.PrepareDummies(); err != nil {
		t.Fatal(err)
	}
	for u, c := range costs {
		if got := f.Cost(u); got != c {
			t.Errorf("Cost(%s) = %d, want %d", u, got, c)
		}
	}
	seen := map[int]int{}
	const names = 400
	for i := range names {
		name := "nobody-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		c := f.Cost(name)
		if c != f.Cost(name) {
			t.Fatalf("Cost(%s) not stable", name)
		}
		seen[c]++
		if i < 20 && f.Verify(name, "pw") {
			t.Fatalf("unknown user %s accepted", name)
		}
	}
	for c, want := range map[int]int{4: names / 4, 5: names / 2, 6: names / 4} {
		if got := seen[c]; got < want/2 || got > want*3/2 {
			t.Errorf("cost %d for %d of %d unknown names, want about %d (%v)", c, got, names, want, seen)
		}
	}
	if len(seen) != 3 {
		t.Errorf("unknown names cost %v, want only the users' costs 4, 5, 6", seen)
	}
	// Without users (or before PrepareDummies): bcrypt's default.
	if got := (&File{}).Cost("nobody"); got != bcrypt.DefaultCost {
		t.Errorf("empty file: Cost = %d", got)
	}
}
