//go:build unix

package filesystem

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// tryLock takes an exclusive advisory lock on f without waiting. flock
// locks belong to the open file, so two requests of one process exclude
// each other as two processes do; over NFS Linux maps them onto POSIX
// record locks, which NFSv4 servers share between clients. The kernel
// drops the lock when its holder dies.
func tryLock(f *os.File) (locked bool, err error) {
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// links is the file's hard-link count: a session file with a second name
// is already a blob (a commit linked it and stopped before unlinking).
func links(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*unix.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
