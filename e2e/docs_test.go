package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// docPages returns README.md and docs/*.md, as paths from the repository
// root.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, p := range pages {
		out = append(out, strings.TrimPrefix(filepath.ToSlash(p), "../"))
	}
	if len(out) < 10 {
		t.Fatalf("only %d documentation pages found: %v", len(out), out)
	}
	return out
}

// mdLine is one line of a Markdown page outside code fences.
type mdLine struct {
	n    int
	text string
}

// proseLines returns a page's lines outside fenced code blocks.
func proseLines(t *testing.T, page string) []mdLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", page))
	if err != nil {
		t.Fatal(err)
	}
	return prose(string(b))
}

func prose(page string) []mdLine {
	var out []mdLine
	inFence := false
	for i, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
			continue
		}
		if !inFence {
			out = append(out, mdLine{i + 1, l})
		}
	}
	return out
}

var (
	inlineCode = regexp.MustCompile("`[^`]*`")
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
)

// anchors returns the heading anchors of a page as GitHub makes them:
// the heading's text (inline code keeps its content) in lower case, every
// character but letters, digits, spaces, '-' and '_' dropped, spaces
// turned into '-', and "-1", "-2", ... added to repeats.
func anchors(lines []mdLine) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range lines {
		n := headingLevel(l.text)
		if n == 0 {
			continue
		}
		text := strings.ReplaceAll(strings.TrimSpace(l.text[n:]), "`", "")
		var a strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		slug := a.String()
		if k := seen[slug]; k > 0 {
			out[slug+"-"+strconv.Itoa(k)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// TestDocLinks checks every relative link of README.md and docs/*.md: the
// file it names exists, and so does the heading its #anchor names.
func TestDocLinks(t *testing.T) {
	checked := 0
	for _, page := range docPages(t) {
		for _, l := range proseLines(t, page) {
			text := inlineCode.ReplaceAllString(l.text, "")
			for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				dest := page
				if file != "" {
					dest = filepath.ToSlash(filepath.Join(filepath.Dir(page), file))
					if strings.HasPrefix(dest, "../") {
						t.Errorf("%s:%d: %s leaves the repository", page, l.n, target)
						continue
					}
					if _, err := os.Stat(filepath.Join("..", dest)); err != nil {
						t.Errorf("%s:%d: %s: no such file %s", page, l.n, target, dest)
						continue
					}
				}
				checked++
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s:%d: %s: an anchor into a file that is not Markdown", page, l.n, target)
				} else if !anchors(proseLines(t, dest))[anchor] {
					t.Errorf("%s:%d: %s: %s has no heading #%s", page, l.n, target, dest, anchor)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d links checked: the link pattern is broken", checked)
	}
}

// TestDocAnchors pins the anchor rules on headings of the kinds the pages
// use (punctuation, inline code, an em dash, repeats).
func TestDocAnchors(t *testing.T) {
	page := "# Title\n## The client: `wharf pull`, `export`\n## S3, MinIO, R2 and CDNs\n" +
		"## What each protection covers — and not\n```sh\n# not a heading\n```\n## Title\n"
	got := anchors(prose(page))
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"s3-minio-r2-and-cdns", "the-client-wharf-pull-export", "title", "title-1", "what-each-protection-covers--and-not"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("anchors = %v, want %v", keys, want)
	}
}

// TestDocPackageTable keeps the package table of docs/architecture.md true:
// every directory of Go files in the module is named in it, and every path
// its first column names exists.
func TestDocPackageTable(t *testing.T) {
	named := map[string]bool{}
	firstColumn := map[string]bool{}
	inLayout := false
	for _, l := range proseLines(t, "docs/architecture.md") {
		if n := headingLevel(l.text); n > 0 {
			inLayout = strings.TrimSpace(l.text[n:]) == "Layout"
			continue
		}
		if !inLayout || !strings.HasPrefix(l.text, "| ") {
			continue
		}
		cells := strings.Split(l.text, "|")
		for i, c := range cells {
			for _, m := range inlineCode.FindAllString(c, -1) {
				p := strings.Trim(m, "`")
				named[p] = true
				if i == 1 {
					firstColumn[p] = true
				}
			}
		}
	}
	if len(firstColumn) < 20 {
		t.Fatalf("only %d packages in the Layout table: is the section there?", len(firstColumn))
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	packages := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") { // test-only packages too (internal/importrules)
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			packages[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range packages {
		if !named[p] {
			t.Errorf("package %s is not in the Layout table of docs/architecture.md", p)
		}
	}
	for p := range firstColumn {
		if st, err := os.Stat(filepath.Join(root, p)); err != nil || !st.IsDir() {
			t.Errorf("the Layout table names %s, which is not a directory", p)
		}
	}
}

// TestDocShellExamples accounts for every ```sh block of README.md and
// docs/*.md: it is in a section a test of this package runs (docScript), so
// a block added there is run too, or in one named below with the reason no
// test can run it here. A new block elsewhere fails until it is one or the
// other.
func TestDocShellExamples(t *testing.T) {
	run := map[string]bool{ // page + "#" + heading of a section docScript runs
		"README.md#A five-minute tour":                                true, // TestReadmeExamples
		"docs/signed-urls.md#Signed blob URLs and the batch endpoint": true, // TestReadmeBatchExamples
	}
	notRun := map[string]string{
		"README.md#The two commands":                                         "the commands themselves: CI (.ci/run) runs scripts/test.sh",
		"docs/authentication.md#Users":                                       "prompts for passwords on a terminal",
		"docs/authentication.md#TLS":                                         "needs a certificate of a real host",
		"docs/authentication.md#Logging in":                                  "needs docker and a registry at a real host name",
		"docs/client.md#The client: `wharf pull`, `export`, `copy`, `blobs`": "copies to registry.example.com",
		"docs/conformance-notes.md#Running it":                               "the conformance suite: scripts/test.sh runs it",
		"docs/s3.md#S3, MinIO, R2 and CDNs":                                  "builds MinIO (minutes) and serves in the foreground",
		"docs/scale-out.md#Scale-out deployment":                             "needs a PostgreSQL superuser on a database host",
	}
	for _, page := range docPages(t) {
		b, err := os.ReadFile(filepath.Join("..", page))
		if err != nil {
			t.Fatal(err)
		}
		var stack []string // stack[i]: the open heading of level i+1
		inFence := false
		for i, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "```") {
				if !inFence && l == "```sh" && !accounted(page, stack, run, notRun) {
					t.Errorf("%s:%d: a shell example no test runs, under %q", page, i+1, stack)
				}
				inFence = !inFence
				continue
			}
			if n := headingLevel(l); n > 0 && !inFence {
				for len(stack) < n {
					stack = append(stack, "")
				}
				stack = append(stack[:n-1], strings.TrimSpace(l[n:]))
			}
		}
	}
}

func accounted(page string, headings []string, run map[string]bool, notRun map[string]string) bool {
	for _, h := range headings {
		if run[page+"#"+h] || notRun[page+"#"+h] != "" {
			return true
		}
	}
	return false
}
