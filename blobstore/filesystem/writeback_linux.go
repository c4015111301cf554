package filesystem

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks Linux to begin writing the range to disk without
// waiting for it (sync_file_range WRITE); the commit's fsync still
// guarantees durability. Errors are ignored: this is only a hint.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
