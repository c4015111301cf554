package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestConfigurationPageMatchesReference: the table of
// docs/configuration.md lists exactly the settings Reference (the config
// struct and its tags) has, each with its environment variable and
// default; a setting added, renamed or given a new default without the
// page fails here.
func TestConfigurationPageMatchesReference(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ env, def string }
	doc := map[string]row{}
	fileOnly := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		keys := strings.Split(strings.ReplaceAll(cells[1], "`", ""), ",")
		env := strings.Trim(strings.TrimSpace(cells[2]), "`")
		defs := strings.Split(strings.ReplaceAll(cells[3], "`", ""), ",")
		section := ""
		for i, k := range keys {
			k = strings.TrimSpace(k)
			if i == 0 {
				section = k[:strings.LastIndex(k, ".")+1]
			} else {
				k = section + k // `a.b.c`, `d`: a.b.d
			}
			def := ""
			if len(defs) == len(keys) {
				def = strings.TrimSpace(defs[i])
			}
			if env == "(file only)" {
				fileOnly[k] = true
				continue
			}
			if strings.HasSuffix(env, "…") { // one variable pattern for the row
				env = ""
			}
			doc[k] = row{env, def}
		}
	}
	if len(doc) < 50 {
		t.Fatalf("read %d settings from the page: is the table still there?", len(doc))
	}
	for _, s := range Reference() {
		d, ok := doc[s.Key]
		if !ok {
			t.Errorf("setting %s (%s) is not on docs/configuration.md", s.Key, s.Env)
			continue
		}
		delete(doc, s.Key)
		if d.env != "" && d.env != s.Env {
			t.Errorf("%s: the page says %s, the variable is %s", s.Key, d.env, s.Env)
		}
		if !sameDefault(s.Default, d.def) {
			t.Errorf("%s: the page's default is %q, the default is %q", s.Key, d.def, s.Default)
		}
	}
	for k := range doc {
		t.Errorf("docs/configuration.md lists %s, which is no setting", k)
	}
	for k := range fileOnly {
		if _, err := Load("", []string{"WHARF_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_")) + "=x"}); err == nil {
			t.Errorf("%s is marked file only, but its variable loads", k)
		}
	}
}

// sameDefault compares a default with the page's: durations by value
// ("24h" is 24h0m0s), and a computed default ("<data_dir>/blobs") stands
// for an empty one.
func sameDefault(real, page string) bool {
	if real == page || (real == "" && strings.HasPrefix(page, "<")) {
		return true
	}
	r, err1 := time.ParseDuration(real)
	p, err2 := time.ParseDuration(page)
	if page == "0" {
		p, err2 = 0, nil
	}
	return err1 == nil && err2 == nil && r == p
}
