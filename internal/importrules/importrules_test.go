// Package importrules checks that Wharf's dependency arrows point toward
// the domain core (DESIGN.md): oci → registry → stores and server, and
// nothing depends on the binary.
package importrules

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/wharf-registry/wharf"

// rule says which of Wharf's packages the packages under dir may import:
// allowed lists import-path prefixes (relative to the module); forbidden
// lists prefixes that are refused even when allowed would admit them.
type rule struct {
	dir       string
	allowed   []string // nil: any of Wharf's packages but forbidden ones
	forbidden []string
	except    []string // packages under dir the rule does not apply to
}

var rules = []rule{
	{dir: "oci", allowed: []string{}},
	// The one cache is a leaf utility any layer may use.
	{dir: "internal/cache", allowed: []string{}},
	// The batch endpoint's wire format is the core's answer type.
	{dir: "batch", allowed: []string{"oci"}},
	{dir: "registry", allowed: []string{"oci", "batch", "internal/cache"}},
	// The metadata stores implement gc.Store in gc's types.
	{dir: "metadata", forbidden: []string{"server", "auth", "client", "cmd", "config"}},
	{dir: "blobstore", forbidden: []string{"server", "auth", "client", "cmd", "metadata", "gc", "config"}},
	{dir: "signer", forbidden: []string{"server", "auth", "client", "cmd", "metadata", "gc", "config"}},
	{dir: "auth", forbidden: []string{"server", "client", "cmd", "metadata", "blobstore", "gc"}},
	{dir: "gc", forbidden: []string{"server", "auth", "client", "cmd", "metadata"}},
	// The pull-through cache's upstream side: the core's seam, over HTTP.
	{dir: "proxy", forbidden: []string{"server", "auth", "client", "cmd", "metadata", "blobstore", "gc", "config"}},
	{dir: "server", forbidden: []string{"cmd", "metadata", "blobstore", "client", "gc", "config"}},
	{dir: "client", forbidden: []string{"cmd", "server", "metadata", "blobstore", "gc", "auth", "config"}},
	{dir: "", forbidden: []string{"cmd"}, except: []string{"cmd"}}, // everything
	// The composition root is the binary's and the tests' only.
	{dir: "", forbidden: []string{"app"}, except: []string{"cmd", "internal/wharftest", "app"}},
}

func TestImportDirection(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal("module root not found: ", err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		// Tests may reach across layers (a test of the server starts stores).
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p != module && !strings.HasPrefix(p, module+"/") {
				continue
			}
			target := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
			checked++
			for _, r := range rules {
				if !under(rel, r.dir) || anyUnder(rel, r.except) {
					continue
				}
				if r.allowed != nil && !anyUnder(target, r.allowed) && target != rel {
					t.Errorf("%s imports %s: %s may import only %v", rel+"/"+filepath.Base(path), target, r.dir, r.allowed)
				}
				if anyUnder(target, r.forbidden) {
					t.Errorf("%s imports %s: %s must not import %v", rel+"/"+filepath.Base(path), target, orAll(r.dir), r.forbidden)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d imports of Wharf's packages checked: the walk is broken", checked)
	}
}

// under reports whether package path p is dir or inside it ("" is the
// whole module).
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

func anyUnder(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

func orAll(dir string) string {
	if dir == "" {
		return "no package"
	}
	return dir
}
