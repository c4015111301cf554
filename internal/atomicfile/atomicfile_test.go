package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("one"), Options{Sync: true}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("replaced: %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// NoReplace keeps the first file.
	err := WriteFile(p, []byte("three"), Options{NoReplace: true})
	if !IsExist(err) {
		t.Fatalf("NoReplace over a file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("NoReplace changed the file: %q", b)
	}
	// A failing write leaves nothing: no file, no temporary.
	q := filepath.Join(dir, "g")
	boom := errors.New("boom")
	if err := Write(q, Options{}, func(w io.Writer) error { _, _ = w.Write([]byte("part")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	if fi, _ := os.Stat(q); fi != nil {
		t.Fatal("a failed write created the file")
	}
	if fi, _ := os.Stat(p); fi == nil || fi.Mode().Perm() != 0o644 {
		t.Fatal("p changed")
	}
}
