// Package tmpfstest mounts small tmpfs file systems for tests that need a
// disk that fills up for real (ENOSPC from the kernel, not a fake writer).
// Mounting needs root (CAP_SYS_ADMIN): elsewhere the test is skipped,
// unless WHARFDEV_REQUIRE_SERVERS=1, where it fails.
package tmpfstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory and unmounts it
// when t ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("tmpfstest: mount tmpfs (needs root): %v: %s", err, out)
		if os.Getenv("WHARFDEV_REQUIRE_SERVERS") == "1" && os.Geteuid() == 0 {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("tmpfstest: unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a ballast file into dir until the file system is full and
// returns a function that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		n, err := f.Write(buf)
		if errors.Is(err, syscall.ENOSPC) {
			// Fill the last bytes too.
			for n > 0 || err == nil {
				n, err = f.Write(buf[:4096])
			}
			break
		}
		if err != nil || i > 1<<14 {
			f.Close()
			t.Fatalf("tmpfstest: fill %s: %v after %d MiB", dir, err, i)
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(p); err != nil {
			t.Errorf("tmpfstest: %v", err)
		}
	}
}
