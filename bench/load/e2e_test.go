package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// cmd runs one load command in-process, as the bench scripts run the binary.
func cmd(t *testing.T, name string, args ...string) {
	t.Helper()
	for _, c := range commands() {
		if c.name == name {
			if err := runCommand(c, args); err != nil {
				t.Fatalf("load %s %v: %v", name, args, err)
			}
			return
		}
	}
	t.Fatalf("no command %q", name)
}

// Every API scenario, short, against a real Wharf; nplus1 on one with
// redirects on, where its blob GETs answer 307.
func TestAPIScenariosAgainstWharf(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		r := wharftest.Start(t, wharftest.Options{Redirect: redirect})
		short := []string{"-target", r.URL, "-duration", "200ms", "-warmup", "0", "-clients", "2", "-requests", "50", "-json"}
		cmd(t, "wait", "-target", r.URL, "-timeout", "5s")
		cmd(t, "setup", "-target", r.URL, "-layers", "2", "-layer-size", "64K", "-tags", "3")
		scenarios := []string{"manifest-get", "manifest-head", "tags-list", "blob-get", "push-small", "batch"}
		if redirect {
			scenarios = []string{"nplus1", "batch"}
		}
		for _, sc := range scenarios {
			cmd(t, sc, append(short, "-size", "4K")...)
		}
		cmd(t, "push-large", "-target", r.URL, "-size", "3M", "-chunk", "1M")
	}
}

// The login: the token dance against a Wharf in token mode, then a scenario
// that needs it.
func TestScenarioWithTokenLogin(t *testing.T) {
	r := wharftest.StartAuth(t, service.ModeToken)
	login := []string{"-target", r.URL, "-user", "admin", "-password", wharftest.AuthUsers["admin"]}
	cmd(t, "setup", append(login, "-layers", "1", "-layer-size", "4K", "-tags", "1")...)
	cmd(t, "manifest-head", append(login, "-duration", "200ms", "-warmup", "0", "-clients", "2", "-requests", "20")...)
}

// The GC commands build their state, pull it back, and drive the mixed
// load; a verify after the mixed load checks every manifest it pushed.
func TestGCCommandsAgainstWharf(t *testing.T) {
	r := wharftest.Start(t)
	dir := t.TempDir()
	st, pushed := filepath.Join(dir, "state.json"), filepath.Join(dir, "pushed.jsonl")
	base := []string{"-target", r.URL, "-state", st, "-clients", "4"}
	cmd(t, "gc-populate", append(base, "-blobs", "40", "-referenced", "20", "-layers", "5", "-size", "1K")...)
	cmd(t, "gc-verify", base...)
	cmd(t, "gc-orphans", append(base, "-blobs", "10", "-seed", "9")...)
	cmd(t, "gc-mixed", append(base, "-duration", "300ms", "-requests", "60", "-push-every", "3", "-pushed", pushed, "-json")...)
	cmd(t, "gc-verify", append(base, "-pushed", pushed)...)
	if b, err := os.ReadFile(pushed); err != nil || len(b) == 0 {
		t.Fatalf("gc-mixed pushed nothing: %v", err)
	}
	s, err := readState(st)
	if err != nil || len(s.Tags) != 4 || len(s.Orphans) != 10 {
		t.Fatalf("state: %v, %d tags, %d orphans", err, len(s.Tags), len(s.Orphans))
	}
}
